"""Real services for integration tests, from the dev environment (scripts/lib/devenv): never skipped.

If a service cannot start, every test that needs it fails with dev-env's
own explanation: a missing engine must not turn into a green run.

The services stay up after the session (dev-env is idempotent, so the next
run reuses them in about a second); `scripts/dev-env down` stops them.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import devenv  # noqa: E402  (scripts/lib/devenv: the dev environment's own functions)


def dev_dir() -> Path:
    return Path(os.environ.get("CLASSTOOLS_DEV_DIR", REPO / ".dev"))


@pytest.fixture(scope="session")
def dev_services() -> dict:
    """What services.json holds, once every service (the control plane included) is up."""
    try:
        return devenv.up()  # CLASSTOOLS_DEV_DIR or REPO/.dev; idempotent: about a second when all runs
    except devenv.DevEnvError as exc:
        pytest.fail(f"the dev environment is not up, so the real services are not there:\n{exc}",
                    pytrace=False)


@pytest.fixture(scope="session")
def kubeconfig(dev_services) -> str:
    """The dev control plane's admin kubeconfig (0600)."""
    return dev_services["kubeconfig"]


@pytest.fixture(scope="session")
def kube_cluster(dev_services) -> dict:
    """The dev control plane: server, etcd, context, nodes (kwok), storage_class, dir."""
    return dev_services["control_plane"]


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

# The real z2jh chart, kept beside the repository (CI clones the repository next to a copy of
# shared/): no chart repository is reachable here, and a stand-in would not have z2jh's strict
# values schema, its templates or its hub code.
JUPYTERHUB_VERSION = "4.4.0"
JUPYTERHUB_CHART = REPO.parent / "shared" / "upstream" / f"jupyterhub-{JUPYTERHUB_VERSION}.tgz"


@pytest.fixture(scope="session")
def jupyterhub_chart() -> Path:
    """The real z2jh chart .tgz; a missing or different file fails the tests that need it."""
    import tarfile

    import yaml
    if not JUPYTERHUB_CHART.is_file():
        pytest.fail(f"the real JupyterHub chart is missing: expected {JUPYTERHUB_CHART} (the shared/ "
                    f"folder beside the repository holds upstream/jupyterhub-{JUPYTERHUB_VERSION}.tgz)",
                    pytrace=False)
    with tarfile.open(JUPYTERHUB_CHART) as tar:
        chart = yaml.safe_load(tar.extractfile("jupyterhub/Chart.yaml"))
    if (chart.get("name"), str(chart.get("version"))) != ("jupyterhub", JUPYTERHUB_VERSION):
        pytest.fail(f"{JUPYTERHUB_CHART} is chart {chart.get('name')} {chart.get('version')}, "
                    f"not jupyterhub {JUPYTERHUB_VERSION}", pytrace=False)
    return JUPYTERHUB_CHART


def use_jupyterhub_chart(classroom_yaml: str, chart: Path) -> str:
    """classroom.yaml text naming the real z2jh chart as the local copy of the dependency."""
    import re
    text = re.sub(r"(?m)^(\s*jupyterhub_chart:) .*$", rf'\g<1> "{chart}"', classroom_yaml, count=1)
    text = re.sub(r"(?m)^(\s*jupyterhub_version:) .*$", rf"\g<1> {JUPYTERHUB_VERSION}", text, count=1)
    assert f'jupyterhub_chart: "{chart}"' in text and f"jupyterhub_version: {JUPYTERHUB_VERSION}" in text, \
        "config/classroom.yaml no longer has chart.jupyterhub_chart / jupyterhub_version lines"
    return text


@pytest.fixture
def bucket(gcs_emulator):
    from google.cloud import storage
    client = storage.Client.create_anonymous_client()
    client.project = "classroom-test"
    name = f"charts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return name


# The runtime harness (the real hub code, slapd, KubeSpawner's manifests): tests/integration/runtime/.
from tests.integration.runtime.fixtures import (courses, hub_venv, ldap_server, loaded_hub, pods,  # noqa: E402,F401
                                                runtime_classroom, runtime_release)
