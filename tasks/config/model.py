"""The validated config as every stage reads it: a `Config`, and what a dataset's source names.

Pure: nothing here reads a file (tasks/config/loader.py does).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple


class Config(NamedTuple):  # not a dataclass: building one costs ~2 ms at each doit start
    directory: Path
    classroom: dict
    courses: list
    datasets: list

    @property
    def project_dir(self) -> Path:
        """Relative paths in the config files start here."""
        return self.directory.parent

    @property
    def profile(self) -> str:
        return self.classroom["profile"]

    def value(self, key: str):
        """The normalized value at a dotted key: `classroom.images.registry`, `courses`, `datasets`."""
        head, _, rest = key.partition(".")
        node = {"classroom": self.classroom, "courses": self.courses, "datasets": self.datasets}[head]
        for part in rest.split(".") if rest else ():
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def path(self, value: str) -> Path:
        target = Path(os.path.expanduser(value))  # Path.expanduser raises on an unknown ~user
        return target if target.is_absolute() else self.project_dir / target


def source_kind(source: str) -> str:
    """gcs, git or local, by git's own rule: a URL scheme, or a colon before the first
    slash (scp-like `user@host:path`), is remote; anything else is a path on this machine."""
    if source.startswith("gs://"):
        return "gcs"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source) or ":" in source.split("/", 1)[0]:
        return "git"
    return "local"
