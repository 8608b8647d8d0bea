"""One `doit` per project at a time, and what a killed run leaves behind.

- **The lock**: an flock on `<dep_file>.lock`. Commands that only read
  (`list`, `info`, `help`, `dumpdb`, `tabcompletion`) take none: the state file
  is replaced atomically (tasks/run/statefile.py), so they always read a whole one.
  Everything else waits for a running `doit` of the same project with one line
  on stderr, then goes on: the second run finds the first one's work done and
  does only what is left. Refusing would make every CI retry or second terminal
  fail for no reason. The kernel drops an flock when its holder dies, kill -9
  included, so a lock is never stale.
- **Scratch**: each run's temporary files (build contexts, charts to lint,
  anything helm or docker make under TMPDIR) live in one directory,
  `$TMPDIR/classtools-run-<pid>.<start time>`; the run removes it when it ends,
  and the next run removes those whose process is gone (killed).
- **Operations in the outside world**: a helm upgrade killed midway leaves its
  release `pending-*`, and helm refuses every later operation on it. A run marks
  the operation (`<dep_file>.operations/NAME`, its pid and start time) while it
  runs; the next run that finds the release pending and the marker's process
  gone knows the pending operation was a killed run's and undoes it.
- **Build processes**: `docker build` clients a run started are listed in its
  scratch directory; the next run stops those still alive (same pid, same start
  time: a reused pid is someone else's process).
- **Crash points** for the crash test (tests/integration/test_crash.py): with
  `CLASSTOOLS_CRASH_AT=point:NAME[@SECONDS]` the run SIGKILLs its whole process
  group when it reaches `crash_point(NAME)`; `open:`, `rename:`, `send:` and
  `exec:` name Python audit events instead (`install_crash_hook`). Unset, this
  costs one environment lookup per point.

Standard library only, imported at load: it runs on every `doit`.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

CRASH_ENV = "CLASSTOOLS_CRASH_AT"
READ_ONLY_COMMANDS = frozenset({"list", "info", "help", "dumpdb", "tabcompletion"})
RUN_PREFIX = "classtools-run-"


# --- processes ---------------------------------------------------------------------------------

def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    when no such process runs (or it has ended): with the pid, it names one process even after
    the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):  # a zombie has ended, only not been reaped
        return None
    return fields[19].decode()


def identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{start_time(pid)}"


def alive(ident: str) -> bool:
    pid, _, started = ident.partition(".")
    return pid.isdigit() and start_time(int(pid)) == started


# --- the lock -----------------------------------------------------------------------------------

def lock_path(dep_file: str | Path) -> Path:
    return Path(f"{dep_file}.lock")


def acquire(dep_file: str | Path, *, wait: bool = True, say=None) -> int | None:
    """Take the project's lock (kept until this process ends); the fd, or None when `wait` is
    False and another run holds it. Makes the state directory: the first thing a run writes."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    path = lock_path(dep_file)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        print(f"classroom: cannot make the lock {path} beside doit's state file ({exc.strerror}); "
              "point state.dep_file (config/classroom.yaml) or CLASSTOOLS_DEP_FILE at a writable "
              "place", file=sys.stderr, flush=True)
        sys.exit(3)  # doit's code for "error before task execution starts"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(".")[0] or "?"
        if not wait:
            os.close(fd)
            return None
        say(f"classroom: another doit of this project is running (pid {holder}, lock {path}); "
            "waiting for it to finish")
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, identity().encode(), 0)  # who holds it, for the message above
    return fd


def command_name(default: str = "run") -> str:
    """The doit command loading dodo.py (`run`, `list`, ...): the DoitCmdBase instance whose
    execute() is on the stack. doit hands no such thing to dodo.py; `default` when not found."""
    try:
        from doit.cmd_base import DoitCmdBase
    except ImportError:
        return default
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, DoitCmdBase):
            return getattr(candidate, "name", None) or type(candidate).__name__.lower()
        frame = frame.f_back
    return default


def start_run(dep_file: str | Path, command: str | None = None, temp_dirs=()) -> bool:
    """What dodo.py calls once the config is valid: for a command that may change something,
    wait for the lock, clean up after killed runs (their scratch directories, build processes,
    and half-written `.NAME.PID.tmp` files beside the state and in `temp_dirs`) and give this
    run its scratch directory. False (nothing done, nothing created) for a read-only command."""
    command = command or command_name()
    if command in READ_ONLY_COMMANDS:
        return False
    global _lock_fd, _operations_dir
    _lock_fd = acquire(dep_file)
    _operations_dir = Path(f"{dep_file}.operations")
    remove_stale_temps(Path(dep_file).parent, *temp_dirs)
    system_tmp = Path(tempfile.gettempdir())
    clean_dead_runs(system_tmp)
    use_scratch(system_tmp)
    return True


_lock_fd: int | None = None
_operations_dir: Path | None = None


# --- operations a killed run may have left half done in the outside world ----------------------

@contextmanager
def operation(name: str):
    """Mark `name` (e.g. a helm upgrade of one release) as under way by this run, beside the
    state, until it returns or fails: if the run is killed meanwhile, the next run can tell
    that the half-done operation it finds was ours and its process is gone."""
    marker = _operations_dir / name if _operations_dir else None
    if marker is not None:
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(identity())
    try:
        yield
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def killed_operation(name: str) -> bool:
    """Was `name` started by a run of this project that is gone (killed before it ended)?"""
    if _operations_dir is None:
        return False
    try:
        owner = (_operations_dir / name).read_text().strip()
    except OSError:
        return False
    return not alive(owner)


