"""Real services for integration tests, from scripts/dev-env: never skipped.

If a service cannot start, every test that needs it fails with dev-env's
own explanation: a missing engine must not turn into a green run.

The services stay up after the session (dev-env is idempotent, so the next
run reuses them in about a second); `scripts/dev-env down` stops them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEV_ENV = REPO / "scripts" / "dev-env"
# A first run installs packages and debootstraps the base image.
UP_TIMEOUT = 1800


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def dev_dir() -> Path:
    return Path(os.environ.get("CLASSTOOLS_DEV_DIR", REPO / ".dev"))


def run_dev_env(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(DEV_ENV), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def dev_services() -> dict:
    try:
        result = run_dev_env("up")
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"scripts/dev-env up did not finish within {UP_TIMEOUT}s:\n{_tail(stderr)}",
                    pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/dev-env up failed (exit {result.returncode}), so the real services "
                    f"are not there:\n{_tail(result.stderr)}", pytrace=False)
    return json.loads((dev_dir() / "services.json").read_text())


@pytest.fixture(scope="session")
def docker_client(dev_services):
    import docker
    client = docker.DockerClient(base_url=dev_services["docker_host"], timeout=600)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(dev_services) -> str:
    """host:port of the dev registry (plain HTTP, loopback)."""
    return dev_services["registry"]


@pytest.fixture(scope="session")
def gcs_emulator(dev_services):
    """URL of the GCS emulator; STORAGE_EMULATOR_HOST points at it for the session."""
    url = dev_services["storage_emulator_host"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        yield url


@pytest.fixture(scope="session")
def helm_bin(dev_services) -> str:
    return dev_services["helm"]


@pytest.fixture(scope="session")
def kubectl_bin(dev_services) -> str:
    return dev_services["kubectl"]


# ---- shared by the chart and release tests -------------------------------------------------

CHARTS = Path(__file__).parent / "charts"


@pytest.fixture(scope="session")
def standin_chart(tmp_path_factory, helm_bin) -> Path:
    out = tmp_path_factory.mktemp("standin")
    subprocess.run([helm_bin, "package", str(CHARTS / "jupyterhub"), "-d", str(out)],
                   check=True, capture_output=True)
    return next(out.glob("jupyterhub-*.tgz"))


@pytest.fixture
def bucket(gcs_emulator):
    from google.cloud import storage
    client = storage.Client.create_anonymous_client()
    client.project = "classroom-test"
    name = f"charts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return name
