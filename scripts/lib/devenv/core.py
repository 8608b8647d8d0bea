"""What every service of the dev environment shares: the context (where state
lives), logging, errors, processes started in the background, waiting for them.

Standard library only: this runs before the project venv exists.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
STOP_TIMEOUT = 20


class DevEnvError(Exception):
    """A failure the user can act on: the message says what failed and why
    (with the tail of the relevant log); the CLI prints it without a traceback."""


def log(msg: str) -> None:
    print(f"dev-env: {msg}", file=sys.stderr, flush=True)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a daemon's log, so a failure is diagnosable from the
    terminal (or pytest's captured output) without opening files."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    if not tail:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(f"    {line}" for line in tail)


def fail(msg: str, logfile: Path | None = None, lines: int = 20) -> DevEnvError:
    return DevEnvError(msg + (log_tail(logfile, lines) if logfile else ""))


@dataclass
class Context:
    """Where this dev environment keeps its state, and the knobs from the environment."""
    dev_dir: Path
    env: dict = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_env(cls, dev_dir: str | os.PathLike | None = None) -> "Context":
        raw = dev_dir or os.environ.get("CLASSTOOLS_DEV_DIR") or REPO / ".dev"
        # Daemons and pid markers need an absolute path.
        return cls(dev_dir=Path(raw).expanduser().absolute())

    @property
    def docker_host(self) -> str:
        return self.env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    @property
    def venv(self) -> Path:
        return REPO / ".venv"

    def path(self, *parts: str) -> Path:
        return self.dev_dir.joinpath(*parts)


class Lock:
    """Two concurrent `up`s (parallel test sessions) would race for ports and
    pid files. Same file and flock as the bash tool had, so old and new agree."""

    def __init__(self, ctx: Context, timeout: float = 900):
        self.path = ctx.path(".lock")
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise DevEnvError(f"another dev-env holds {self.path} for over {self.timeout:g}s")
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)


# ---------------------------------------------------------------- files

def atomic_write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_int(path: Path) -> int | None:
    try:
        digits = "".join(ch for ch in Path(path).read_text() if ch.isdigit())
    except OSError:
        return None
    return int(digits) if digits else None


def as_root(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "--", *cmd]
    raise DevEnvError(f"need root for: {' '.join(cmd)}")


def run_logged(cmd: list[str], logfile: Path, what: str, env: dict | None = None,
               cwd: Path | None = None, stdin=subprocess.DEVNULL) -> None:
    """Runs CMD with its output appended to LOGFILE; a failure names WHAT and shows the log tail."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                stdin=stdin).returncode
        except OSError as exc:
            raise DevEnvError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if rc != 0:
        raise fail(f"{what} failed (exit {rc}; log: {logfile})", logfile)


# ---------------------------------------------------------------- processes

def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # A zombie has exited; only its parent has not reaped it yet.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pid_is(pid: int | None, marker: str) -> bool:
    """PID runs and its command line contains MARKER: guards against a pid
    recycled after a reboot or crash."""
    if not pid or not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def cmdline(pid: int) -> list[str]:
    """PID's argv ([] when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def live_pid(pidfile: Path, marker: str) -> int | None:
    pid = read_int(pidfile)
    return pid if pid_is(pid, marker) else None


def spawn(cmd: list[str], logfile: Path, pidfile: Path, env: dict | None = None,
          cwd: Path | None = None) -> int:
    """Starts CMD detached (new session: it outlives the terminal or pytest run
    that started it and does not get its SIGINT); output to LOGFILE, not to
    inherited pipes, or a caller capturing our output would wait for EOF forever."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out, open(os.devnull, "rb") as devnull:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(cmd, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=cwd)
        except OSError as exc:
            raise DevEnvError(f"cannot start {cmd[0]}: {exc.strerror}") from None
    atomic_write(pidfile, f"{proc.pid}\n")
    # Popen objects reap on garbage collection only: keep them so a daemon that
    # dies during start-up is seen as gone (not a zombie) by pid_alive.
    _CHILDREN.append(proc)
    return proc.pid


_CHILDREN: list[subprocess.Popen] = []


def reap() -> None:
    for proc in _CHILDREN:
        proc.poll()


