"""Writing a tree of files out: exactly the files a digest was computed from, nothing else."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_tree(directory: Path, files, generated: dict):
    """Write exactly what a digest was computed from into a fresh directory (a build context,
    a chart to lint): `files` are (relative path, source file), `generated` relative path → bytes."""
    for rel, source in files:
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    for rel, content in generated.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
