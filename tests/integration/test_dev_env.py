"""scripts/dev-env against the real machine: the services the other
integration tests rely on must be up, single, and actually usable.

The control plane's own behaviour (nodes, pods, volumes, tokens) is in
test_control_plane.py; here it is one more service of the table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "debian:bookworm-slim"
UPSTREAM_IMAGES = ("hub", "proxy", "kube-scheduler", "pause")
CONTROL_PLANE = ("etcd", "kube_apiserver", "kube_controller_manager", "kube_scheduler", "kwok", "pv_provisioner")
# The registry and emulator are on loopback: never via an http_proxy.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def dev_dir() -> Path:
    return Path(os.environ.get("CLASSTOOLS_DEV_DIR", REPO / ".dev"))


def run_dev_env(*args: str, timeout: float = 1800, dev: Path | None = None
                ) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLASSTOOLS_DEV_DIR=str(dev)) if dev else None
    return subprocess.run([str(REPO / "scripts" / "dev-env"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _processes():
    """(pid, argv) of every live process; zombies have no cmdline and drop out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if argv:
            yield int(entry.name), argv


def _ppid(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _dockerds():
    """Daemons, not the short-lived forks a busy dockerd makes (same cmdline until exec)."""
    pids = {pid for pid, argv in _processes() if Path(argv[0]).name == "dockerd"}
    return sorted(pid for pid in pids if _ppid(pid) not in pids)


def _our_registries(dev: Path):
    conf = str(dev / "registry.yml")
    return [pid for pid, argv in _processes()
            if any(Path(a).name == "docker-registry" for a in argv[:2]) and conf in argv]


def _our_emulators(dev: Path):
    data = str(dev / "fake-gcs")
    return [pid for pid, argv in _processes()
            if Path(argv[0]).name == "fake-gcs-server"
            and "-filesystem-root" in argv and argv[argv.index("-filesystem-root") + 1] == data]


def _control_plane_processes(dev: Path) -> list[int]:
    """etcd, kube-apiserver, ... started from DEV: each names a file under DEV/control-plane."""
    marker = str(dev / "control-plane") + "/"
    return sorted(pid for pid, argv in _processes() if any(marker in a for a in argv))


def _services() -> dict:
    return json.loads((dev_dir() / "services.json").read_text())


def _up():
    result = run_dev_env("up")
    assert result.returncode == 0, f"dev-env up failed:\n{result.stderr}"
    return result


def test_up_twice_leaves_exactly_one_of_each(dev_services):
    _up()
    second = _up()
    services = _services()
    dev = Path(services["dev_dir"])

    assert len(_dockerds()) == 1
    assert _our_registries(dev) == [services["pids"]["registry"]]
    assert _our_emulators(dev) == [services["pids"]["gcs_emulator"]]
    control_plane = {services["pids"][name] for name in CONTROL_PLANE}
    assert None not in control_plane and set(_control_plane_processes(dev)) == control_plane
    # Reused, not restarted: same addresses and processes as the session's first `up`.
    for key in ("docker_host", "registry", "storage_emulator_host", "pids", "kubeconfig", "control_plane"):
        assert services[key] == dev_services[key]
    assert "reusing" in second.stderr
    assert "starting dockerd" not in second.stderr
    assert "control plane: starting" not in second.stderr


def test_services_files_describe_the_services(dev_services):
    assert set(dev_services) >= {"docker_host", "registry", "storage_emulator_host", "helm",
                                 "kubectl", "base_image", "started", "kubeconfig", "control_plane"}
    assert re.fullmatch(r"127\.0\.0\.1:\d+", dev_services["registry"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", dev_services["storage_emulator_host"])
    assert dev_services["base_image"] == BASE_IMAGE
    assert dev_services["started"]["registry"] and dev_services["started"]["gcs_emulator"]
    assert dev_services["started"]["control_plane"]
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", dev_services["control_plane"]["server"])
    assert Path(dev_services["kubeconfig"]).is_file()

    env = subprocess.run(
        ["bash", "-c", f'. "{dev_dir() / "services.env"}" && '
                       'echo "$DOCKER_HOST|$CLASSTOOLS_REGISTRY|$STORAGE_EMULATOR_HOST|$KUBECONFIG"'],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert env.stdout.strip() == "|".join(
        [dev_services["docker_host"], dev_services["registry"], dev_services["storage_emulator_host"],
         dev_services["kubeconfig"]])
    # The kubeconfig reaches the control plane (kubectl's own view of it).
    ready = subprocess.run([dev_services["kubectl"], "--kubeconfig", dev_services["kubeconfig"], "get", "--raw",
                            "/readyz"], capture_output=True, text=True, timeout=60)
    assert ready.stdout.strip() == "ok", ready.stderr


def test_status_reports_everything_up(dev_services):
    result = run_dev_env("status", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    states = dict(line.split()[:2] for line in result.stdout.splitlines())
    assert states == {"docker": "running", "registry": "running", "gcs-emulator": "running",
                      "helm": "present", "kubectl": "present", "base-image": "present",
                      **{name.replace("_", "-"): "running" for name in CONTROL_PLANE},
                      # the real node (one per machine) and the mirror of z2jh's images
                      "real-node/containerd": "running", "real-node/kubelet": "running",
                      "real-node/kube-proxy": "running", "real-node": "ready",
                      **{f"upstream-images/{key}": "present" for key in UPSTREAM_IMAGES}}


def test_registry_answers_the_v2_api(registry):
    with HTTP.open(f"http://{registry}/v2/", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_gcs_emulator_stores_and_returns_a_blob(gcs_emulator, dev_services):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="classtools-dev", credentials=AnonymousCredentials())
    assert client.api_endpoint == gcs_emulator  # i.e. STORAGE_EMULATOR_HOST took effect
    name = f"dev-env-test-{uuid.uuid4().hex[:12]}"
    payload = b"hello from the dev environment\n" * 100
    bucket = client.create_bucket(name)
    try:
        bucket.blob("nested/hello.txt").upload_from_string(payload, content_type="text/plain")
        again = storage.Client(project="classtools-dev", credentials=AnonymousCredentials())
        assert again.bucket(name).blob("nested/hello.txt").download_as_bytes() == payload
        assert [b.name for b in again.list_blobs(name)] == ["nested/hello.txt"]
        # On disk under the dev dir, not in memory or the current directory.
        assert (Path(dev_services["dev_dir"]) / "fake-gcs" / name / "nested" / "hello.txt").read_bytes() == payload
    finally:
        for blob in client.list_blobs(name):
            blob.delete()
        bucket.delete()


def test_gcs_emulator_refuses_a_stale_generation(gcs_emulator):
    """What publishing relies on: a write conditioned on a generation that is no longer
    the object's is refused with 412, with google-cloud-storage as publishing uses it."""
    from google.api_core import exceptions
    from google.cloud import storage

    client = storage.Client.create_anonymous_client()
    client.project = "classtools-dev"
    bucket = client.create_bucket(f"dev-env-gen-{uuid.uuid4().hex[:12]}")
    blob = bucket.blob("index.yaml")
    blob.upload_from_string(b"first\n", if_generation_match=0)
    first = bucket.get_blob("index.yaml").generation
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("index.yaml").upload_from_string(b"must not land\n", if_generation_match=0)
    bucket.blob("index.yaml").upload_from_string(b"second\n", if_generation_match=first)
    second = bucket.get_blob("index.yaml").generation
    assert second != first
    with pytest.raises(exceptions.PreconditionFailed) as stale:
        bucket.blob("index.yaml").upload_from_string(b"stale writer\n", if_generation_match=first)
    assert stale.value.code == 412
    assert bucket.blob("index.yaml").download_as_bytes() == b"second\n"
    assert bucket.get_blob("index.yaml").generation == second


def test_gcs_emulator_serves_objects_at_bucket_slash_object(gcs_emulator):
    """helm repo add http://HOST/BUCKET reads HOST/BUCKET/index.yaml and the archives: plain
    HTTP, path style, no credentials."""
    from google.cloud import storage

    client = storage.Client.create_anonymous_client()
    client.project = "classtools-dev"
    bucket = client.create_bucket(f"dev-env-path-{uuid.uuid4().hex[:12]}")
    bucket.blob("index.yaml").upload_from_string(b"apiVersion: v1\nentries: {}\n", content_type="text/yaml")
    with HTTP.open(f"{gcs_emulator}/{bucket.name}/index.yaml", timeout=10) as resp:
        assert resp.status == 200 and resp.read() == b"apiVersion: v1\nentries: {}\n"
    with pytest.raises(urllib.error.HTTPError) as missing:
        HTTP.open(f"{gcs_emulator}/{bucket.name}/nothing.tgz", timeout=10)
    assert missing.value.code == 404


def test_gcs_emulator_is_built_once_per_machine_outside_the_checkout(dev_services):
    import devenv.cpbuild as cpbuild
    binary = cpbuild.bin_dir(build=cpbuild.FAKE_GCS_SERVER) / "fake-gcs-server"
    running = Path(f"/proc/{dev_services['pids']['gcs_emulator']}/exe").resolve()
    assert running == binary.resolve()
    assert REPO not in running.parents
    assert cpbuild.FAKE_GCS_SERVER.binaries["fake-gcs-server"][1] in subprocess.run(
        ["go", "version", "-m", str(binary)], capture_output=True, text=True, check=True,
        env={**os.environ, "PATH": f"/usr/local/go/bin:{os.environ.get('PATH', '')}"}).stdout


def test_helm_is_v3_or_v4(helm_bin):
    result = subprocess.run([helm_bin, "version", "--short"], capture_output=True, text=True,
                            check=True)
    assert re.match(r"v[34]\.\d+\.\d+", result.stdout), result.stdout


def test_kubectl_client_works(kubectl_bin):
    result = subprocess.run([kubectl_bin, "version", "--client"], capture_output=True, text=True,
                            check=True)
    assert "Client Version:" in result.stdout


def test_base_image_exists_and_runs(docker_client, dev_services):
    subprocess.run(["docker", "--host", dev_services["docker_host"], "image", "inspect", BASE_IMAGE],
                   capture_output=True, check=True)
    assert docker_client.containers.run(BASE_IMAGE, "true", remove=True) == b""
    release = docker_client.containers.run(BASE_IMAGE, ["cat", "/etc/debian_version"], remove=True)
    assert release.decode().startswith("12.")


def test_engine_pushes_to_and_pulls_from_the_registry(docker_client, registry):
    import docker

    # dockerd allows plain HTTP to 127.0.0.0/8 out of the box; the registry relies on it.
    cidrs = docker_client.info()["RegistryConfig"]["InsecureRegistryCIDRs"]
    assert any(ip_address("127.0.0.1") in ip_network(c) for c in cidrs), cidrs

    base = docker_client.images.get(BASE_IMAGE)
    repo, tag = f"{registry}/test/base", "x"
    assert base.tag(repo, tag=tag)
    digest = None
    try:
        log = list(docker_client.images.push(repo, tag=tag, stream=True, decode=True))
        assert not [line for line in log if "error" in line or "errorDetail" in line], log
        digest = next(line["aux"]["Digest"] for line in log if "Digest" in line.get("aux", {}))

        docker_client.images.remove(f"{repo}:{tag}")
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(f"{repo}:{tag}")
        assert docker_client.images.pull(repo, tag=tag).id == base.id

        with HTTP.open(f"http://{registry}/v2/test/base/tags/list", timeout=10) as resp:
            assert tag in json.load(resp)["tags"]
    finally:
        try:
            docker_client.images.remove(f"{repo}:{tag}")
        except docker.errors.ImageNotFound:
            pass
        if digest:
            # storage.delete.enabled: the registry must let us clean up.
            req = urllib.request.Request(f"http://{registry}/v2/test/base/manifests/{digest}",
                                         method="DELETE")
            with HTTP.open(req, timeout=10) as resp:
                assert resp.status == 202
    with pytest.raises(urllib.error.HTTPError) as gone:
        HTTP.open(f"http://{registry}/v2/test/base/manifests/{tag}", timeout=10)
    assert gone.value.code == 404


def test_down_stops_only_its_own_services_and_up_restores_them(dev_services, tmp_path):
    """A private dev dir: the shared services stay up for the other tests (and for
    anyone else using this machine's dev environment meanwhile)."""
    dev = tmp_path / "dev"
    shared = _services()
    dockerds = _dockerds()
    try:
        first = run_dev_env("up", dev=dev)
        assert first.returncode == 0, first.stderr
        before = json.loads((dev / "services.json").read_text())
        # The engine is shared and was not started from this dev dir: never ours to stop.
        assert before["started"]["dockerd"] is False
        assert before["registry"] != shared["registry"]
        assert before["control_plane"]["server"] != shared["control_plane"]["server"]
        assert len(_our_registries(dev)) == 1 and len(_our_emulators(dev)) == 1
        assert len(_control_plane_processes(dev)) == len(CONTROL_PLANE)
        kept = _store_in_emulator(before["storage_emulator_host"])

        down = run_dev_env("down", timeout=300, dev=dev)
        assert down.returncode == 0, down.stderr
        assert _our_registries(dev) == [] and _our_emulators(dev) == []
        assert _control_plane_processes(dev) == []
        assert _dockerds() == dockerds
        assert not (dev / "services.json").exists()
        assert run_dev_env("status", timeout=120, dev=dev).returncode == 1
        assert run_dev_env("down", timeout=300, dev=dev).returncode == 0  # nothing left: fine

        again = run_dev_env("up", dev=dev)
        assert again.returncode == 0, again.stderr
        after = json.loads((dev / "services.json").read_text())
        for key in ("docker_host", "registry", "storage_emulator_host"):
            assert after[key] == before[key]  # recorded ports are reused
        assert after["control_plane"]["server"] == before["control_plane"]["server"]
        assert _read_from_emulator(after["storage_emulator_host"], kept) == kept[2], "objects survive down/up"
        assert len(_our_registries(dev)) == 1 and len(_our_emulators(dev)) == 1
        assert len(_control_plane_processes(dev)) == len(CONTROL_PLANE)
    finally:
        run_dev_env("down", timeout=300, dev=dev)
    # The shared services never noticed.
    assert _services()["pids"] == shared["pids"]
    assert len(_our_registries(Path(shared["dev_dir"]))) == 1
    assert len(_control_plane_processes(Path(shared["dev_dir"]))) == len(CONTROL_PLANE)


def _store_in_emulator(url: str) -> tuple[str, str, bytes]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project="classtools-dev", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": url})
    name, payload = f"kept-{uuid.uuid4().hex[:12]}", uuid.uuid4().bytes
    client.create_bucket(name).blob("kept.bin").upload_from_string(payload)
    return name, "kept.bin", payload


def _read_from_emulator(url: str, kept: tuple[str, str, bytes]) -> bytes:
    with HTTP.open(f"{url}/{kept[0]}/{kept[1]}", timeout=10) as resp:
        return resp.read()


def test_failures_say_what_and_why_without_a_traceback(tmp_path):
    """A service that cannot start names itself and shows its log, in one message."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "registry.yml").mkdir()  # the registry's config path is taken: it cannot be written
    result = run_dev_env("up", dev=dev)
    try:
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "dev-env: error:" in result.stderr and "registry" in result.stderr.split("dev-env: error:")[1]
    finally:
        run_dev_env("down", timeout=300, dev=dev)


def test_a_lost_pid_file_leaves_a_stray_that_up_reports_and_down_stops(tmp_path):
    """A daemon whose pid file is gone still serves this dev dir: `up` cannot reuse
    it (it may not be healthy), says so, and `down` stops it with the rest."""
    dev = tmp_path / "dev"
    try:
        first = run_dev_env("up", dev=dev)
        assert first.returncode == 0, first.stderr
        lost = json.loads((dev / "services.json").read_text())["pids"]["registry"]
        (dev / "registry.pid").unlink()

        second = run_dev_env("up", dev=dev)
        assert second.returncode == 0, second.stderr
        assert f"pids {lost};" in second.stderr  # reported, not silently kept
        assert len(_our_registries(dev)) == 2

        down = run_dev_env("down", timeout=300, dev=dev)
        assert down.returncode == 0, down.stderr
        assert _our_registries(dev) == [] and _our_emulators(dev) == []
        assert _control_plane_processes(dev) == []
    finally:
        run_dev_env("down", timeout=300, dev=dev)
