"""What a build actually sends: a context directory's files after `.dockerignore`.

Follows the Docker CLI's rules (moby/patternmatcher): patterns are cleaned
paths relative to the context root; `*` and `?` stay within one path
segment, `**` spans any number of them; a pattern that matches a directory
excludes everything under it; `!pattern` re-includes; the last matching
pattern wins.  The Dockerfile and `.dockerignore` are always sent.

Pure Python and cheap to import: it runs when `dodo.py` loads, to list each
image task's `file_dep`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat
from pathlib import Path

ALWAYS_SENT = ("Dockerfile", ".dockerignore")


def _translate(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression over '/'-separated paths."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # `**/` : zero or more whole directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^"):
                    body = "!" + body[1:]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


class Matcher:
    def __init__(self, lines):
        self.rules: list[tuple[bool, re.Pattern]] = []  # (re-include?, regex)
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            if include:
                line = line[1:].strip()
            line = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else ""
            if not line or line == ".":
                continue
            self.rules.append((include, re.compile(_translate(line) + r"\Z")))
        self.has_exceptions = any(include for include, _ in self.rules)

    @classmethod
    def for_context(cls, root: Path, file_name: str = ".dockerignore") -> "Matcher":
        try:
            return cls((Path(root) / file_name).read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, path: str) -> bool:
        """Is `path` (relative, '/'-separated) left out of the build context?"""
        directory, _, _ = path.rpartition("/")
        above = self._dir_hits(directory) if directory else (False,) * len(self.rules)
        result = False
        for (include, regex), hit_above in zip(self.rules, above):
            # A pattern matches the path itself or any directory above it.
            if hit_above or regex.match(path):
                result = not include
        return result

    @functools.lru_cache(maxsize=None)
    def _dir_hits(self, directory: str) -> tuple:
        """Per rule: does it match `directory` or a directory above it? (cached: files share them)"""
        parent, _, _ = directory.rpartition("/")
        above = self._dir_hits(parent) if parent else (False,) * len(self.rules)
        return tuple(hit or bool(regex.match(directory)) for (_, regex), hit in zip(self.rules, above))


def _sendable(path: str) -> bool:
    """A regular file or a link: a FIFO, socket or device is never sent (reading one could
    block forever or never end), as the engine sends only what this module lists."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


def context_files(root: Path, matcher: Matcher | None = None) -> list[str]:
    """Sorted relative paths of the regular files and links a build of `root` sends."""
    root = Path(root)
    matcher = matcher or Matcher.for_context(root)
    found = []
    for directory, subdirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        if not matcher.has_exceptions:  # nothing below an excluded directory can come back
            subdirs[:] = [d for d in subdirs if not matcher.excluded(posixpath.join(rel_dir, d))]
        for name in files:
            rel = posixpath.join(rel_dir, name)
            if (rel in ALWAYS_SENT or not matcher.excluded(rel)) and _sendable(os.path.join(directory, name)):
                found.append(rel)
        for name in subdirs:
            if os.path.islink(os.path.join(directory, name)):
                rel = posixpath.join(rel_dir, name)
                if not matcher.excluded(rel):
                    found.append(rel)  # a link to a directory is sent as a link
    return sorted(found)
