"""The Docker Engine: Debian's docker.io; dockerd started in the background only
when no engine answers. Only a daemon whose pid we recorded counts as ours:
`down` never stops an engine that someone else (systemd, a colleague, CI) runs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time

from .core import Context, DevEnvError, fail, live_pid, log, pid_is, reap, spawn, stop_pidfile

START_TIMEOUT = 60
MARKER = "dockerd"


def answers(ctx: Context) -> bool:
    try:
        return subprocess.run(["docker", "--host", ctx.docker_host, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, timeout=15).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


class Docker:
    name = "docker"
    one_time = False

    def own_pid(self, ctx: Context) -> int | None:
        return live_pid(ctx.path("dockerd.pid"), MARKER)

    def ensure(self, ctx: Context, facts: dict) -> None:
        pidfile, logfile = ctx.path("dockerd.pid"), ctx.path("dockerd.log")
        if not shutil.which("docker"):
            raise DevEnvError("docker: no docker CLI on PATH (docker.io not installed?)")
        if answers(ctx):
            pid = self.own_pid(ctx)
            who = f"started by dev-env, pid {pid}" if pid else "not started by dev-env"
            log(f"docker: engine answers at {ctx.docker_host} ({who})")
        else:
            pid = self.own_pid(ctx)
            if pid:
                log(f"docker: our dockerd (pid {pid}) runs but does not answer yet; waiting")
            else:
                if not ctx.docker_host.startswith("unix://"):
                    raise DevEnvError(f"docker: {ctx.docker_host} does not answer and is not a local socket; "
                                      "not starting dockerd")
                if not shutil.which("dockerd"):
                    raise DevEnvError("docker: dockerd not found (docker.io not installed?)")
                log(f"docker: no engine answers at {ctx.docker_host}; starting dockerd (log: {logfile})")
                # CLASSTOOLS_DOCKERD_ARGS: extra arguments (beware: --bridge none deletes
                # the host's docker0, breaking any other engine on this machine).
                extra = shlex.split(ctx.env.get("CLASSTOOLS_DOCKERD_ARGS", ""))
                pid = spawn(["dockerd", "--host", ctx.docker_host, *extra], logfile, pidfile)
            deadline = time.monotonic() + START_TIMEOUT
            while not answers(ctx):
                reap()
                if not pid_is(pid, MARKER):
                    pidfile.unlink(missing_ok=True)
                    raise fail(f"docker: dockerd exited during startup (log: {logfile})", logfile, 30)
                if time.monotonic() > deadline:
                    raise fail(f"docker: dockerd (pid {pid}) did not answer within {START_TIMEOUT}s "
                               f"(log: {logfile})", logfile, 30)
                time.sleep(1)
            log(f"docker: engine up at {ctx.docker_host} (pid {pid})")
            pid = self.own_pid(ctx)
        facts["docker_host"] = ctx.docker_host
        facts["started"]["dockerd"] = pid is not None
        facts["pids"]["dockerd"] = pid

    def stop(self, ctx: Context) -> None:
        if ctx.path("dockerd.pid").exists():
            # dockerd gives containers 15s to stop before it exits.
            stop_pidfile("dockerd", ctx.path("dockerd.pid"), MARKER, timeout=60)
        else:
            log("dockerd was not started by dev-env; leaving it alone")

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        if shutil.which("docker") and answers(ctx):
            pid = self.own_pid(ctx)
            who = f"started by dev-env, pid {pid}" if pid else "external"
            return [("docker", "running", f"{ctx.docker_host} ({who})", True)]
        return [("docker", "stopped", ctx.docker_host, False)]