def _stop_pid(name: str, pid: int, marker: str, timeout: float) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not pid_is(pid, marker):
            break
        time.sleep(0.2)
    else:
        log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:g}s; killing it")
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
    log(f"{name} stopped (pid {pid})")


def stop_pidfile(name: str, pidfile: Path, marker: str, timeout: float = STOP_TIMEOUT) -> bool:
    """Stops the process recorded in PIDFILE if it is still ours; True if one was stopped."""
    pid = live_pid(pidfile, marker)
    if pid:
        _stop_pid(name, pid, marker, timeout)
    try:
        pidfile.unlink()
    except FileNotFoundError:
        pass
    return pid is not None


def pids_with(marker: str, program: str) -> list[int]:
    """Live processes running PROGRAM (argv[0], or the script an interpreter runs)
    whose command line contains MARKER: a `tail` of the same file is no daemon."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not pid_is(int(entry.name), marker):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:3]
        except OSError:
            continue
        if any(os.path.basename(a.decode(errors="replace")) == program for a in argv):
            found.append(int(entry.name))
    return sorted(found)


def strays(ctx: Context, pidfile: Path, marker: str, program: str) -> list[int]:
    """Processes serving this dev dir (MARKER names one of its files) that no pid
    file records: left behind when a pid file was lost. They are this dev dir's
    services, so `down` stops them; `up` only reports them, since a session
    that read an older services.json may still be using one."""
    if str(ctx.dev_dir) not in marker:
        return []  # a marker that is not this dev dir's cannot prove ownership
    recorded = read_int(pidfile)
    return [pid for pid in pids_with(marker, program) if pid != recorded]


def stop_service(ctx: Context, name: str, pidfile: Path, marker: str, program: str,
                 timeout: float = STOP_TIMEOUT) -> bool:
    """`down` for one daemon: the recorded process and any strays of this dev dir."""
    stray = strays(ctx, pidfile, marker, program)
    stopped = stop_pidfile(name, pidfile, marker, timeout)
    for pid in stray:
        _stop_pid(f"{name} (stray, unrecorded)", pid, marker, timeout)
    return stopped or bool(stray)


def warn_strays(ctx: Context, name: str, pidfile: Path, marker: str, program: str) -> None:
    stray = strays(ctx, pidfile, marker, program)
    if stray:
        log(f"{name}: {len(stray)} more process(es) serve this dev dir without a pid file "
            f"(pids {', '.join(map(str, stray))}; left by an earlier tool or a lost pid file); "
            "left running, `scripts/dev-env down` stops them")


# ---------------------------------------------------------------- network

def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same as the services (Go and Python servers set SO_REUSEADDR): a port
        # whose old connections linger in TIME_WAIT after `down` is still usable,
        # so `up` gets the recorded port back; a live listener still fails bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(prefer: int | None = None, avoid: set[int] = frozenset()) -> int:
    if prefer and prefer not in avoid and port_is_free(prefer):
        return prefer
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


# Services live on loopback: an http_proxy in the environment (common behind
# corporate proxies) must never see these requests.
def http_status(url: str, ssl_context: ssl.SSLContext | None = None, timeout: float = 3,
                headers: dict | None = None) -> tuple[int, bytes]:
    handlers = [urllib.request.ProxyHandler({})]
    if ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def http_ok(url: str, ssl_context: ssl.SSLContext | None = None) -> bool:
    return http_status(url, ssl_context)[0] == 200


def wait_until(check, timeout: float, what: str, pid: int | None = None, logfile: Path | None = None,
               interval: float = 0.3, progress_every: float = 0) -> None:
    """Polls CHECK until true; fails early when PID exits, else after TIMEOUT."""
    start = time.monotonic()
    next_note = start + progress_every if progress_every else None
    while True:
        if check():
            return
        reap()
        if pid is not None and not pid_alive(pid):
            raise fail(f"{what}: the process (pid {pid}) exited before it was ready"
                       + (f" (log: {logfile})" if logfile else ""), logfile)
        now = time.monotonic()
        if now - start >= timeout:
            raise fail(f"{what}: not ready within {timeout:g}s" + (f" (log: {logfile})" if logfile else ""),
                       logfile)
        if next_note and now >= next_note:
            log(f"{what}: still waiting ({now - start:.0f}s)")
            next_note = now + progress_every
        time.sleep(interval)
