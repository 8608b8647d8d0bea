"""Making the cluster side exist: a thin adapter over kubectl and gcloud (helm: tasks/helm.py).

Secrets never travel on a command line, and never touch the disk: documents
that hold them are written to anonymous memory files (memfd, mode 0600) that
the tool inherits and opens as `/dev/fd/N` (`private_values`); they vanish
with the last process that holds them, a kill -9 included.
`CLASSTOOLS_KUBECTL` and `CLASSTOOLS_GCLOUD` pick the binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager

from tasks.errors import ClassroomError


class KubeError(ClassroomError):
    pass


def binary(tool: str) -> str:
    found = os.environ.get(f"CLASSTOOLS_{tool.upper()}") or shutil.which(tool)
    if not found:
        raise KubeError(f"{tool} is not installed (scripts/dev-env up installs helm and kubectl; "
                        "gcloud comes with the Google Cloud CLI)")
    return found


def run(tool: str, *args, check=True, timeout=900) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run([binary(tool), *args], capture_output=True, text=True, timeout=timeout,
                                pass_fds=inherited_fds(args))
    except subprocess.TimeoutExpired:
        raise KubeError(f"{tool} {args[0]} did not finish within {timeout}s") from None
    if check and result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise KubeError(f"{tool} {' '.join(args[:2])} failed: {'; '.join(lines[-3:]) or result.returncode}")
    return result


FD_PREFIX = "/dev/fd/"


@contextmanager
def private_values(*documents: dict):
    """`/dev/fd/N` paths of values files held in memory only: not on any disk, so nothing is
    left behind whatever ends this process. Run the tool with `pass_fds=inherited_fds(args)`
    (run() does); opening the path gives it the whole file, as often as it likes."""
    fds = []
    try:
        for i, document in enumerate(documents):
            fd = os.memfd_create(f"classtools-values-{i}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.fchmod(fd, 0o600)
            data = json.dumps(document).encode()
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        yield [f"{FD_PREFIX}{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def inherited_fds(args) -> tuple[int, ...]:
    """The descriptors behind the private_values paths among a command's arguments."""
    return tuple(int(arg[len(FD_PREFIX):]) for arg in args
                 if isinstance(arg, str) and arg.startswith(FD_PREFIX) and arg[len(FD_PREFIX):].isdigit())


def _context(context: str, flag: str) -> list[str]:
    return [flag, context] if context else []


def kubectl(*args, context: str = "", check=True) -> subprocess.CompletedProcess:
    return run("kubectl", *_context(context, "--context"), *args, check=check)


def gcloud(*args, operands=(), check=True) -> subprocess.CompletedProcess:
    """gcloud ARGS --quiet -- OPERANDS: the config's values are operands, never options."""
    return run("gcloud", *args, "--quiet", *(["--", *operands] if operands else []), check=check)


def kubectl_apply(manifest: dict, context: str = ""):
    with private_values(manifest) as (path,):  # JSON is YAML to kubectl
        kubectl("apply", "-f", path, context=context)


def changed_objects(diff_output: str) -> list[str]:
    """`kubectl diff` names each changed object in its `diff -u -N LIVE/NAME MERGED/NAME` line,
    NAME being group.version.Kind.namespace.name; only the names are kept (diffs may hold secrets)."""
    names = []
    for line in diff_output.splitlines():
        if line.startswith("diff -u -N "):
            name = line.split()[-1].rsplit("/", 1)[-1]
            parts = name.split(".")
            names.append(f"{parts[-3]}/{parts[-1]}" if len(parts) >= 3 else name)
    return names


def server_side_diff(manifest: dict, namespace: str, context: str = "", field_manager: str = "") -> list[str]:
    """Objects a server-side apply of `manifest` (conflicts forced) would change: [] when none."""
    with private_values(manifest) as (path,):
        result = kubectl("diff", "--server-side", "--force-conflicts",
                         *(["--field-manager", field_manager] if field_manager else []),
                         "--namespace", namespace, "-f", path, context=context, check=False)
    if result.returncode == 0:
        return []
    if result.returncode == 1:
        return changed_objects(result.stdout) or ["(unnamed object)"]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    raise KubeError(f"kubectl diff failed: {'; '.join(lines[-3:]) or result.returncode}")
