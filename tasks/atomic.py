"""Replacing a file so that a reader, or a killed run, sees the old content or the new, never half.

Every file this project writes in place goes through `write_atomically`: a
temp file `.NAME.PID.tmp` in the same directory, fsync, rename, fsync of the
directory.  A killed run's temp files are recognised by that name
(`is_temp_name`) and removed by the next run (tasks/run/runlock.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_NAME_MAX = 255


def temp_name(name: str, pid: int | None = None) -> str:
    """`.NAME.PID.tmp`; for a name too long to take the affixes, a digest of it instead."""
    pid = os.getpid() if pid is None else pid
    temp = f".{name}.{pid}.tmp"
    if len(temp.encode("utf-8", "surrogatepass")) > _NAME_MAX:
        temp = f".{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}.{pid}.tmp"
    return temp


def is_temp_name(name: str) -> bool:
    parts = name.rsplit(".", 2)
    return name.startswith(".") and len(parts) == 3 and parts[2] == "tmp" and parts[1].isdigit()


def temp_pid(name: str) -> int:
    """The writer's process id in a name for which `is_temp_name` holds."""
    return int(name.rsplit(".", 2)[1])


def write_atomically(path: str | Path, data, *, mode: int = 0o600, point: str | None = None,
                     sync_directory: bool = True):
    """Replace `path` by `data` (bytes, or a callable that fills the open binary handle).

    `mode` is the file's, whatever the umask; the temp file is never followed
    through a link.  `point` names the crash test's kill points in it
    (`state:written`, `state:synced`, `state:renamed`)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, temp_name(os.path.basename(path)))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            _crash_point(point, "written")
            os.fsync(handle.fileno())  # a crash after the rename must not leave an empty file
        os.chmod(temp, mode)  # a umask, or an old temp file, may have got in the way
        _crash_point(point, "synced")
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _crash_point(point, "renamed")
    if not sync_directory:
        return
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _crash_point(point: str | None, step: str):
    if point:
        from tasks.run import runlock  # not at import: runlock finds stale temp files with is_temp_name
        runlock.crash_point(f"{point}:{step}")
