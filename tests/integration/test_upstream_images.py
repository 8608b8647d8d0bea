"""The dev registry's stand-ins for z2jh's upstream images (scripts/lib/devenv/mirror.py):
the hub image holds exactly z2jh's frozen pins, the proxy runs the chart's own command.

Cold, the hub build installs z2jh's requirements from PyPI (minutes); later runs find
the content-addressed tags in the registry and take seconds.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
from devenv.mirror import upstream_hub_dir  # noqa: E402

pytestmark = pytest.mark.integration

HUB_SERVICE_PORT = "8081"  # what the kubelet puts in $(HUB_SERVICE_PORT) for z2jh's hub Service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def upstream_images(dev_services) -> dict:
    """{"hub": {"name", "tag", "ref", "upstream_ref"}, "proxy": ...}: what `up` built and pushed."""
    if not upstream_hub_dir().is_dir():
        pytest.fail(f"z2jh's hub recipe is missing: expected {upstream_hub_dir()} (the shared/ folder "
                    "beside the repository)", pytrace=False)
    return dev_services["upstream_images"]["images"]


def _pull(docker_client, image: dict) -> str:
    """The image as the registry serves it (not only the build's local copy)."""
    docker_client.images.pull(image["name"], tag=image["tag"])
    return f"{image['name']}:{image['tag']}"


def _frozen_pins() -> dict[str, str]:
    pins = {}
    for line in (upstream_hub_dir() / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def test_hub_image_holds_exactly_z2jhs_frozen_pins(upstream_images, docker_client):
    ref = _pull(docker_client, upstream_images["hub"])
    pins = _frozen_pins()
    assert {"jupyterhub", "jupyterhub-kubespawner", "pycurl"} <= pins.keys()
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({n: m.version(n) for n in json.loads(sys.argv[1])}))")
    out = docker_client.containers.run(ref, ["python3", "-c", script, json.dumps(sorted(pins))], remove=True)
    installed = json.loads(out)
    assert {name: installed[name] for name in pins} == pins


def test_hub_image_runs_the_hub_like_upstream(upstream_images, docker_client):
    ref = _pull(docker_client, upstream_images["hub"])
    pins = _frozen_pins()
    # the packages the chart's hub config imports, with pycurl linked against libcurl
    out = docker_client.containers.run(ref, ["python3", "-c", (
        "import jupyterhub, kubespawner, ldapauthenticator, ltiauthenticator, oauthenticator, "
        "jupyterhub_idle_culler, pycurl, psycopg2, kubernetes_asyncio; "
        "print(jupyterhub.__version__, kubespawner.__version__, 'libcurl' in pycurl.version)")], remove=True)
    assert out.decode().split() == [pins["jupyterhub"], pins["jupyterhub-kubespawner"], "True"]
    assert docker_client.containers.run(ref, ["jupyterhub", "--version"], remove=True).decode().strip() \
        == pins["jupyterhub"]
    config = docker_client.images.get(ref).attrs["Config"]
    assert config["User"] == "1000"
    assert config["WorkingDir"] == "/srv/jupyterhub"
    assert "8081/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["tini", "--"]
    assert config["Cmd"] == ["jupyterhub", "--config", "/usr/local/etc/jupyterhub/jupyterhub_config.py"]
    out = docker_client.containers.run(ref, ["sh", "-c", "id -u; echo ~; stat -c %u .; "
                                             "command -v gcc cc || echo no-compiler; sqlite3 --version"],
                                       remove=True).decode().split("\n")
    assert out[:4] == ["1000", "/home/jovyan", "1000", "no-compiler"]
    assert out[4].startswith("3.")


def _chart_proxy_container(helm_bin, chart) -> dict:
    """The chp container of the proxy Deployment the real chart renders by default."""
    rendered = subprocess.run([helm_bin, "template", "jh", str(chart)], capture_output=True, text=True,
                              check=True).stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "proxy":
            spec = doc["spec"]["template"]["spec"]
            return next(c for c in spec["containers"] if c["name"] == "chp")
    raise AssertionError("the chart rendered no proxy Deployment")


def _get(url, token=None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_proxy_runs_the_charts_command_and_answers_its_api(upstream_images, docker_client, helm_bin,
                                                           jupyterhub_chart):
    ref = _pull(docker_client, upstream_images["proxy"])
    chp = _chart_proxy_container(helm_bin, jupyterhub_chart)
    # The kubelet expands $(VAR) from the Service environment; docker does not.
    command = [re.sub(r"\$\(HUB_SERVICE_PORT\)", HUB_SERVICE_PORT, arg) for arg in chp["command"]]
    assert command[0] == "configurable-http-proxy" and "--api-port=8001" in command
    security = chp["securityContext"]
    token = uuid.uuid4().hex
    api_port, http_port = _free_port(), _free_port()
    container = docker_client.containers.run(
        ref, entrypoint=command[:1], command=command[1:], detach=True,
        user=f"{security['runAsUser']}:{security['runAsGroup']}", cap_drop=["ALL"],
        security_opt=["no-new-privileges"], environment={"CONFIGPROXY_AUTH_TOKEN": token},
        ports={"8001/tcp": ("127.0.0.1", api_port), "8000/tcp": ("127.0.0.1", http_port)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = _get(f"http://127.0.0.1:{api_port}/api/routes", token)
                if status == 200:
                    break
            except OSError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-2000:]
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.5)
        status, body = _get(f"http://127.0.0.1:{api_port}/api/routes", token)
        assert status == 200 and isinstance(json.loads(body), dict)
        assert _get(f"http://127.0.0.1:{api_port}/api/routes")[0] in (401, 403)
        # the chart's liveness and readiness probes
        assert _get(f"http://127.0.0.1:{http_port}/_chp_healthz")[0] == 200
        logs = container.logs().decode()
        assert "error" not in logs.lower().replace("--error-target", ""), logs
    finally:
        container.remove(force=True)


def test_proxy_understands_every_flag_the_chart_can_pass(upstream_images, docker_client, jupyterhub_chart):
    """The https, debug and host-routing variants too: each flag in the template is in --help."""
    import tarfile
    ref = _pull(docker_client, upstream_images["proxy"])
    with tarfile.open(jupyterhub_chart) as tar:
        template = tar.extractfile("jupyterhub/templates/proxy/deployment.yaml").read().decode()
    flags = set(re.findall(r"^\s*- \"?(--[a-z-]+)", template, re.M))
    assert {"--ip", "--api-ip", "--api-port", "--default-target", "--error-target", "--port",
            "--ssl-key", "--ssl-cert", "--redirect-port", "--redirect-to", "--log-level",
            "--host-routing"} <= flags
    helptext = docker_client.containers.run(ref, ["--help"], remove=True).decode()
    assert not [flag for flag in flags if not re.search(rf"{flag}\b", helptext)], helptext


def test_the_mirror_holds_each_image_under_z2jhs_own_tag(upstream_images, dev_services, jupyterhub_chart,
                                                         docker_client):
    """cluster.image_mirror pulls MIRROR/<name>:<the tag z2jh's values give>: the chart's own tags."""
    import tarfile
    with tarfile.open(jupyterhub_chart) as chart:
        values = yaml.safe_load(chart.extractfile("jupyterhub/values.yaml"))
    z2jh = {"hub": values["hub"]["image"], "proxy": values["proxy"]["chp"]["image"],
            "kube-scheduler": values["scheduling"]["userScheduler"]["image"],
            "pause": values["scheduling"]["userPlaceholder"]["image"]}
    mirror = dev_services["upstream_images"]["mirror"]
    for key, image in upstream_images.items():
        upstream = z2jh[key]
        assert image["upstream_ref"] == f"{mirror}/{upstream['name'].rsplit('/', 1)[1]}:{upstream['tag']}"
        by_content = docker_client.images.pull(image["name"], tag=image["tag"])
        by_z2jh_tag = docker_client.images.pull(image["name"], tag=upstream["tag"])
        assert by_content.id == by_z2jh_tag.id, key


def test_the_user_scheduler_is_the_release_z2jh_runs(upstream_images, docker_client, jupyterhub_chart):
    import tarfile
    with tarfile.open(jupyterhub_chart) as chart:
        values = yaml.safe_load(chart.extractfile("jupyterhub/values.yaml"))
    ref = _pull(docker_client, upstream_images["kube-scheduler"])
    out = docker_client.containers.run(ref, ["--version"], remove=True).decode()
    assert out.strip() == f"Kubernetes {values['scheduling']['userScheduler']['image']['tag']}"
