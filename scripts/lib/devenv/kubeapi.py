"""A few calls to the Kubernetes API, standard library only (the dev environment
runs before the project venv exists; the provisioner daemon runs with it)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeApi:
    def __init__(self, server: str, ca_file: Path, cert_file: Path, key_file: Path, timeout: float = 10):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.ssl = ssl.create_default_context(cafile=str(ca_file))
        self.ssl.load_cert_chain(str(cert_file), str(key_file))
        # Loopback only: never through an http_proxy from the environment.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPSHandler(context=self.ssl))

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp else b""
            try:
                message = json.loads(raw).get("message", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")[:300]
            raise ApiError(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"{self.server} unreachable: {getattr(exc, 'reason', exc)}") from None
        return json.loads(raw) if raw else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> dict | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, collection: str, body: dict) -> dict:
        """POST; an object that exists already (409) is fine: creation is idempotent."""
        try:
            return self.request("POST", collection, body)
        except ApiError as exc:
            if exc.status == 409:
                return {}
            raise

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def patch(self, path: str, body: dict) -> dict:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def readyz(self) -> bool:
        try:
            req = urllib.request.Request(self.server + "/readyz")
            with self.opener.open(req, timeout=3) as resp:
                return resp.status == 200 and resp.read().strip() == b"ok"
        except (urllib.error.URLError, OSError):
            return False
