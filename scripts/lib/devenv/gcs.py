"""The GCS emulator: gcp-storage-emulator from the project venv, its data in DEV_DIR/gcs."""

from __future__ import annotations

import os

from .core import Context, DevEnvError
from .daemon import LoopbackDaemon


class GcsEmulator(LoopbackDaemon):
    name = "gcs-emulator"
    files = "gcs"
    program = "gcp-storage-emulator"
    fact = "storage_emulator_host"
    started_key = "gcs_emulator"

    def marker(self, ctx: Context) -> str:
        # --data-dir is an option of the top-level command, not of `start`; the
        # emulator keeps everything under DATA_DIR/.cloudstorage.
        return f"--data-dir {ctx.path('gcs')} start"

    def prepare(self, ctx: Context, port: int) -> None:
        if not os.access(ctx.venv / "bin" / "gcp-storage-emulator", os.X_OK):
            raise DevEnvError(f"gcs-emulator: {ctx.venv / 'bin' / 'gcp-storage-emulator'} is missing "
                              "(scripts/setup --dev installs it)")
        ctx.path("gcs").mkdir(parents=True, exist_ok=True)

    def command(self, ctx: Context, port: int) -> list[str]:
        return [str(ctx.venv / "bin" / "gcp-storage-emulator"), "--data-dir", str(ctx.path("gcs")), "start",
                "--host", "127.0.0.1", "--port", str(port)]

    def address(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"
