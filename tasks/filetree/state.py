"""An image's build context as ONE task input, whatever its number of files.

doit's `file_dep` costs a stat per file on every run and a state entry per
file, rewritten on every run: at 50,000 context files a no-op spent most of
its second there.  Instead each image task gets one `uptodate` check, in
three steps of rising cost:

1. the *probe*: has any entry under the context's directories changed its
   status (ctime: every write, chmod, rename, link, and every add or remove in
   its directory) since the newest change the last listing saw?  One `find`
   per image, all started together, that prints nothing when nothing
   changed.  Quiet: the listing is the one remembered, no digest is taken.
2. the *listing* digest: every entry with its path, type, size, mtime, ctime
   and mode (no content read, no `.dockerignore` applied; ctime catches an
   edit that kept the size and put the mtime back).  Unchanged listing: up
   to date.
3. otherwise the *content* digest: exactly what the build would be sent (after
   `.dockerignore`) with each file's content and exec bit, as the image's tag
   counts it.  The same content as at the last build (a touch, an edit to an
   ignored file, an edit undone): still up to date.  Different content: the
   task runs.

A listing and its content digest are remembered in a small side file with the
listing's newest ctime, so the next no-op is a probe again.  A listing whose
newest change is under QUIET_SECONDS old is remembered without that time:
a change in the same clock tick could hide from the probe, so the next run
lists again.  The time compared is the file system's own (the newest ctime
it reported), not this machine's clock, so a file server whose clock is off
cannot hide a change either.

doit's state holds two digests per image; the side file a few values per image.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

# GNU find lists a tree with each entry's stat about twice as fast as a Python walk (50,000
# files: ~0.19 s against ~0.42 s here), and probes it for changes in ~0.08 s.  Elsewhere
# (BSD find has neither -printf nor -newerct) Python walks.  Every field ends in NUL (no
# file name or link target holds one), so the ctimes are exactly every eighth field.
FIND_FORMAT = r"%H\0%P\0%y\0%s\0%T@\0%m\0%l\0%C@\0"
FIELDS = 8
QUIET_SECONDS = 2.0


@functools.lru_cache(maxsize=None)
def _gnu_find() -> str | None:
    import subprocess
    find = shutil.which("find")
    if not find:
        return None
    probe = subprocess.run([find, "/", "-maxdepth", "0", "-newerct", "@0", "-printf", "%y"],
                           capture_output=True, text=True)
    return find if probe.returncode == 0 and probe.stdout == "d" else None


def roots_key(roots: list[tuple[str, str]]) -> str:
    """Which roots, present or not, and where each leads (a root that is a link may be pointed
    elsewhere without any change under either directory)."""
    digest = hashlib.sha256()
    for prefix, root in roots:
        where = os.path.realpath(root) if os.path.lexists(root) else "missing"
        digest.update(f"{prefix}\0{root}\0{where}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def listing_digest(roots: list[tuple[str, str]], use_find: bool = True) -> str:
    return take_listing(roots, use_find)[0]


def take_listing(roots: list[tuple[str, str]], use_find: bool = True) -> tuple[str, str | None]:
    """(digest, newest ctime) of every entry under each (prefix, directory) root, or of a root
    that is one file: path, type, size, mtime, mode, link target, ctime.  The newest ctime is
    `SECONDS.FRACTION` as find prints it (None: nothing listed).  Order is the directory's own;
    an order that changes only costs one content digest."""
    digest = hashlib.sha256()
    for prefix, root in roots:
        present = "present" if os.path.lexists(root) else "missing"
        digest.update(f"{prefix}\0{root}\0{present}\n".encode("utf-8", "surrogateescape"))
    existing = [root for _, root in roots if os.path.lexists(root)]
    find = _gnu_find() if use_find else None
    newest = None
    if find and existing:
        import subprocess

        # -H: a root that is a link is followed, as the build's own listing follows it
        listed = subprocess.run([find, "-H", "--", *existing, "-printf", FIND_FORMAT], capture_output=True)
        digest.update(listed.stdout + b"\0exit %d\n" % listed.returncode)
        ctimes = listed.stdout.split(b"\0")[FIELDS - 1::FIELDS]
        if ctimes and listed.returncode == 0:
            newest = max(ctimes, key=lambda c: (c.find(b"."), c)).decode()
    else:
        newest_ns = []
        for root in existing:
            digest.update(f"{root}\0walk\n".encode("utf-8", "surrogateescape"))
            newest_ns.append(_walk_into(digest, root))
        if newest_ns and None not in newest_ns:
            newest = _seconds(max(newest_ns))
    return digest.hexdigest(), newest


def _seconds(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _nanoseconds(seconds: str) -> int:
    whole, _, fraction = seconds.partition(".")
    return int(whole) * 10**9 + int((fraction + "000000000")[:9])


def _walk_into(digest, root: str) -> int | None:
    """Add the tree's entries to `digest`; return its newest ctime in ns (None: a part was unreadable)."""
    newest = [0]

    def add(rel: str, info: os.stat_result, target: str = ""):
        kind = "l" if stat.S_ISLNK(info.st_mode) else "d" if stat.S_ISDIR(info.st_mode) else "f"
        digest.update(f"{rel}\0{kind}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode & 0o7777:o}\0{target}"
                      f"\0{info.st_ctime_ns}\n".encode("utf-8", "surrogateescape"))
        if newest[0] is not None:
            newest[0] = max(newest[0], info.st_ctime_ns)

    def walk(directory: str, prefix: str):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            digest.update(f"{prefix}\0unreadable {exc.errno}\n".encode("utf-8", "surrogateescape"))
            newest[0] = None
            return
        for entry in entries:
            rel = prefix + entry.name
            info = entry.stat(follow_symlinks=False)
            add(rel, info, os.readlink(entry.path) if entry.is_symlink() else "")
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, rel + "/")

    try:
        info = os.stat(root)  # a root that is a link is followed, as the build's own listing follows it
    except OSError:
        info = os.stat(root, follow_symlinks=False)  # a dangling link
    if stat.S_ISDIR(info.st_mode):
        add("", info)
        walk(root, "")
    else:
        add("", info)
    return newest[0]


