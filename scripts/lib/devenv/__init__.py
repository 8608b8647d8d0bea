"""The classtools dev environment (scripts/dev-env): real services for the
chain and the integration tests. Standard library only."""

from .core import DevEnvError
from .tool import SERVICES, down, services, status, up

__all__ = ["DevEnvError", "SERVICES", "down", "services", "status", "up"]
