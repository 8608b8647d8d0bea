"""An image's build context as ONE task input, whatever its number of files.

doit's `file_dep` costs a stat per file on every run and a state entry per
file, rewritten on every run: at 50,000 context files a no-op spent most of
its second there.  Instead each image task gets one `uptodate` check:

1. the *listing* digest: every entry under the context's directories with its
   path, type, size, mtime and mode (no content read, no `.dockerignore`
   applied: one `os.scandir` walk).  Unchanged listing: up to date.
2. otherwise the *content* digest: exactly what the build would be sent (after
   `.dockerignore`) with each file's content and exec bit, as the image's tag
   counts it.  The same content as at the last build (a touch, an edit to an
   ignored file, an edit undone): still up to date; the listing that had this
   content is remembered in a small side file, so the next no-op is fast
   again.  Different content: the task runs.

doit's state holds two digests per image; the side file one pair per image.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path


def listing_digest(roots: list[tuple[str, str]]) -> str:
    """Digest of every entry under each (prefix, directory) root, or of a root that is one file."""
    digest = hashlib.sha256()

    def add(rel: str, info: os.stat_result, target: str = ""):
        kind = "l" if stat.S_ISLNK(info.st_mode) else "d" if stat.S_ISDIR(info.st_mode) else "f"
        digest.update(f"{rel}\0{kind}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode & 0o7777:o}\0{target}\n"
                      .encode("utf-8", "surrogateescape"))

    def walk(directory: str, prefix: str):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            digest.update(f"{prefix}\0missing\n".encode("utf-8", "surrogateescape"))
            return
        for entry in entries:
            rel = prefix + entry.name
            info = entry.stat(follow_symlinks=False)
            add(rel, info, os.readlink(entry.path) if entry.is_symlink() else "")
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, rel + "/")

    for prefix, root in roots:
        try:
            info = os.stat(root, follow_symlinks=False)
        except FileNotFoundError:
            digest.update(f"{prefix}\0missing\n".encode("utf-8", "surrogateescape"))
            continue
        if stat.S_ISDIR(info.st_mode):
            walk(root, prefix)
        else:
            add(prefix, info, os.readlink(root) if stat.S_ISLNK(info.st_mode) else "")
    return digest.hexdigest()


def content_digest(file_digests: dict[str, str]) -> str:
    """One digest of the context's files as the tag counts them (path, exec bit, content)."""
    digest = hashlib.sha256()
    for rel, file_id in sorted(file_digests.items()):
        digest.update(f"{rel}\0{file_id}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class SideFile:
    """image name -> {"listing", "content"}: the last listing seen with its content digest."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: only costs one content digest
        return data if isinstance(data, dict) else {}

    def remember(self, image: str, pair: dict):
        data = self.read()
        if data.get(image) == pair:
            return
        data[image] = pair
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # `.NAME.PID.tmp`: what the next run sweeps when this one is killed here (runlock)
            temp = str(self.path.parent / f".{self.path.name}.{os.getpid()}.tmp")
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, sort_keys=True)
            os.replace(temp, self.path)
        except OSError:
            pass  # a cache: without it the next no-op computes the content digest again


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

    def configure_task(self, task):
        task.value_savers.append(self._save)

    def _save(self) -> dict:
        if self.current is None or "content" not in self.current:  # ran without a check (doit -a)
            self.measure(None)
        return {self.STATE_KEY: self.current}

    def measure(self, last: dict | None) -> dict:
        listing = listing_digest(self.roots)
        if last and last.get("listing") == listing:
            self.current = dict(last)
            return self.current
        remembered = self.side_file.read().get(self.image) or {}
        if remembered.get("listing") == listing and remembered.get("content"):
            content = remembered["content"]
        else:
            content = content_digest(self.file_digests())
            self.side_file.remember(self.image, {"listing": listing, "content": content})
        self.current = {"listing": listing, "content": content}
        return self.current

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
