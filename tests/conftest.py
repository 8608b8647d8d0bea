"""Fixtures shared by unit and integration tests: a throw-away classroom project.

Each test gets its own copy of the committed config/ plus private paths for
doit's state and the secrets file, so nothing touches the developer's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]


@dataclass
class Project:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def dep_file(self) -> Path:
        return self.root / ".doit" / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / ".classroom" / "secrets.env"

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSTOOLS_")}
        env.update(CLASSTOOLS_CONFIG=str(self.config), CLASSTOOLS_DEP_FILE=str(self.dep_file),
                   CLASSTOOLS_SECRETS_FILE=str(self.secrets_file))
        env.update(extra)
        return env

    def write(self, file_name: str, text: str):
        (self.config / file_name).write_text(text, encoding="utf-8")

    def doit(self, *args, env=None, check=False) -> subprocess.CompletedProcess:
        """Run the real doit on this project (cwd: the project, so paths show as config/...)."""
        result = subprocess.run([*DOIT, "-d", str(self.root), *args], cwd=self.root,
                                env=env or self.env(), capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def project(tmp_path) -> Project:
    root = tmp_path / "classroom"
    shutil.copytree(REPO / "config", root / "config")
    return Project(root)
