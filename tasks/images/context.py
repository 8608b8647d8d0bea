"""An image's build context on disk: which files the build sends, and their digests.

The adapter between the file system and tasks/images/spec.py, which computes
the tag from what this module read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tasks.filetree.ignore import context_files
from tasks.images.spec import ImageSpec
from tasks.images.spec import image_specs as _image_specs
from tasks.images.spec import local_dataset, normalized_dockerfile


def image_specs(config) -> list[ImageSpec]:
    """The classroom's images, parents first (the hub image when images/hub has a Dockerfile)."""
    hub_dockerfile = config.path(config.classroom["images"]["sources"]) / "hub" / "Dockerfile"
    return _image_specs(config, has_hub_sources=hub_dockerfile.exists())


def image_spec(config, name: str) -> ImageSpec:
    return next(spec for spec in image_specs(config) if spec.name == name)


def sources(config, spec: ImageSpec) -> list[tuple[str, str]]:
    """(path in the build context, file on disk) for every source file the build sends.

    Plain strings, not Paths: this runs for every file at each `doit` start.
    """
    def under(root, prefix=""):
        root = str(root)
        return [(prefix + rel, os.path.join(root, rel)) for rel in context_files(root)]

    found = under(spec.source)
    for name in spec.shared:
        found += under(spec.source.parent / name, f"{name}/")
    if spec.bakes_datasets:
        for dataset in config.datasets:
            local = local_dataset(config, dataset)
            if local is not None:
                prefix = f"classroom/datasets/{dataset['name']}/"
                found += [(prefix + local.name, str(local))] if local.is_file() else under(local, prefix)
    return found


def file_digest(path: Path) -> str:
    """Mode and content of one context file (a link: its target)."""
    if path.is_symlink():
        return "link:" + str(path.readlink())
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    executable = "x" if path.stat().st_mode & 0o111 else "-"
    return f"{executable}:{digest.hexdigest()}"


def context_digests(files: list[tuple[str, str]]) -> dict[str, str]:
    """Digests of the files a build sends; the Dockerfile counts without its comments."""
    digests = {}
    for rel, path in files:
        path = Path(path)
        if rel == "Dockerfile":
            text = normalized_dockerfile(path.read_text(encoding="utf-8"))
            digests[rel] = "dockerfile:" + hashlib.sha256(text.encode()).hexdigest()
        else:
            digests[rel] = file_digest(path)
    return digests
