"""Builds Go binaries the dev environment needs from the Go module proxy, once
per machine: the control plane's (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) and the GCS emulator (fake-gcs-server). Each set is a
GoBuild: what it builds, from which pins, into which cache.

They go into a cache outside the checkout, keyed by the pins
(CACHE_ROOT/<key>/bin), each binary written atomically, so every checkout and
dev dir on the machine shares them and a half-finished build is never used. A
cold build takes minutes (kube-apiserver alone about 15 on two busy cores,
fake-gcs-server about 4): progress is printed while it runs; later `up`s only
check the files.
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
from dataclasses import dataclass
from pathlib import Path

from . import pins
from .core import DevEnvError, atomic_write, fail, log

PROGRESS_EVERY = 30  # seconds between "still building" lines


@dataclass(frozen=True)
class GoBuild:
    """One set of binaries built together into one cache directory."""
    what: str            # in messages: "control plane"
    cache_name: str      # /var/cache/classtools/<cache_name>
    cache_env: str       # the environment variable that moves that cache
    binaries: dict       # binary -> (module, version, package, version ldflags), built in this order
    go_toolchain: str    # oldest Go that builds them all
    cold_estimate: str   # what a cold build costs, said before it starts
    # k8s.io/kubernetes only: the release of its staging modules (see _staging_replaces)
    staging_version: str = ""
    # The binary prints its version with --version; otherwise the module version
    # Go recorded in the binary (`go version -m`) is checked.
    reports_version: bool = True


CONTROL_PLANE = GoBuild("control plane", "control-plane", "CLASSTOOLS_CONTROL_PLANE_CACHE",
                        pins.CONTROL_PLANE_BINARIES, pins.GO_TOOLCHAIN,
                        "about half an hour on two busy cores", pins.KUBERNETES_STAGING_VERSION)
FAKE_GCS_SERVER = GoBuild("gcs-emulator", "fake-gcs-server", "CLASSTOOLS_FAKE_GCS_CACHE",
                          pins.FAKE_GCS_SERVER_BINARIES, pins.FAKE_GCS_SERVER_GO,
                          "about 4 minutes on two busy cores", reports_version=False)

# The real node's kubelet and kube-proxy: same release, wrapper module and flags as
# the control plane (a separate cache key, so adding them rebuilds nothing there;
# Go's build cache makes them quick after the control plane: about a minute).
REAL_NODE = GoBuild("real node", "real-node", "CLASSTOOLS_REAL_NODE_CACHE", pins.REAL_NODE_BINARIES,
                    pins.GO_TOOLCHAIN, "a few minutes after the control plane's build",
                    pins.KUBERNETES_STAGING_VERSION)
COREDNS = GoBuild("cluster DNS", "coredns", "CLASSTOOLS_COREDNS_CACHE", pins.COREDNS_BINARIES,
                  pins.COREDNS_GO, "about 5 minutes on two busy cores", reports_version=False)

USER_SCHEDULER = GoBuild("user scheduler", "user-scheduler", "CLASSTOOLS_USER_SCHEDULER_CACHE",
                         pins.USER_SCHEDULER_BINARIES, pins.USER_SCHEDULER_GO,
                         "about 10 minutes on two busy cores", pins.USER_SCHEDULER_STAGING_VERSION)


def cache_root(env: dict | None = None, build: GoBuild = CONTROL_PLANE) -> Path:
    env = os.environ if env is None else env
    if env.get(build.cache_env):
        return Path(env[build.cache_env]).expanduser().absolute()
    system = Path("/var/cache/classtools") / build.cache_name
    built = all(os.access(system / cache_key(build) / "bin" / name, os.X_OK) for name in build.binaries)
    # Binaries root built there serve every user; otherwise a user builds in their own cache.
    if built or os.geteuid() == 0 or os.access(system if system.exists() else system.parent.parent, os.W_OK):
        return system
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "classtools" / build.cache_name


def build_spec(build: GoBuild = CONTROL_PLANE) -> dict:
    spec = {
        "binaries": {name: {"module": m, "version": v, "package": p, "ldflags": ld}
                     for name, (m, v, p, ld) in build.binaries.items()},
        "go_build_flags": pins.GO_BUILD_FLAGS,
        "go_build_env": pins.GO_BUILD_ENV,
        "go_toolchain": build.go_toolchain,
    }
    if build.staging_version:
        spec["kubernetes_staging_version"] = build.staging_version
    return spec


def cache_key(build: GoBuild = CONTROL_PLANE) -> str:
    return hashlib.sha256(json.dumps(build_spec(build), sort_keys=True).encode()).hexdigest()[:16]


def bin_dir(env: dict | None = None, build: GoBuild = CONTROL_PLANE) -> Path:
    return cache_root(env, build) / cache_key(build) / "bin"


def missing_binaries(env: dict | None = None, build: GoBuild = CONTROL_PLANE) -> list[str]:
    bins = bin_dir(env, build)
    return [name for name in build.binaries if not os.access(bins / name, os.X_OK)]


def _go(build: GoBuild) -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if not go:
        raise DevEnvError(
            f"{build.what}: building {', '.join(build.binaries)} needs Go (1.21 or newer fetches the "
            f"{build.go_toolchain} toolchain it needs from the module proxy by itself); "
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
    # Other builds and tests share the machine: these binaries are built at the
    # lowest priority so their work keeps the cores.
    return ["nice", "-n", "19"] if shutil.which("nice") else []


def _staging_replaces(go: str, env: dict, workdir: Path, logfile: Path,
                      version: str = pins.KUBERNETES_VERSION) -> list[str]:
    """The staging modules of k8s.io/kubernetes VERSION, from the replace block of its go.mod."""
    cmd = [go, "mod", "download", "-json", f"{pins.KUBERNETES_MODULE}@{version}"]
    with open(logfile, "ab") as out:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=out)
    if proc.returncode != 0:
        raise fail(f"control plane: go mod download {pins.KUBERNETES_MODULE}@{version} "
                   f"failed (log: {logfile})", logfile)
    info = json.loads(proc.stdout)
    gomod = Path(info["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/\1\s*$", gomod, re.M)
    if not staging:
        raise DevEnvError(f"control plane: no staging replaces found in {info['GoMod']}")
    return sorted(staging)


def _wrapper_module(build: GoBuild, src: Path, module: str, version: str, replaces: list[str]) -> None:
    lines = [f"// Written by scripts/dev-env: builds {module}@{version} from the module proxy.",
             f"module classtools.local/{build.cache_name}/{module.replace('/', '_')}", "",
             "go " + build.go_toolchain.removeprefix("go"), "", f"require {module} {version}"]
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {m} {build.staging_version}" for m in replaces]
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

    def __init__(self, build: GoBuild, what: str):
        self.build = build
        self.what = what
        self.start = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(PROGRESS_EVERY):
            log(f"{self.build.what}: still building {self.what} ({_mmss(time.monotonic() - self.start)} elapsed)")

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


def _reported_version(build: GoBuild, name: str, binary: Path, go: str, env: dict) -> str:
    """What the new binary says about its version: its own --version, or the
    module versions Go recorded in it."""
    cmd = [str(binary), "--version"] if build.reports_version else [go, "version", "-m", str(binary)]
    probe = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return (probe.stdout + probe.stderr).strip() if probe.returncode == 0 else ""


def _build_one(build: GoBuild, name: str, go: str, env: dict, key_dir: Path, logfile: Path) -> float:
    module, version, package, ldflags = build.binaries[name]
    src = key_dir / "src" / module.replace("/", "_")
    src.mkdir(parents=True, exist_ok=True)
    replaces = (_staging_replaces(go, env, src, logfile, version)
                if build.staging_version and module == pins.KUBERNETES_MODULE else [])
    _wrapper_module(build, src, module, version, replaces)
    bins = key_dir / "bin"
    bins.mkdir(parents=True, exist_ok=True)
    tmp = bins / f".{name}.{os.getpid()}.tmp"
    cmd = [*_nice(), go, "build", *pins.GO_BUILD_FLAGS, "-ldflags", " ".join(["-s", "-w", *ldflags]),
           "-o", str(tmp), package]
    log(f"{build.what}: building {name} ({package}@{version})")
    with _Progress(build, name) as progress, open(logfile, "ab") as out:
        out.write(f"\n$ (cd {src} && {' '.join(cmd)})\n".encode())
        out.flush()
        rc = subprocess.run(cmd, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
        elapsed = progress.elapsed
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise fail(f"{build.what}: go build of {name} ({package}@{version}) failed after "
                   f"{_mmss(elapsed)} (log: {logfile})", logfile, 30)
    reported = _reported_version(build, name, tmp, go, env)
    if version.lstrip("v") not in reported:
        tmp.unlink(missing_ok=True)
        how = f"{name} --version" if build.reports_version else f"go version -m {name}"
        raise DevEnvError(f"{build.what}: the new {name} does not report version {version} "
                          f"(`{how}`: {reported[:300]!r})")
    os.chmod(tmp, 0o755)
    os.replace(tmp, bins / name)
    log(f"{build.what}: built {name} in {_mmss(elapsed)}")
    return elapsed


def ensure_binaries(env: dict | None = None, build: GoBuild = CONTROL_PLANE) -> Path:
    """The directory holding all binaries of BUILD, building what is missing."""
    if not missing_binaries(env, build):
        return bin_dir(env, build)
    root = cache_root(env, build)
    key_dir = root / cache_key(build)
    try:
        key_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DevEnvError(f"{build.what}: cannot create the build cache {key_dir}: {exc.strerror} "
                          f"(set {build.cache_env} to a writable directory)") from None
    lock_path = root / f"{cache_key(build)}.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{build.what}: another process is building the binaries (lock {lock_path}); waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        todo = missing_binaries(env, build)
        if not todo:
            return key_dir / "bin"
        go = _go(build)
        goenv = _go_env(go)
        logfile = key_dir / "build.log"
        atomic_write(key_dir / "build-spec.json", json.dumps(build_spec(build), indent=2) + "\n")
        log(f"{build.what}: building {', '.join(todo)} into {key_dir / 'bin'} once for this machine "
            f"(cold: {build.cold_estimate}; log: {logfile})")
        times_file = key_dir / "build-times.json"
        try:
            times = json.loads(times_file.read_text())
        except (OSError, ValueError):
            times = {}
        total = time.monotonic()
        for name in todo:
            times[name] = round(_build_one(build, name, go, goenv, key_dir, logfile), 1)
            atomic_write(times_file, json.dumps(times, indent=2) + "\n")
        log(f"{build.what}: all binaries built in {_mmss(time.monotonic() - total)}")
    return key_dir / "bin"


BUILDS = {"control-plane": CONTROL_PLANE, "fake-gcs-server": FAKE_GCS_SERVER, "real-node": REAL_NODE,
          "coredns": COREDNS, "user-scheduler": USER_SCHEDULER}


def main(argv: list[str] | None = None) -> int:
    """`python3 -m devenv.cpbuild [control-plane|fake-gcs-server]`: build (or find)
    the binaries, print their directory."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0] not in BUILDS):
        log(f"usage: python3 -m devenv.cpbuild [{'|'.join(BUILDS)}]")
        return 2
    try:
        print(ensure_binaries(build=BUILDS[argv[0] if argv else "control-plane"]))
    except DevEnvError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
