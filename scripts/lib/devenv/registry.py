"""The OCI registry: Debian's docker-registry on a free loopback port, its blobs in DEV_DIR/registry."""

from __future__ import annotations

import secrets
import shutil

from .core import Context, DevEnvError, atomic_write
from .daemon import LoopbackDaemon


class Registry(LoopbackDaemon):
    name = files = started_key = fact = "registry"
    program = "docker-registry"
    health_path = "/v2/"

    def marker(self, ctx: Context) -> str:
        return str(ctx.path("registry.yml"))

    def prepare(self, ctx: Context, port: int) -> None:
        if not shutil.which("docker-registry"):
            raise DevEnvError("registry: docker-registry not found (package docker-registry)")
        ctx.path("registry").mkdir(parents=True, exist_ok=True)
        secretfile = ctx.path("registry.secret")
        # A stable secret keeps in-flight upload state valid across restarts;
        # without one the registry invents a new secret each start and warns.
        if not secretfile.exists() or not secretfile.read_text().strip():
            atomic_write(secretfile, secrets.token_hex(24), 0o600)
        # Not Debian's /etc/docker/registry/config.yml: that one listens on :5000
        # for all interfaces and requires htpasswd auth.
        atomic_write(ctx.path("registry.yml"), f"""# Written by scripts/dev-env; rewritten on every start.
version: 0.1
log:
  level: info
  fields:
    service: classtools-dev-registry
storage:
  filesystem:
    rootdirectory: "{ctx.path('registry')}"
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: "127.0.0.1:{port}"
  secret: "{secretfile.read_text().strip()}"
  headers:
    X-Content-Type-Options: [nosniff]
""", 0o600)

    def command(self, ctx: Context, port: int) -> list[str]:
        return ["docker-registry", "serve", str(ctx.path("registry.yml"))]
