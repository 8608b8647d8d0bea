"""A thin adapter over the helm binary (v3 or v4): lint, package, pull, template; upgrade, get, uninstall.

Helm 4 renamed `--atomic` to `--rollback-on-failure` and gave `--wait` a
strategy; the installed helm's major version decides which words are used.
Values reach `helm upgrade` only as in-memory files it inherits, `-f /dev/fd/N`
(see kube.private_values): helm 3 and 4 read them like any values file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tasks.kube import KubeError, inherited_fds, private_values
from tasks.run import runlock


class HelmError(KubeError):
    pass


@functools.lru_cache(maxsize=None)
def binary() -> str:
    found = os.environ.get("CLASSTOOLS_HELM") or shutil.which("helm")
    if not found:
        raise HelmError("helm is not installed: run scripts/dev-env up (or install helm 3 or 4)")
    return found


# The classroom chart sets z2jh's singleuser.cmd to null so that the notebook image's own
# CMD (classroom-start) runs. helm before 3.17.1 keeps a subchart's default despite a
# parent's null (helm/helm#12637, fixed by #12879 and #13654): students' servers would
# start without classroom-start, silently. helm 4.2.0 brought the fault back for
# subcharts without a condition (helm/helm#32132, open at 4.2.4).
MINIMUM_VERSION = (3, 17, 1)
BROKEN_VERSIONS = ((4, 2, 0), (4, 2, 4))  # first and last release known to ignore the null


@functools.lru_cache(maxsize=None)
def version() -> tuple[int, int, int]:
    try:
        text = subprocess.run([binary(), "version", "--short"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HelmError(f"cannot run {binary()} version: {exc}") from None
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise HelmError(f"cannot tell the helm version from {text.strip()!r}")
    return tuple(int(part) for part in match.groups())


def supported(found: tuple[int, int, int]) -> str:
    """"" when Class Tools may use helm FOUND, else why not (one line)."""
    shown = "v" + ".".join(map(str, found))
    if found < MINIMUM_VERSION:
        return (f"helm {shown} is too old: Class Tools needs v{'.'.join(map(str, MINIMUM_VERSION))} or newer "
                "(older helm keeps z2jh's singleuser.cmd despite the chart's null, so students' servers "
                "would start without classroom-start)")
    first, last = BROKEN_VERSIONS
    if first <= found <= last:
        return (f"helm {shown} ignores a chart's null for a subchart's default (helm/helm#32132), so "
                "students' servers would start without classroom-start: use helm 4.1 or a fixed release")
    return ""


def require_supported() -> None:
    problem = supported(version())
    if problem:
        raise HelmError(f"{problem}; found {binary()}")


def run(*args, timeout=300, check=True) -> subprocess.CompletedProcess:
    require_supported()
    try:
        result = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=timeout,
                                pass_fds=inherited_fds(args))
    except subprocess.TimeoutExpired:
        raise HelmError(f"helm {args[0]} did not finish within {timeout}s") from None
    if check and result.returncode != 0:
        raise HelmError(f"helm {args[0]} failed: {_cause(result)}")
    return result


def _cause(result) -> str:
    lines = [l.strip() for l in (result.stderr + result.stdout).splitlines() if l.strip()]
    errors = [l for l in lines if "[ERROR]" in l or l.lower().startswith("error")]
    return "; ".join(errors[-5:] or lines[-3:]) or f"exit {result.returncode}"


def lint(chart_dir: Path):
    run("lint", "--strict", "--", str(chart_dir))


def package(chart_dir: Path, destination: Path) -> Path:
    result = run("package", "--destination", str(destination), "--", str(chart_dir))
    return Path(result.stdout.strip().rsplit(" ", 1)[-1])


def pull(repository: str, name: str, version: str, destination: Path, timeout=60) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    run("pull", "--repo", repository, "--version", version, "--destination", str(destination), "--", name,
        timeout=timeout)
    return destination / f"{name}-{version}.tgz"


def major() -> int:
    return version()[0]


def upgrade_flags(timeout_seconds: int) -> list[str]:
    """Roll back on failure and wait, in the installed helm's words.

    Helm 4 applies server-side: a field someone changed with kubectl belongs to
    their field manager and the upgrade would stop at the conflict; the config is
    the truth, so the release takes such fields back (helm 3's three-way merge
    does so anyway)."""
    if major() >= 4:
        return ["--rollback-on-failure", "--wait=watcher", "--force-conflicts", f"--timeout={timeout_seconds}s"]
    return ["--atomic", "--wait", f"--timeout={timeout_seconds}s"]


def _context(context: str) -> list[str]:
    return ["--kube-context", context] if context else []


def _source_and_values(repo: str, version: str, files: list[str]) -> list[str]:
    args = (["--repo", repo] if repo else []) + (["--version", version] if version else [])
    for path in files:
        args += ["-f", path]
    return args


def upgrade(release: str, chart: str, namespace: str, context: str, values: list[dict],
            timeout_seconds: int, repo: str = "", version: str = ""):
    with private_values(*values) as files:
        runlock.crash_point("helm:upgrade")  # with a delay (`@SECONDS`): killed while helm works
        run("upgrade", "--install", "--namespace", namespace, "--create-namespace", *_context(context),
            *upgrade_flags(timeout_seconds), *_source_and_values(repo, version, files), "--", release, chart,
            timeout=timeout_seconds + 60)
    runlock.crash_point("helm:upgraded")


def template(release: str, chart: str, namespace: str, values: list[dict], repo: str = "",
             version: str = "") -> str:
    """The manifests `helm upgrade --install` would apply with these values (no cluster needed)."""
    with private_values(*values) as files:
        return run("template", "--namespace", namespace, *_source_and_values(repo, version, files),
                   "--", release, chart).stdout


def user_values(release: str, namespace: str, context: str) -> dict | None:
    """The user-supplied values of a deployed release, or None when it is not deployed."""
    result = run("get", "values", "--namespace", namespace, "--output", "json", *_context(context),
                 "--", release, check=False)
    if result.returncode != 0:
        if "not found" in (result.stderr + result.stdout).lower():
            return None
        raise HelmError(f"helm get values {release} failed: {_cause(result)}")
    return json.loads(result.stdout or "{}") or {}


def release_status(release: str, namespace: str, context: str) -> dict | None:
    """{"status", "chart" (NAME-VERSION), "revision"} of the release's last revision, or None."""
    result = run("list", "--namespace", namespace, "--deployed", "--failed", "--pending",
                 "--filter", f"^{release}$",  # a DNS label: nothing in it is special to the regex
                 "--output", "json", *_context(context))
    found = [r for r in json.loads(result.stdout or "[]") if r.get("name") == release]
    if not found:
        return None
    return {"status": found[0]["status"], "chart": found[0]["chart"], "revision": int(found[0]["revision"])}


