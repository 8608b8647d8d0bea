"""One-time install: the project venv with the dev requirements (the tests and
tools run from it). scripts/setup is the one place that makes the venv; this only calls it."""

from __future__ import annotations

import os

from .core import REPO, Context, DevEnvError, log, run_logged


class Venv:
    name = "venv"
    one_time = True

    def ensure(self, ctx: Context, facts: dict) -> None:
        # pytest comes only with requirements-dev.txt: its presence says `--dev` ran.
        dev_tool = ctx.venv / "bin" / "pytest"
        if os.access(dev_tool, os.X_OK):
            log(f"venv: {ctx.venv} has the dev requirements")
            return
        log("venv: running scripts/setup --dev")
        run_logged([str(REPO / "scripts" / "setup"), "--dev"], ctx.path("pip.log"),
                   "venv: scripts/setup --dev", cwd=REPO)
        if not os.access(dev_tool, os.X_OK):
            raise DevEnvError("venv: requirements-dev.txt did not provide pytest")

    def stop(self, ctx: Context) -> None:
        pass

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        return []
