"""The GCS emulator: fake-gcs-server, built once per machine from the Go module
proxy (cpbuild.FAKE_GCS_SERVER), serving plain HTTP on 127.0.0.1 with its
objects on disk in DEV_DIR/fake-gcs (filesystem backend: they survive down/up).

It honours generation preconditions (a stale `if_generation_match` gets 412),
which the chart publisher's index merge relies on, and serves objects at
http://127.0.0.1:PORT/BUCKET/OBJECT, where `helm repo add` reads them.

It replaces gcp-storage-emulator (which ignored `ifGenerationMatch`). One that
an older version of this tool started for this dev dir is left running by `up`
(a session that read the old services.json may still use it) and stopped by
`down`, like any stray.
"""

from __future__ import annotations

from . import cpbuild
from .core import Context, DevEnvError, log, stop_service, strays
from .daemon import LoopbackDaemon

_LEGACY_PROGRAM = "gcp-storage-emulator"


class GcsEmulator(LoopbackDaemon):
    name = "gcs-emulator"
    files = "gcs"
    program = "fake-gcs-server"
    health_path = "/_internal/healthcheck"
    fact = "storage_emulator_host"
    started_key = "gcs_emulator"

    def _data(self, ctx: Context):
        return ctx.path("fake-gcs")

    def _binary(self, ctx: Context):
        return cpbuild.bin_dir(ctx.env, cpbuild.FAKE_GCS_SERVER) / "fake-gcs-server"

    def marker(self, ctx: Context) -> str:
        return f"-filesystem-root {self._data(ctx)} "

    def prepare(self, ctx: Context, port: int) -> None:
        # Built once per machine (about 4 minutes cold, with progress lines); later only a file check.
        cpbuild.ensure_binaries(ctx.env, cpbuild.FAKE_GCS_SERVER)
        try:
            self._data(ctx).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DevEnvError(f"gcs-emulator: cannot create its data directory {self._data(ctx)}: "
                              f"{exc.strerror}") from None

    def command(self, ctx: Context, port: int) -> list[str]:
        address = f"127.0.0.1:{port}"
        # -public-host: requests to this host:port are path-style (/BUCKET/OBJECT), as
        # `helm repo add http://HOST/BUCKET` fetches index.yaml and the archives;
        # -external-url: where resumable uploads are told to continue. An option follows
        # -filesystem-root, so the marker (the root and a space) names this dev dir exactly.
        return [str(self._binary(ctx)), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                "-public-host", address, "-external-url", f"http://{address}",
                "-backend", "filesystem", "-filesystem-root", str(self._data(ctx)), "-log-level", "info"]

    def address(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    # ---- the emulator this one replaced
    def _legacy_marker(self, ctx: Context) -> str:
        return f"--data-dir {ctx.path('gcs')} start"

    def _legacy_pids(self, ctx: Context) -> list[int]:
        # No pid file records it any more (gcs.pid is fake-gcs-server's): every match is a stray.
        return strays(ctx, ctx.path("gcs.legacy.pid"), self._legacy_marker(ctx), _LEGACY_PROGRAM)

    def ensure(self, ctx: Context, facts: dict) -> None:
        super().ensure(ctx, facts)
        legacy = self._legacy_pids(ctx)
        if legacy:
            log(f"gcs-emulator: the gcp-storage-emulator it replaces still serves this dev dir "
                f"(pids {', '.join(map(str, legacy))}); left running for sessions that still use it, "
                "`scripts/dev-env down` stops it")

    def stop(self, ctx: Context) -> None:
        super().stop(ctx)
        stop_service(ctx, f"{self.name} (replaced gcp-storage-emulator)", ctx.path("gcs.legacy.pid"),
                     self._legacy_marker(ctx), _LEGACY_PROGRAM)