def manifest(release: str, namespace: str, context: str) -> list[dict]:
    """The objects of the deployed release, as helm applied them."""
    import yaml
    text = run("get", "manifest", "--namespace", namespace, *_context(context), "--", release).stdout
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc.get("kind")]


def ownership(objects: list[dict], release: str, namespace: str) -> list[dict]:
    """The objects as they are in the cluster when nothing drifted: helm adds its ownership
    annotations on apply, which its manifest does not show. Jobs are left out: they run
    once, and their TTL removes them after they finished, which is no drift."""
    owned = []
    for obj in objects:
        if obj.get("kind") == "Job":
            continue
        obj = json.loads(json.dumps(obj))
        metadata = obj.setdefault("metadata", {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                   "meta.helm.sh/release-name": release,
                                   "meta.helm.sh/release-namespace": namespace}
        owned.append(obj)
    return owned


def drifted_objects(release: str, namespace: str, context: str) -> list[str]:
    """Objects of the release whose fields in the cluster differ from its manifest: the API
    server computes what applying the manifest (as helm, taking fields back) would change."""
    from tasks import kube
    objects = ownership(manifest(release, namespace, context), release, namespace)
    if not objects:
        return []
    return kube.server_side_diff({"apiVersion": "v1", "kind": "List", "items": objects}, namespace, context,
                                 field_manager="helm")


def rollback(release: str, namespace: str, context: str, timeout_seconds: int = 300):
    """Back to the release's previous revision (undoes a pending upgrade or rollback)."""
    run("rollback", "--namespace", namespace, *_context(context), "--", release, timeout=timeout_seconds)


def uninstall(release: str, namespace: str, context: str):
    result = run("uninstall", "--namespace", namespace, *_context(context), "--", release, check=False)
    if result.returncode != 0 and "not found" not in (result.stderr + result.stdout).lower():
        raise HelmError(f"helm uninstall {release} failed: {_cause(result)}")
