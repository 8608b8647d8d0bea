"""One-time install: the Debian packages the services and the runtime tests need."""

from __future__ import annotations

import shutil
import subprocess

from . import pins
from .core import Context, as_root, log, run_logged


class Apt:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.logfile = ctx.path("apt.log")
        self.updated = False

    def install(self, packages: list[str]) -> None:
        if not self.updated:
            log("apt: updating package lists")
            run_logged(as_root(["apt-get", "update"]), self.logfile, "apt: apt-get update")
            self.updated = True
        log(f"apt: installing {' '.join(packages)}")
        run_logged(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                            "--no-install-recommends", *packages]),
                   self.logfile, f"apt: installing {' '.join(packages)}")


def installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package],
                          capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout == "installed"


def missing_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    return [p for p in pins.APT_PACKAGES if not installed(p)]


class AptPackages:
    name = "apt"
    one_time = True

    def ensure(self, ctx: Context, facts: dict) -> None:
        missing = missing_packages()
        if missing:
            Apt(ctx).install(missing)
        else:
            log("apt: all packages present")

    def stop(self, ctx: Context) -> None:
        pass  # installed packages stay: they are the machine's, not a running service

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        return []
