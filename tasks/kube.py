"""Making releases exist: a thin adapter over helm (install side), kubectl and gcloud.

Secrets never travel on a command line: values that hold them are written
to 0600 files in a 0700 temporary directory and handed to helm with `-f`.
Helm 4 renamed `--atomic` to `--rollback-on-failure` and gave `--wait` a
strategy; the installed helm's major version decides which words are used.
`CLASSTOOLS_HELM`, `CLASSTOOLS_KUBECTL` and `CLASSTOOLS_GCLOUD` pick the binaries.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


class KubeError(Exception):
    pass


def binary(tool: str) -> str:
    found = os.environ.get(f"CLASSTOOLS_{tool.upper()}") or shutil.which(tool)
    if not found:
        raise KubeError(f"{tool} is not installed (scripts/dev-env up installs helm and kubectl; "
                        "gcloud comes with the Google Cloud CLI)")
    return found


def run(tool: str, *args, check=True, timeout=900) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run([binary(tool), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KubeError(f"{tool} {args[0]} did not finish within {timeout}s") from None
    if check and result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise KubeError(f"{tool} {' '.join(args[:2])} failed: {'; '.join(lines[-3:]) or result.returncode}")
    return result


@functools.lru_cache(maxsize=None)
def helm_major() -> int:
    text = run("helm", "version", "--short").stdout
    match = re.search(r"v(\d+)\.", text)
    if not match:
        raise KubeError(f"cannot tell the helm version from {text.strip()!r}")
    return int(match.group(1))


def upgrade_flags(timeout_seconds: int) -> list[str]:
    """Roll back on failure and wait, in the installed helm's words."""
    if helm_major() >= 4:
        return ["--rollback-on-failure", "--wait=watcher", f"--timeout={timeout_seconds}s"]
    return ["--atomic", "--wait", f"--timeout={timeout_seconds}s"]


@contextmanager
def private_values(*documents: dict):
    """Values files only the owner can read, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="classtools-values-")
    os.chmod(directory, 0o700)
    paths = []
    try:
        for i, document in enumerate(documents):
            path = Path(directory) / f"values-{i}.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
            paths.append(str(path))
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _context(context: str, flag: str) -> list[str]:
    return [flag, context] if context else []


def helm_upgrade(release: str, chart: str, namespace: str, context: str, values: list[dict],
                 timeout_seconds: int, repo: str = "", version: str = ""):
    with private_values(*values) as files:
        args = ["upgrade", "--install", release, chart, "--namespace", namespace, "--create-namespace",
                *_context(context, "--kube-context"), *upgrade_flags(timeout_seconds)]
        if repo:
            args += ["--repo", repo]
        if version:
            args += ["--version", version]
        for path in files:
            args += ["-f", path]
        run("helm", *args, timeout=timeout_seconds + 60)


def helm_values(release: str, namespace: str, context: str) -> dict | None:
    """The user-supplied values of a deployed release, or None when it is not deployed."""
    result = run("helm", "get", "values", release, "--namespace", namespace, "--output", "json",
                 *_context(context, "--kube-context"), check=False)
    if result.returncode != 0:
        if "not found" in (result.stderr + result.stdout).lower():
            return None
        raise KubeError(f"helm get values {release} failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout or "{}") or {}


def helm_uninstall(release: str, namespace: str, context: str):
    result = run("helm", "uninstall", release, "--namespace", namespace, *_context(context, "--kube-context"),
                 check=False)
    if result.returncode != 0 and "not found" not in (result.stderr + result.stdout).lower():
        raise KubeError(f"helm uninstall {release} failed: {result.stderr.strip()[-300:]}")


def kubectl(*args, context: str = "", check=True) -> subprocess.CompletedProcess:
    return run("kubectl", *_context(context, "--context"), *args, check=check)


def gcloud(*args, check=True) -> subprocess.CompletedProcess:
    return run("gcloud", *args, "--quiet", check=check)


def kubectl_apply(manifest: dict, context: str = ""):
    with private_values(manifest) as (path,):  # JSON is YAML to kubectl
        kubectl("apply", "-f", path, context=context)
