"""The life cycle every loopback daemon of the dev dir shares (the registry, the
GCS emulator): reuse it when it answers on its recorded port, replace it when
it runs but does not answer (wedged), start it on the recorded port when that
is free (so addresses survive down/up), stop only what this dev dir started."""

from __future__ import annotations

from pathlib import Path

from .core import (Context, DevEnvError, atomic_write, free_port, http_ok, live_pid, log, read_int, spawn,
                   stop_pidfile, stop_service, wait_until, warn_strays)


class LoopbackDaemon:
    name = ""          # in logs and status lines
    files = ""         # DEV_DIR/<files>.pid, .port, .log
    program = ""       # argv[0]'s (or the interpreted script's) name
    health_path = "/"  # answers 200 when the daemon serves
    fact = ""          # services.json key of its address
    started_key = ""   # services.json started/pids key
    start_timeout = 30
    one_time = False

    # ---- what a daemon defines
    def marker(self, ctx: Context) -> str:
        """A piece of its command line naming a file of this dev dir."""
        raise NotImplementedError

    def prepare(self, ctx: Context, port: int) -> None:
        """Checks and files needed before a start on PORT."""

    def command(self, ctx: Context, port: int) -> list[str]:
        raise NotImplementedError

    def address(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    # ---- the shared life cycle
    def _path(self, ctx: Context, ext: str) -> Path:
        return ctx.path(f"{self.files}.{ext}")

    def _url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{self.health_path}"

    def _running(self, ctx: Context, timeout: float) -> tuple[int, int] | None:
        port, pid = read_int(self._path(ctx, "port")), live_pid(self._path(ctx, "pid"), self.marker(ctx))
        if not (port and pid):
            return None
        try:
            wait_until(lambda: http_ok(self._url(port)), timeout, self.name, pid=pid)
        except DevEnvError:
            return None
        return port, pid

    def ensure(self, ctx: Context, facts: dict) -> None:
        pidfile, logfile = self._path(ctx, "pid"), self._path(ctx, "log")
        running = self._running(ctx, 5)
        if running:
            port, pid = running
            log(f"{self.name}: reusing {self.address(port)} (pid {pid})")
        else:
            # Alive but not answering means wedged: replace it.
            stop_pidfile(self.name, pidfile, self.marker(ctx))
            port = free_port(read_int(self._path(ctx, "port")))
            self.prepare(ctx, port)
            atomic_write(self._path(ctx, "port"), f"{port}\n")
            pid = spawn(self.command(ctx, port), logfile, pidfile)
            try:
                wait_until(lambda: http_ok(self._url(port)), self.start_timeout,
                           f"{self.name}: {self._url(port)}", pid=pid, logfile=logfile)
            except DevEnvError:
                stop_pidfile(self.name, pidfile, self.marker(ctx))
                raise
            log(f"{self.name}: up at {self.address(port)} (pid {pid})")
        warn_strays(ctx, self.name, pidfile, self.marker(ctx), self.program)
        facts[self.fact] = self.address(port)
        facts["started"][self.started_key] = True
        facts["pids"][self.started_key] = pid

    def stop(self, ctx: Context) -> None:
        stop_service(ctx, self.name, self._path(ctx, "pid"), self.marker(ctx), self.program)

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        running = self._running(ctx, 0)
        if running:
            return [(self.name, "running", f"{self.address(running[0])} (pid {running[1]})", True)]
        port = read_int(self._path(ctx, "port"))
        return [(self.name, "stopped", self.address(port) if port else "", False)]
