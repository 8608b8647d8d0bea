"""What images should exist: pure functions from the config to image specs and tags.

Pure: it reads no file.  The build context on disk (which files, their digests)
is tasks/images/context.py's.

An image's tag is computed from its content, never from time or git history:
the files the build is sent (after `.dockerignore`), the Dockerfile without
its comments, the build args, the config values it bakes, the platform and
the identity of its parent.  Same inputs, same tag, on any machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

from tasks.config.model import source_kind

TAG_VERSION = "classtools-image-1"  # bump to change every tag at once
PARSER_DIRECTIVES = ("syntax", "escape", "check")


class ImageSpec(NamedTuple):  # not a dataclass: building one costs ~2 ms at each doit start
    name: str
    source: Path                        # images/<name>
    parent: str | None = None           # our own image it is built FROM (by its content tag)
    upstream: str | None = None         # an upstream image it is built FROM (config value)
    config_keys: tuple = ()             # config values it reads: a change re-runs its task
    shared: tuple = ()                  # sibling dirs copied into the context under their name
    bakes_courses: bool = False
    bakes_datasets: bool = False

    @property
    def task_name(self) -> str:
        return f"image:{self.name}"


_COMMON_KEYS = ("classroom.images.registry", "classroom.build.platform", "classroom.build.args")


def image_specs(config, has_hub_sources: bool = False) -> list[ImageSpec]:
    """The classroom's images, parents first; the hub image only when its sources exist
    (images/hub/Dockerfile: z2jh's hub image usually suffices), which the caller looked up."""
    images = config.classroom["images"]
    root = config.path(images["sources"])
    specs = [
        ImageSpec("base", root / "base", upstream=images["base_image"],
                  config_keys=_COMMON_KEYS + ("classroom.images.base_image",)),
        ImageSpec("notebook", root / "notebook", parent="base", shared=("shared",),
                  config_keys=_COMMON_KEYS + ("courses",), bakes_courses=True),
        ImageSpec("local", root / "local", parent="base", shared=("shared",),
                  config_keys=_COMMON_KEYS + ("courses", "datasets"),
                  bakes_courses=True, bakes_datasets=True),
        ImageSpec("db", root / "db", upstream=images["db_base_image"],
                  config_keys=_COMMON_KEYS + ("classroom.images.db_base_image",)),
    ]
    if has_hub_sources:
        specs.append(ImageSpec("hub", root / "hub", upstream=images["hub_base_image"],
                               config_keys=_COMMON_KEYS + ("classroom.images.hub_base_image",)))
    return specs


def repository(config, spec: ImageSpec) -> str:
    """Where the image lives: the registry path, or a local name when there is no registry."""
    registry = config.classroom["images"]["registry"]
    return f"{registry}/{spec.name}" if registry else f"classroom/{spec.name}"


def build_args(config, spec: ImageSpec, parent_ref: str | None) -> dict:
    args = dict(config.classroom["build"]["args"])
    if spec.upstream:
        args["BASE_IMAGE"] = spec.upstream
    if parent_ref:
        args["PARENT"] = parent_ref
    return dict(sorted(args.items()))


def context_roots(config, spec: ImageSpec) -> list[tuple[str, str]]:
    """(prefix in the build context, path on disk) of everything `sources` lists files from:
    what the image task's listing digest walks (tasks/filetree/state.py)."""
    roots = [("", str(spec.source))] + [(f"{name}/", str(spec.source.parent / name)) for name in spec.shared]
    if spec.bakes_datasets:
        for dataset in config.datasets:
            local = local_dataset(config, dataset)
            if local is not None:
                roots.append((f"classroom/datasets/{dataset['name']}/", str(local)))
    return roots


def local_dataset(config, dataset) -> Path | None:
    return config.path(dataset["source"]) if source_kind(dataset["source"]) == "local" else None


def remote_datasets(config) -> list[dict]:
    return [d for d in config.datasets if source_kind(d["source"]) != "local"]


def generated_files(config, spec: ImageSpec) -> dict[str, bytes]:
    """Files the engine writes into the build context from the config."""
    files = {}
    if spec.bakes_courses:
        courses = [{k: course[k] for k in ("name", "title", "repo", "ref", "instructors", "students")}
                   for course in config.courses]
        files["classroom/courses.json"] = (json.dumps(courses, indent=2, sort_keys=True) + "\n").encode()
        packages = {p for course in config.courses for p in course["packages"]}
        files["classroom/requirements-courses.txt"] = requirements_file(packages)
    if spec.bakes_datasets:
        files["classroom/datasets.json"] = (json.dumps(baked_datasets(config), indent=2, sort_keys=True)
                                            + "\n").encode()
    return files


def baked_datasets(config) -> list[dict]:
    """What an image that bakes the datasets holds of data.yaml: not who may see each one in
    the cluster (`courses`), which the release alone reads."""
    return [{"name": d["name"], "source": d["source"], "description": d["description"]} for d in config.datasets]


def config_values(config, spec: ImageSpec) -> dict:
    """The config values the image's task reads, by key: its up-to-date inputs."""
    return {key: baked_datasets(config) if key == "datasets" else config.value(key) for key in spec.config_keys}


def requirements_file(packages) -> bytes:
    """pip's requirements file: one requirement per line, sorted.

    Validation (formats.pip_requirement) admits only single PEP 508
    requirements; this is the last guard before pip reads the file, because
    here a line break (pip also splits on \\r, \\x85, \\u2028) or a leading '-'
    would turn the rest into pip options such as --index-url."""
    for package in packages:
        if not package or not package.isprintable() or package.strip().startswith("-"):
            raise ValueError(f"not one pip requirement: {package!r}")
    return "".join(package + "\n" for package in sorted(packages)).encode()


def normalized_dockerfile(text: str) -> str:
    """The Dockerfile as BuildKit reads it: comments and blank lines do not count."""
    lines, in_directives = [], True
    for line in text.splitlines():
        stripped = line.strip()
        if in_directives and stripped.startswith("#") and "=" in stripped:
            key = stripped[1:].split("=", 1)[0].strip().lower()
            if key in PARSER_DIRECTIVES:
                lines.append(stripped)
                continue
        in_directives = False
        if not stripped or stripped.startswith("#"):
            continue
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def content_tag(spec: ImageSpec, file_digests: dict[str, str], generated: dict[str, bytes],
                args: dict, platform: str, parent_identity: str) -> str:
    """The tag: a digest of everything that decides what the build produces (pure).

    `args` must not contain the parent's reference (it names a registry);
    `parent_identity` stands for the parent instead: our parent's content tag,
    or an upstream parent's resolved digest.
    """
    digest = hashlib.sha256()

    def add(*parts):
        for part in parts:
            data = part if isinstance(part, bytes) else str(part).encode()
            digest.update(len(data).to_bytes(8, "big") + data)

    add(TAG_VERSION, spec.name, platform, parent_identity)
    for key, value in sorted(args.items()):
        add("arg", key, value)
    for rel, file_id in sorted(file_digests.items()):
        add("file", rel, file_id)
    for rel, content in sorted(generated.items()):
        add("generated", rel, content)
    return digest.hexdigest()[:24]
