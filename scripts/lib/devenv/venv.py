"""One-time install: the project venv (the GCS emulator runs from it).
scripts/setup is the one place that makes the venv; this only calls it."""

from __future__ import annotations

import os

from .core import REPO, Context, DevEnvError, log, run_logged


class Venv:
    name = "venv"
    one_time = True

    def ensure(self, ctx: Context, facts: dict) -> None:
        emulator = ctx.venv / "bin" / "gcp-storage-emulator"
        if os.access(emulator, os.X_OK):
            log(f"venv: {ctx.venv} has gcp-storage-emulator")
            return
        log("venv: running scripts/setup --dev")
        run_logged([str(REPO / "scripts" / "setup"), "--dev"], ctx.path("pip.log"),
                   "venv: scripts/setup --dev", cwd=REPO)
        if not os.access(emulator, os.X_OK):
            raise DevEnvError("venv: requirements-dev.txt did not provide gcp-storage-emulator")

    def stop(self, ctx: Context) -> None:
        pass

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        return []
