"""scripts/dev-env's command line.

  scripts/dev-env up       start what is missing, reuse what runs (idempotent)
  scripts/dev-env down     stop what dev-env started
  scripts/dev-env status   one line per service; exit 0 when all are up

State lives in $CLASSTOOLS_DEV_DIR (default <repo>/.dev). After `up`,
services.json (machine-readable) and services.env (sourceable: DOCKER_HOST,
CLASSTOOLS_REGISTRY, STORAGE_EMULATOR_HOST, KUBECONFIG) describe where the
services are.

Environment knobs:
  CLASSTOOLS_DEV_DIR                 state directory
  CLASSTOOLS_DEBIAN_MIRROR           mirror for debootstrap (http://deb.debian.org/debian)
  CLASSTOOLS_DEBIAN_SECURITY_MIRROR  security mirror written into the base image
  CLASSTOOLS_DOCKERD_ARGS            extra dockerd arguments when dev-env starts it
                                     (beware: --bridge none deletes the host's docker0,
                                     breaking any other engine on this machine)
  CLASSTOOLS_TOOLS_BIN               where helm/kubectl get installed (/usr/local/bin)
  CLASSTOOLS_CONTROL_PLANE_CACHE     where the control-plane binaries are built
                                     (/var/cache/classtools/control-plane)
  CLASSTOOLS_FAKE_GCS_CACHE          where the GCS emulator (fake-gcs-server) is built
                                     (/var/cache/classtools/fake-gcs-server)
  CLASSTOOLS_KWOK_NODES              number of fake nodes (2)
  CLASSTOOLS_DEV_DEBUG               1: show a traceback on unexpected errors
  DOCKER_HOST                        engine to use (unix:///var/run/docker.sock)
"""

from __future__ import annotations

import os
import sys
import traceback

from .core import DevEnvError, log
from .tool import down, status, up


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd in ("-h", "--help", "help") or cmd not in ("up", "down", "status") or len(argv) > 1:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if cmd in ("-h", "--help", "help") else 2
    try:
        if cmd == "up":
            up()
        elif cmd == "down":
            down()
        else:
            lines = status()
            for name, state, detail, _ in lines:
                print(f"{name:<24} {state:<8} {detail}".rstrip())
            return 0 if all(ok for *_, ok in lines) else 1
    except DevEnvError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, not a traceback
        if os.environ.get("CLASSTOOLS_DEV_DEBUG") == "1":
            traceback.print_exc()
        log(f"error: unexpected {type(exc).__name__}: {exc} (CLASSTOOLS_DEV_DEBUG=1 shows the traceback)")
        return 1
    return 0
