"""Fixtures shared by unit and integration tests: a throw-away classroom project.

Each test gets its own copy of the committed config/ plus private paths for
doit's state and the secrets file, so nothing touches the developer's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]
# A cold build of the real images on a loaded 2-core machine takes as long as it takes, but it
# keeps printing (BuildKit's plain progress, pip, apt).  So doit is given up on only when it has
# been silent this long, or when it exceeds the overall cap, which stays well inside CI's 90 min.
QUIET_LIMIT = 10 * 60
OVERALL_LIMIT = 45 * 60


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

    def doit(self, *args, env=None, check=False, quiet_limit: float = QUIET_LIMIT,
             overall_limit: float = OVERALL_LIMIT) -> subprocess.CompletedProcess:
        """Run the real doit on this project (cwd: the project, so paths show as config/...).

        Waits on progress, not on a wall clock: doit fails the test only after
        `quiet_limit` seconds without a line on stdout or stderr (or after
        `overall_limit` in all).
        """
        command = [*DOIT, "-d", str(self.root), *args]
        result = _run_while_talking(command, f"doit {' '.join(args)}", cwd=self.root, env=env or self.env(),
                                    quiet_limit=quiet_limit, overall_limit=overall_limit)
        if check and result.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


def _run_while_talking(command, label, *, cwd, env, quiet_limit, overall_limit) -> subprocess.CompletedProcess:
    """subprocess.run(capture_output=True, text=True), but stopped on silence instead of a timeout."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # its own group: stop builds too
    streams = {"stdout": [], "stderr": []}
    last_output = [time.monotonic()]

    def read(name, pipe):
        for line in pipe:
            streams[name].append(line)
            last_output[0] = time.monotonic()

    readers = [threading.Thread(target=read, args=(name, getattr(process, name)), daemon=True)
               for name in streams]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    stopped_because = ""
    while True:
        try:
            process.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now - last_output[0] > quiet_limit:
            stopped_because = f"printed nothing for {quiet_limit:.0f}s"
        elif now - started > overall_limit:
            stopped_because = f"was still running after {overall_limit:.0f}s"
        if stopped_because:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
    for reader in readers:
        reader.join(timeout=30)
    stdout, stderr = "".join(streams["stdout"]), "".join(streams["stderr"])
    if stopped_because:
        tail = "\n".join((stdout + stderr).splitlines()[-40:])
        pytest.fail(f"{label} {stopped_because}; stopped. Last output:\n{tail}",
                    pytrace=False)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def project(tmp_path) -> Project:
    root = tmp_path / "classroom"
    shutil.copytree(REPO / "config", root / "config")
    return Project(root)


def wait_until(what: str, check, timeout: float):
    """The first truthy value of check(), polled each second; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(1)
