"""Making images exist: a thin adapter over the Docker Engine and the registry.

The docker SDK does engine and registry work (inspect, tag, push, ask a
registry for a manifest).  It cannot drive BuildKit, so builds go through a
docker CLI (via `sh`): one with the buildx plugin, or an engine-era CLI
(< 23, like Debian's docker.io) that runs BuildKit itself with
DOCKER_BUILDKIT=1.  Everything here is imported inside actions only.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from tasks.errors import ClassroomError
from tasks.run import runlock

CLI_ENV = "CLASSTOOLS_DOCKER_CLI"


class EngineError(ClassroomError):
    """A failure with a message fit for a course's staff (no traceback)."""


@functools.lru_cache(maxsize=None)
def client():
    import docker  # heavy: only when an action needs the engine

    try:
        engine = docker.from_env(timeout=600)
        engine.ping()
    except Exception as exc:  # the SDK raises several unrelated types here
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineError(f"no Docker Engine answers at {host} ({_short(exc)}); "
                          "start one with scripts/dev-env up") from None
    return engine


@contextmanager
def refusals(doing: str = "the Docker Engine refused"):
    """The docker SDK's own failures, as one EngineError line: `<doing>: <first line>`."""
    import docker.errors
    try:
        yield
    except docker.errors.DockerException as exc:
        raise EngineError(f"{doing}: {str(exc).splitlines()[0][:300]}") from None


def _short(exc) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


@functools.lru_cache(maxsize=None)
def build_cli() -> tuple[str, bool]:
    """(docker CLI path, uses buildx?) able to run a BuildKit build."""
    candidates = [os.environ.get(CLI_ENV), shutil.which("docker"), "/usr/bin/docker"]
    seen = []
    for cli in filter(None, candidates):
        if cli in seen or not os.access(cli, os.X_OK):
            continue
        seen.append(cli)
        buildx = subprocess.run([cli, "buildx", "version"], capture_output=True, text=True)
        if buildx.returncode == 0:
            return cli, True
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True).stdout.strip()
        major = re.match(r"(\d+)", version)
        if major and int(major.group(1)) < 23:
            return cli, False
    raise EngineError("no docker CLI can run a BuildKit build: tried "
                      f"{', '.join(seen) or 'docker'}; install Debian's docker.io or the buildx "
                      f"plugin, or point {CLI_ENV} at a suitable CLI")


def local_image_id(ref: str) -> str | None:
    import docker.errors

    try:
        return client().images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


_AUTH_WORDS = ("unauthorized", "denied", "credentials", "authentication required", "forbidden")


def registry_digest(ref: str) -> str | None:
    """The manifest digest the registry holds for `ref`, or None if it has no such tag."""
    import docker.errors

    try:
        return client().api.inspect_distribution(ref)["Descriptor"]["digest"]
    except docker.errors.APIError as exc:
        text = _short(exc).lower()
        if exc.status_code == 404 or "manifest unknown" in text or "not found" in text:
            return None
        registry = ref.split("/", 1)[0]
        # The engine reports a registry's 401 as its own 500, so the words decide.
        if exc.status_code in (401, 403) or any(word in text for word in _AUTH_WORDS):
            raise EngineError(f"registry {registry} refused our credentials for {ref} "
                              f"({_short(exc)}); log in with `docker login {registry}` "
                              "(Artifact Registry: `gcloud auth configure-docker`)") from None
        raise EngineError(f"registry {registry} is unreachable ({_short(exc)})") from None


def build(image: str, context: Path, tag: str, args: dict, platform: str,
          secrets: dict[str, Path], log) -> str:
    """Build `context` with BuildKit, tag it, return the image ID. Streams progress to `log`."""
    import sh

    cli, buildx = build_cli()
    iidfile = context.parent / f"{context.name}.iid"
    command = (["buildx", "build", "--load"] if buildx else ["build"]) + [
        "--progress=plain", "--platform", platform, "--iidfile", str(iidfile), "--tag", tag]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    for secret_id, path in secrets.items():
        command += ["--secret", f"id={secret_id},src={path}"]
    command.append(str(context))
    tail: list[str] = []

    def out(line):
        line = line.rstrip("\n")
        tail.append(line)
        del tail[:-25]
        log(line)

    env = dict(os.environ, DOCKER_BUILDKIT="1")
    running = sh.Command(cli)(*command, _env=env, _out=out, _err_to_out=True, _bg=True, _bg_exc=False)
    # If this run is killed and the build client is not (a kill of doit's pid alone), the
    # next run stops it: a BuildKit build ends with its client.
    client_process = runlock.record_process(running.pid)
    runlock.crash_point(f"build:{image}")  # with a delay (`@SECONDS`): killed mid-build
    try:
        running.wait()
    except sh.ErrorReturnCode as exc:
        failed = [line for line in tail if "ERROR" in line or "error" in line.lower()]
        cause = failed[-1] if failed else (tail[-1] if tail else "no output")
        raise EngineError(f"build of image {image} failed (exit {exc.exit_code}): {cause.strip()}") from None
    finally:
        runlock.forget_process(client_process)
    return iidfile.read_text().strip()


def push(image: str, ref: str, log) -> str:
    """Push `ref`; return the manifest digest the registry now holds."""
    import docker.errors

    from tasks.run.progress import Progress

    repository, tag = ref.rsplit(":", 1)
    digest = None
    # Layer bytes as they go, in a few lines (each quarter, or every 10 s), not one per chunk.
    progress = Progress(f"push image:{image}", log)
    try:
        for event in client().images.push(repository, tag=tag, stream=True, decode=True):
            runlock.crash_point(f"push:{image}")  # the push has begun
            if "error" in event:
                raise EngineError(f"push of image {image} to {repository} failed: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest", digest)
            detail = event.get("progressDetail") or {}
            if detail.get("total"):
                progress.update(event.get("id", ""), detail.get("current", 0), detail["total"])
            elif event.get("status") and not detail:
                log(f"{event.get('id', '')} {event['status']}".strip())
    except docker.errors.APIError as exc:
        raise EngineError(f"push of image {image} to {repository} failed: {_short(exc)}") from None
    if progress.parts:
        progress.finish()
    if not digest:
        digest = registry_digest(ref)
    if not digest:
        raise EngineError(f"push of image {image} to {repository} reported no digest")
    return digest


def pull(ref: str) -> str:
    import docker.errors

    try:
        image = client().images.pull(ref)
    except docker.errors.APIError as exc:
        raise EngineError(f"pull of {ref} failed: {_short(exc)}") from None
    return image.id


def tag_image(image_id: str, ref: str):
    repository, tag = ref.rsplit(":", 1)
    client().images.get(image_id).tag(repository, tag)


def resolve_upstream(ref: str) -> str:
    """The immutable identity of an upstream parent: its digest or image ID."""
    if "@sha256:" in ref:
        return ref.split("@", 1)[1]
    image_id = local_image_id(ref)
    if image_id is None:
        try:
            image_id = pull(ref)
        except EngineError as exc:
            raise EngineError(f"the parent image {ref} is neither in the local engine nor "
                              f"pullable ({exc})") from None
    digests = client().images.get(image_id).attrs.get("RepoDigests") or []
    return digests[0].split("@", 1)[1] if digests else image_id
