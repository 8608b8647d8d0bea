"""Builds the control plane's binaries (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) from the Go module proxy, once per machine.

They go into a cache outside the checkout, keyed by the pins
(CACHE_ROOT/<key>/bin), each binary written atomically, so every checkout and
dev dir on the machine shares them and a half-finished build is never used. A
cold build takes many minutes (kube-apiserver alone about 15 on two busy
cores): progress is printed while it runs; later `up`s only check the files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from . import pins
from .core import DevEnvError, atomic_write, fail, log

PROGRESS_EVERY = 30  # seconds between "still building" lines


def cache_root(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CLASSTOOLS_CONTROL_PLANE_CACHE"):
        return Path(env["CLASSTOOLS_CONTROL_PLANE_CACHE"]).expanduser().absolute()
    system = Path("/var/cache/classtools/control-plane")
    built = all(os.access(system / cache_key() / "bin" / name, os.X_OK) for name in pins.CONTROL_PLANE_BINARIES)
    # Binaries root built there serve every user; otherwise a user builds in their own cache.
    if built or os.geteuid() == 0 or os.access(system if system.exists() else system.parent.parent, os.W_OK):
        return system
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "classtools" / "control-plane"


def build_spec() -> dict:
    return {
        "binaries": {name: {"module": m, "version": v, "package": p, "ldflags": ld}
                     for name, (m, v, p, ld) in pins.CONTROL_PLANE_BINARIES.items()},
        "kubernetes_staging_version": pins.KUBERNETES_STAGING_VERSION,
        "go_build_flags": pins.GO_BUILD_FLAGS,
        "go_build_env": pins.GO_BUILD_ENV,
        "go_toolchain": pins.GO_TOOLCHAIN,
    }


def cache_key() -> str:
    return hashlib.sha256(json.dumps(build_spec(), sort_keys=True).encode()).hexdigest()[:16]


def bin_dir(env: dict | None = None) -> Path:
    return cache_root(env) / cache_key() / "bin"


def missing_binaries(env: dict | None = None) -> list[str]:
    bins = bin_dir(env)
    return [name for name in pins.CONTROL_PLANE_BINARIES if not os.access(bins / name, os.X_OK)]


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if not go:
        raise DevEnvError(
            "control plane: building etcd/kube-apiserver/kwok needs Go (1.21 or newer fetches the "
            f"{pins.GO_TOOLCHAIN} toolchain it needs from the module proxy by itself); "
            "none on PATH or in /usr/local/go/bin. Install Go from https://go.dev/dl/ "
            "(Debian bookworm's golang-go 1.19 is too old)")
    return go


def _go_env(go: str) -> dict:
    env = dict(os.environ, **pins.GO_BUILD_ENV)
    env["PATH"] = f"{Path(go).parent}:{env.get('PATH', '')}"
    # An outer module (the checkout has none, but a caller's cwd might) must not leak in.
    env.pop("GOFLAGS", None)
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    return env


def _nice() -> list[str]:
    # Other builds and tests share the machine: the control plane is built at the
    # lowest priority so their work keeps the cores.
    return ["nice", "-n", "19"] if shutil.which("nice") else []


def _staging_replaces(go: str, env: dict, workdir: Path, logfile: Path) -> list[str]:
    """The staging modules of k8s.io/kubernetes, from the replace block of its go.mod."""
    cmd = [go, "mod", "download", "-json", f"{pins.KUBERNETES_MODULE}@{pins.KUBERNETES_VERSION}"]
    with open(logfile, "ab") as out:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=out)
    if proc.returncode != 0:
        raise fail(f"control plane: go mod download {pins.KUBERNETES_MODULE}@{pins.KUBERNETES_VERSION} "
                   f"failed (log: {logfile})", logfile)
    info = json.loads(proc.stdout)
    gomod = Path(info["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/\1\s*$", gomod, re.M)
    if not staging:
        raise DevEnvError(f"control plane: no staging replaces found in {info['GoMod']}")
    return sorted(staging)


def _wrapper_module(src: Path, module: str, version: str, replaces: list[str]) -> None:
    lines = [f"// Written by scripts/dev-env: builds {module}@{version} from the module proxy.",
             f"module classtools.local/control-plane/{module.replace('/', '_')}", "",
             "go " + pins.GO_TOOLCHAIN.removeprefix("go"), "", f"require {module} {version}"]
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {m} {pins.KUBERNETES_STAGING_VERSION}" for m in replaces]
        lines += [")"]
    gomod = src / "go.mod"
    text = "\n".join(lines) + "\n"
    # Keep the go.mod/go.sum `go build -mod=mod` completed earlier: rewriting
    # would make it resolve the graph again.
    if not gomod.exists() or not gomod.read_text().startswith(lines[0]):
        src.mkdir(parents=True, exist_ok=True)
        atomic_write(gomod, text)


class _Progress:
    """Prints which binary is building and for how long, every PROGRESS_EVERY seconds."""

    def __init__(self, what: str):
        self.what = what
        self.start = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(PROGRESS_EVERY):
            log(f"control plane: still building {self.what} ({_mmss(time.monotonic() - self.start)} elapsed)")

    def __enter__(self) -> "_Progress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _mmss(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _build_one(name: str, go: str, env: dict, key_dir: Path, logfile: Path) -> float:
    module, version, package, ldflags = pins.CONTROL_PLANE_BINARIES[name]
    src = key_dir / "src" / module.replace("/", "_")
    src.mkdir(parents=True, exist_ok=True)
    replaces = _staging_replaces(go, env, src, logfile) if module == pins.KUBERNETES_MODULE else []
    _wrapper_module(src, module, version, replaces)
    bins = key_dir / "bin"
    bins.mkdir(parents=True, exist_ok=True)
    tmp = bins / f".{name}.{os.getpid()}.tmp"
    cmd = [*_nice(), go, "build", *pins.GO_BUILD_FLAGS, "-ldflags", " ".join(["-s", "-w", *ldflags]),
           "-o", str(tmp), package]
    log(f"control plane: building {name} ({package}@{version})")
    with _Progress(name) as progress, open(logfile, "ab") as out:
        out.write(f"\n$ (cd {src} && {' '.join(cmd)})\n".encode())
        out.flush()
        rc = subprocess.run(cmd, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
        elapsed = progress.elapsed
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise fail(f"control plane: go build of {name} ({package}@{version}) failed after "
                   f"{_mmss(elapsed)} (log: {logfile})", logfile, 30)
    probe = subprocess.run([str(tmp), "--version"], capture_output=True, text=True)
    if probe.returncode != 0 or version.lstrip("v") not in probe.stdout + probe.stderr:
        tmp.unlink(missing_ok=True)
        raise DevEnvError(f"control plane: the new {name} does not report version {version} "
                          f"(`{name} --version`: {(probe.stdout + probe.stderr).strip()[:300]!r})")
    os.chmod(tmp, 0o755)
    os.replace(tmp, bins / name)
    log(f"control plane: built {name} in {_mmss(elapsed)}")
    return elapsed


def ensure_binaries(env: dict | None = None) -> Path:
    """The directory holding all control-plane binaries, building what is missing."""
    if not missing_binaries(env):
        return bin_dir(env)
    root = cache_root(env)
    key_dir = root / cache_key()
    try:
        key_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DevEnvError(f"control plane: cannot create the build cache {key_dir}: {exc.strerror} "
                          "(set CLASSTOOLS_CONTROL_PLANE_CACHE to a writable directory)") from None
    lock_path = root / f"{cache_key()}.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"control plane: another process is building the binaries (lock {lock_path}); waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        todo = missing_binaries(env)
        if not todo:
            return key_dir / "bin"
        go = _go()
        goenv = _go_env(go)
        logfile = key_dir / "build.log"
        atomic_write(key_dir / "build-spec.json", json.dumps(build_spec(), indent=2) + "\n")
        log(f"control plane: building {', '.join(todo)} into {key_dir / 'bin'} once for this machine "
            f"(cold: about half an hour on two busy cores; log: {logfile})")
        times_file = key_dir / "build-times.json"
        try:
            times = json.loads(times_file.read_text())
        except (OSError, ValueError):
            times = {}
        total = time.monotonic()
        for name in todo:
            times[name] = round(_build_one(name, go, goenv, key_dir, logfile), 1)
            atomic_write(times_file, json.dumps(times, indent=2) + "\n")
        log(f"control plane: all binaries built in {_mmss(time.monotonic() - total)}")
    return key_dir / "bin"


def main() -> int:
    """`python3 -m devenv.cpbuild`: build (or find) the binaries, print their directory."""
    try:
        print(ensure_binaries())
    except DevEnvError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
