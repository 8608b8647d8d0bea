"""A thin adapter over the helm binary (v3 or v4): lint, package, pull, template."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path


class HelmError(Exception):
    pass


@functools.lru_cache(maxsize=None)
def binary() -> str:
    found = os.environ.get("CLASSTOOLS_HELM") or shutil.which("helm")
    if not found:
        raise HelmError("helm is not installed: run scripts/dev-env up (or install helm 3 or 4)")
    return found


def run(*args, timeout=300, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise HelmError(f"helm {args[0]} failed: {_cause(result)}")
    return result


def _cause(result) -> str:
    lines = [l.strip() for l in (result.stderr + result.stdout).splitlines() if l.strip()]
    errors = [l for l in lines if "[ERROR]" in l or l.lower().startswith("error")]
    return "; ".join(errors[-5:] or lines[-3:]) or f"exit {result.returncode}"


def lint(chart_dir: Path):
    run("lint", "--strict", str(chart_dir))


def package(chart_dir: Path, destination: Path) -> Path:
    result = run("package", str(chart_dir), "--destination", str(destination))
    return Path(result.stdout.strip().rsplit(" ", 1)[-1])


def pull(repository: str, name: str, version: str, destination: Path, timeout=60) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    try:
        run("pull", name, "--repo", repository, "--version", version, "--destination",
            str(destination), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HelmError(f"helm pull timed out after {timeout}s") from None
    return destination / f"{name}-{version}.tgz"
