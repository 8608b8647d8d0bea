"""Image stage: `image:base` → `image:notebook`, `image:local`; `image:db` (and `image:hub`).

Each task's inputs are its build context as ONE input (tasks/filetree/state.py:
a listing digest, the content digest only when the listing changed; not a
doit `file_dep` per file, so a no-op costs one directory walk per image and
doit's state holds two digests per image), the config keys it bakes
(semantic digests) and, for a child, its parent's result (`getargs`, which
doit turns into a `result_dep`).  Its action computes the content tag and builds only
when neither the registry nor the engine has that tag yet; a parent that
re-runs and yields the same tag leaves its children alone (early cutoff).
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from doit.tools import result_dep

from tasks.checks import value_inputs
from tasks.config.loader import doit_settings
from tasks.errors import action
from tasks.filetree.copy import write_tree
from tasks.filetree.state import SideFile, context_unchanged
from tasks.images import context as imagecontext
from tasks.images import spec as imagespec
from tasks.run import runlock
from tasks.run.reporter import OUTCOME, result_without_outcome

DOCS = {
    "base": "Build the base image: Python, JupyterLab, nbgrader, nbgitpuller and the course stack",
    "notebook": "Build the notebook image: base + courses.yaml, for the hub's student servers",
    "local": "Build the local image: base + courses + datasets, for a laptop or a VM",
    "db": "Build the db image: the MariaDB sidecar of each student's server",
    "hub": "Build the hub image (images/hub exists)",
}


def image_tasks(config):
    """The task dicts of the image stage (yielded by `task_image` in dodo.py)."""
    side_file = SideFile(Path(doit_settings(config)["dep_file"] + ".contexts.json"))
    for spec in imagecontext.image_specs(config):
        task = {
            "name": spec.name,
            "doc": DOCS.get(spec.name, f"Build the {spec.name} image"),
            # the second action keeps "built" vs "already there" out of the result that
            # the children's result_dep compares (the early cut-off)
            "actions": [action(ensure_image, config, spec.name), result_without_outcome],
            "uptodate": [value_inputs(imagespec.config_values(config, spec)),
                         context_unchanged(spec.name, imagespec.context_roots(config, spec),
                                           functools.partial(_file_digests, config, spec), side_file)],
            "verbosity": 2,
        }
        if spec.parent:
            # An explicit result_dep makes the parent a task_dep: getargs alone only makes it a
            # setup task, which `doit -n 2` checks *before* the parent has run.
            task["uptodate"].append(result_dep(f"image:{spec.parent}"))
            task["getargs"] = {"parent": (f"image:{spec.parent}", None)}
        yield task


def _file_digests(config, spec) -> dict[str, str]:
    """What the tag counts of the context's files (after `.dockerignore`)."""
    return imagecontext.context_digests(imagecontext.sources(config, spec))


def ensure_image(config, name, parent=None):
    """Make the image exist under its content tag; return its tag, reference and digest."""
    from tasks.images import engine

    spec = imagecontext.image_spec(config, name)
    with engine.refusals():
        return _ensure(config, spec, parent, engine)


def _ensure(config, spec, parent, engine):
    dockerfile = spec.source / "Dockerfile"
    if not dockerfile.is_file():
        raise engine.EngineError(f"no Dockerfile at {dockerfile}")
    files = imagecontext.sources(config, spec)
    generated = imagespec.generated_files(config, spec)
    remote = imagespec.remote_datasets(config) if spec.bakes_datasets else []
    if remote:  # their identity (a commit, object checksums) goes into the tag; the data only into a build
        ids = {d["name"]: _dataset_identity(d, engine) for d in remote}
        generated["classroom/datasets-remote.json"] = (json.dumps(ids, indent=2, sort_keys=True) + "\n").encode()
    platform = config.classroom["build"]["platform"]
    registry = config.classroom["images"]["registry"]

    if spec.parent:
        if not parent or "tag" not in parent:
            raise engine.EngineError(f"the parent image:{spec.parent} has not been built")
        parent_identity = parent["tag"]
        parent_ref = parent["ref"] + (f"@{parent['digest']}" if registry else "")
    else:
        parent_identity = engine.resolve_upstream(spec.upstream)
        parent_ref = None

    tag = imagespec.content_tag(spec, imagecontext.context_digests(files), generated,
                                imagespec.build_args(config, spec, None), platform, parent_identity)
    ref = f"{imagespec.repository(config, spec)}:{tag}"
    result = {"tag": tag, "ref": ref}

    if registry:
        digest = engine.registry_digest(ref)
        if digest:
            return {**result, "digest": digest, OUTCOME: f"nothing built: {ref} is already in the registry"}
        built = engine.local_image_id(ref) is None
        if built:
            _build(config, spec, files, generated, parent_ref, ref, platform, engine, remote)
            runlock.crash_point(f"image:{spec.name}:built")
        digest = engine.push(spec.name, ref, _logger(spec))
        runlock.crash_point(f"image:{spec.name}:pushed")
        done = "built and pushed" if built else "pushed (the engine had it)"
        return {**result, "digest": digest, OUTCOME: f"{done} {ref}@{digest}"}

    image_id = engine.local_image_id(ref)
    if image_id:
        return {**result, "digest": image_id, OUTCOME: f"nothing built: {ref} is already in the engine"}
    image_id = _build(config, spec, files, generated, parent_ref, ref, platform, engine, remote)
    runlock.crash_point(f"image:{spec.name}:built")
    return {**result, "digest": image_id, OUTCOME: f"built {ref} ({image_id})"}


def _logger(spec):
    prefix = f"[image:{spec.name}] "
    return lambda line: print(prefix + line, flush=True)


def _dataset_identity(dataset, engine):
    from tasks.data import sources as datasets
    try:
        return datasets.identity(dataset["source"])
    except datasets.DatasetError as exc:
        raise engine.EngineError(f"dataset {dataset['name']}: {exc}") from None


def _build(config, spec, files, generated, parent_ref, ref, platform, engine, remote=()):
    secrets = {}
    bundle = config.classroom["build"]["ca_bundle"]
    if bundle:
        secrets["ca_bundle"] = config.path(bundle)
    with tempfile.TemporaryDirectory(prefix=f"classtools-{spec.name}-") as tmp:
        context = Path(tmp) / "context"
        try:
            write_tree(context, files, generated)
        except OSError as exc:  # disk full, permissions
            raise engine.EngineError(f"cannot stage the build context: {exc}") from None
        if spec.bakes_datasets:  # the Dockerfile bind-mounts it, even when there are no datasets
            (context / "classroom" / "datasets").mkdir(parents=True, exist_ok=True)
        if remote:
            _fetch_remote_datasets(context, remote, json.loads(generated["classroom/datasets-remote.json"]), engine)
        runlock.crash_point(f"image:{spec.name}:context-written")
        return engine.build(spec.name, context, ref, imagespec.build_args(config, spec, parent_ref),
                            platform, secrets, _logger(spec))


def _fetch_remote_datasets(context, remote, ids, engine):
    from tasks.data import sources as datasets
    for dataset in remote:
        print(f"image:local: copying dataset {dataset['name']} from {dataset['source']}", flush=True)
        try:
            datasets.fetch_into(dataset["source"], context / "classroom" / "datasets" / dataset["name"],
                           ids[dataset["name"]])
        except datasets.DatasetError as exc:
            raise engine.EngineError(f"dataset {dataset['name']}: {exc}") from None