def forget_operation(name: str):
    if _operations_dir is not None:
        (_operations_dir / name).unlink(missing_ok=True)


# --- scratch and leftovers ---------------------------------------------------------------------

def stale_temps(directory: str | Path) -> list[Path]:
    """Files `.NAME.PID.tmp` (how this project writes a file atomically: the state, the secrets,
    the chart archive, rendered manifests) whose writer is gone: a killed run's."""
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return []
    from tasks.atomic import is_temp_name, temp_pid
    return [path for path in entries if is_temp_name(path.name) and start_time(temp_pid(path.name)) is None]


def remove_stale_temps(*directories: str | Path) -> int:
    removed = 0
    for directory in directories:
        for temp in stale_temps(directory):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


def use_scratch(system_tmp: Path) -> Path:
    """Point this process's temporary files (Python's tempfile, and TMPDIR for the tools it
    starts) at a directory of this run's own, removed when the run ends."""
    scratch = system_tmp / f"{RUN_PREFIX}{identity()}"
    scratch.mkdir(mode=0o700, exist_ok=True)
    tempfile.tempdir = str(scratch)
    os.environ["TMPDIR"] = str(scratch)
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


def scratch_dir() -> Path | None:
    """This run's scratch directory, if start_run made one."""
    here = Path(tempfile.gettempdir())
    return here if here.name.startswith(RUN_PREFIX) else None


def clean_dead_runs(system_tmp: Path, say=None) -> list[str]:
    """Remove the scratch directories of runs that no longer exist, after stopping the build
    processes they left running. Returns what was removed (names only)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    removed = []
    try:
        entries = list(os.scandir(system_tmp))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(RUN_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        owner = entry.name[len(RUN_PREFIX):]
        if alive(owner):
            continue
        stopped = stop_recorded_processes(Path(entry.path))
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
        say(f"classroom: cleaned up after an interrupted run (pid {owner.partition('.')[0]}): "
            f"its temporary files{f' and {stopped} build process(es)' if stopped else ''}")
    return removed


def record_process(pid: int) -> str:
    """Note a long-running child (a docker build) so that the next run can stop it if this run
    is killed and the child is not; its identity, for forget_process."""
    ident = identity(pid)
    scratch = scratch_dir()
    if scratch is not None:
        processes = scratch / "processes"
        processes.mkdir(exist_ok=True)
        (processes / ident).touch()
    return ident


def forget_process(ident: str):
    scratch = scratch_dir()
    if scratch is not None:
        (scratch / "processes" / ident).unlink(missing_ok=True)


def stop_recorded_processes(scratch: Path) -> int:
    stopped = 0
    for entry in (scratch / "processes").glob("*"):
        if alive(entry.name):
            try:
                os.kill(int(entry.name.partition(".")[0]), signal.SIGKILL)
                stopped += 1
            except OSError:
                pass
    return stopped


# --- crash points -------------------------------------------------------------------------------

def crash_point(name: str):
    """Die here, like a kill -9 of the whole run, when CLASSTOOLS_CRASH_AT names this point."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted and wanted.partition("@")[0] == f"point:{name}":
        _crash_after(wanted)


def _crash_after(wanted: str):
    _, _, delay = wanted.partition("@")
    if delay:  # e.g. a second into `helm upgrade`: kill while the child works
        import threading  # only when crashing on purpose: not on every run's import path
        threading.Timer(float(delay), _die).start()
    else:
        _die()


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)  # not a group leader (run by hand): at least this process


_AUDIT_EVENTS = {"open": "open", "rename": "os.rename", "send": "http.client.send", "exec": "subprocess.Popen"}


def install_crash_hook():
    """With CLASSTOOLS_CRASH_AT=KIND:PATTERN[@SECONDS], also die at Python audit events, so points
    in any module are reachable without code there: `open:GLOB` (a file opened for writing),
    `rename:GLOB` (an os.rename/replace onto a matching path), `send:TEXT` (an HTTP request
    whose bytes contain TEXT, e.g. an upload to the charts bucket), `exec:GLOB` (a subprocess
    whose command line matches, e.g. `*kubectl* label *`). Fires once."""
    wanted = os.environ.get(CRASH_ENV, "")
    kind, _, rest = wanted.partition(":")
    if kind not in _AUDIT_EVENTS:
        return
    import fnmatch  # only with CLASSTOOLS_CRASH_AT set

    pattern = rest.partition("@")[0]
    fired = []

    def matches(event, args) -> bool:
        if kind == "open" and event == "open":
            path, mode, flags = args
            writing = (mode and any(c in mode for c in "wax+")) or (
                flags is not None and flags & (os.O_WRONLY | os.O_RDWR))
            return bool(writing) and isinstance(path, (str, os.PathLike)) and fnmatch.fnmatch(os.fspath(path), pattern)
        if kind == "rename" and event == "os.rename":
            return fnmatch.fnmatch(os.fspath(args[1]), pattern)
        if kind == "send" and event == "http.client.send":
            data = args[1]
            return isinstance(data, (bytes, bytearray)) and pattern.encode() in data
        if kind == "exec" and event == "subprocess.Popen":
            argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            return fnmatch.fnmatch(" ".join(os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv),
                                   pattern)
        return False

    event_name = _AUDIT_EVENTS[kind]

    def hook(event, args):
        if event == event_name and not fired and matches(event, args):
            fired.append(event)
            _crash_after(wanted)

    sys.addaudithook(hook)