class Probe:
    """Started at once, read later: did anything under `roots` change status after `since`?"""

    def __init__(self, roots: list[tuple[str, str]], since: str, use_find: bool = True):
        self.roots, self.since = [root for _, root in roots if os.path.lexists(root)], since
        self.process = None
        # Linux's find is taken to be GNU's without asking (a process more on every no-op): where
        # it is not (busybox), the probe fails, which counts as a change, and the listing checks.
        find = shutil.which("find") if use_find and sys.platform.startswith("linux") else None
        if find and self.roots:
            import subprocess

            # One find per image, not one for all: find would test every entry against every
            # image's roots (-path, which find runs before -newerct whatever the order given).
            # -quit: the first changed entry answers; a failure (an unreadable directory) counts
            # as a change.
            self.process = subprocess.Popen([find, "-H", "--", *self.roots, "-newerct", f"@{since}",
                                             "-printf", "c", "-quit"],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def changed(self) -> bool:
        if self.process is not None:
            out, _ = self.process.communicate()
            return bool(out) or self.process.returncode != 0
        since_ns = _nanoseconds(self.since)
        return any(_changed_under(root, since_ns) for root in self.roots)


def _changed_under(root: str, since_ns: int) -> bool:
    try:
        if os.stat(root).st_ctime_ns > since_ns:
            return True
        if not os.path.isdir(root):
            return False
        for directory, subdirs, files in os.walk(root, onerror=_raise):
            for name in subdirs + files:
                if os.stat(os.path.join(directory, name), follow_symlinks=False).st_ctime_ns > since_ns:
                    return True
    except OSError:
        return True
    return False


def _raise(exc):
    raise exc


def content_digest(file_digests: dict[str, str]) -> str:
    """One digest of the context's files as the tag counts them (path, exec bit, content)."""
    digest = hashlib.sha256()
    for rel, file_id in sorted(file_digests.items()):
        digest.update(f"{rel}\0{file_id}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class SideFile:
    """image name -> its last listing: {"roots", "listing", "content", "since"}; shared by the
    images' checks, read once per run, and the one place that starts their probes."""

    def __init__(self, path: Path, use_find: bool = True):
        self.path, self.use_find = Path(path), use_find
        self._data: dict | None = None
        self._checks: list[context_unchanged] = []
        self._probes: dict[str, Probe] | None = None

    def read(self) -> dict:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # missing or damaged: only costs one listing and content digest
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def remember(self, image: str, record: dict):
        data = self.read()
        if data.get(image) == record:
            return
        data = {**data, image: record}
        self._data = data
        from tasks.atomic import write_atomically
        try:
            write_atomically(str(self.path), json.dumps(data, sort_keys=True).encode(), point="contexts")
        except OSError:
            pass  # a cache: without it the next no-op lists and digests again

    def register(self, check: "context_unchanged"):
        self._checks.append(check)

    def quiet(self, check: "context_unchanged", roots: str) -> dict | None:
        """The remembered record of `check`'s image if nothing under its roots changed since
        that listing; None otherwise.  The first call starts every image's probe at once."""
        if self._probes is None:
            self._probes = {}
            for each in self._checks or [check]:
                record = self._probed_record(each, roots if each is check else roots_key(each.roots))
                if record:
                    self._probes[each.image] = Probe(each.roots, record["since"], self.use_find)
        record = self._probed_record(check, roots)
        probe = self._probes.get(check.image)
        return record if record and probe and not probe.changed() else None

    def _probed_record(self, check, roots: str) -> dict | None:
        record = self.read().get(check.image)
        if isinstance(record, dict) and record.get("roots") == roots and isinstance(record.get("since"), str) \
                and isinstance(record.get("listing"), str) and isinstance(record.get("content"), str):
            return record
        return None


class context_unchanged:  # lower case, like doit's own uptodate helpers
    """doit `uptodate` entry: true while the image's build context has the content of its last build.

    `roots`: (prefix, path) the context is made of; `file_digests`: a callable giving the
    tag's per-file digests (path → "x:sha256", after `.dockerignore`), called only when
    the listing changed.
    """

    STATE_KEY = "_context"

    def __init__(self, image: str, roots: list[tuple[str, str]], file_digests, side_file: SideFile):
        self.image, self.roots, self.file_digests, self.side_file = image, roots, file_digests, side_file
        self.current: dict | None = None
        self.reason = ""
        if side_file is not None:  # `doit graph` describes checks it never runs
            side_file.register(self)

    def configure_task(self, task):
        task.value_savers.append(self._save)

    def _save(self) -> dict:
        if self.current is None or "content" not in self.current:  # ran without a check (doit -a)
            self.measure(None)
        return {self.STATE_KEY: self.current}

    def measure(self, last: dict | None) -> dict:
        roots = roots_key(self.roots)
        quiet = self.side_file.quiet(self, roots)
        if quiet:
            self.current = {"listing": quiet["listing"], "content": quiet["content"]}
            return self.current
        started = time.time()
        listing, newest = self._take_listing()
        # a change in the listing's last clock tick could hide from the next probe: list again then
        since = newest if newest is not None and _nanoseconds(newest) < (started - QUIET_SECONDS) * 10**9 else None
        remembered = self.side_file.read().get(self.image)
        if last and last.get("listing") == listing and isinstance(last.get("content"), str):
            content = last["content"]
        elif isinstance(remembered, dict) and remembered.get("listing") == listing \
                and isinstance(remembered.get("content"), str):
            content = remembered["content"]
        else:
            content = content_digest(self.file_digests())
        self.side_file.remember(self.image, {"roots": roots, "listing": listing, "content": content, "since": since})
        self.current = {"listing": listing, "content": content}
        return self.current

    def _take_listing(self) -> tuple[str, str | None]:
        return take_listing(self.roots, self.side_file.use_find)

    def __call__(self, task, values):
        last = values.get(self.STATE_KEY)
        if not isinstance(last, dict):
            self.reason = "build context not recorded yet"
            self.measure(None)
            return False
        now = self.measure(last)
        same = now["content"] == last.get("content")
        self.reason = "" if same else "build context changed"
        return same

    def __repr__(self):
        # `doit info` and `doit graph` print this when the check fails
        return self.reason or f"build context of image:{self.image}"
