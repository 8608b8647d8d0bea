"""The dev environment's Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok and the volume provisioner),
started from a private dev dir so the shared one is never touched.

It is real: real binaries at the pinned versions, real certificates, RBAC and
service-account tokens; only the nodes are kwok's (pods become Running and
Ready without containers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import devenv  # noqa: E402
from devenv import pins  # noqa: E402
from devenv.controlplane import COMPONENTS, ControlPlane  # noqa: E402
from devenv.core import Context  # noqa: E402

# Waits sized for a cold, loaded 2-core machine; each wait ends as soon as its condition holds.
WAIT = 300


def _kubectl(services: dict, *args: str, check: bool = True, input: str | None = None
             ) -> subprocess.CompletedProcess:
    cmd = [services["kubectl"], "--kubeconfig", services["kubeconfig"]]
    result = subprocess.run([*cmd, *args], capture_output=True, text=True, input=input, timeout=WAIT + 60)
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def _get(services: dict, *args: str) -> dict:
    return json.loads(_kubectl(services, "get", *args, "-o", "json").stdout)


def _wait_for(what: str, check, timeout: float = WAIT):
    return wait_until(what, check, timeout)


def _our_processes(dev: Path) -> dict[str, list[int]]:
    """Pids per component whose command line names this dev dir's control-plane files."""
    cp = ControlPlane(Context.from_env(dev))
    found: dict[str, list[int]] = {c.name: [] for c in COMPONENTS}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            continue
        for comp in COMPONENTS:
            if comp.marker(cp) in cmdline:
                found[comp.name].append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def private_dev(tmp_path_factory):
    return tmp_path_factory.mktemp("cp") / "dev"


@pytest.fixture(scope="module")
def cluster(private_dev):
    try:
        services = devenv.up(private_dev)
    except devenv.DevEnvError as exc:
        pytest.fail(f"dev-env up failed in {private_dev}:\n{exc}", pytrace=False)
    yield services
    devenv.down(private_dev)


@pytest.fixture
def namespace(cluster):
    name = f"cp-test-{uuid.uuid4().hex[:8]}"
    _kubectl(cluster, "create", "namespace", name)
    yield name
    _kubectl(cluster, "delete", "namespace", name, "--wait=false", check=False)


def test_api_server_is_ready_at_the_pinned_version(cluster):
    assert _kubectl(cluster, "get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(_kubectl(cluster, "get", "--raw", "/version").stdout)
    assert version["gitVersion"] == pins.KUBERNETES_VERSION
    assert cluster["control_plane"]["server"].startswith("https://127.0.0.1:")
    env = subprocess.run(["bash", "-c", f'. "{Path(cluster["dev_dir"]) / "services.env"}" && echo "$KUBECONFIG"'],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert env.stdout.strip() == cluster["kubeconfig"]


def test_credentials_are_private_files(cluster):
    cp_dir = Path(cluster["control_plane"]["dir"])
    secrets = [Path(cluster["kubeconfig"]), *sorted((cp_dir / "pki").glob("*.key"))]
    assert len(secrets) > 5
    for path in secrets:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (cp_dir / "pki").stat().st_mode & 0o777 == 0o700


def test_nodes_are_ready_and_untainted(cluster):
    nodes = {n["metadata"]["name"]: n for n in _get(cluster, "nodes")["items"]}
    assert sorted(nodes) == sorted(cluster["control_plane"]["nodes"])
    assert len(nodes) >= 2
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
        assert not node["spec"].get("taints"), node["spec"]


def test_a_deployment_gets_ready_pods(cluster, namespace):
    _kubectl(cluster, "-n", namespace, "create", "deployment", "web", "--image=registry.invalid/web:1",
             "--replicas=2")
    result = _kubectl(cluster, "-n", namespace, "rollout", "status", "deployment/web", f"--timeout={WAIT}s")
    assert "successfully rolled out" in result.stdout
    pods = _get(cluster, "-n", namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in cluster["control_plane"]["nodes"]  # placed by the scheduler
        assert pod["status"].get("podIP")
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"  # the controller manager's work


def test_pvcs_bind_and_their_volumes_go_with_them(cluster, namespace):
    claims = {"home": "ReadWriteOnce", "exchange": "ReadWriteMany"}
    for name, mode in claims.items():
        _kubectl(cluster, "-n", namespace, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}}))

    def bound():
        items = _get(cluster, "-n", namespace, "pvc")["items"]
        return items if all(p["status"].get("phase") == "Bound" for p in items) and len(items) == 2 else None
    pvcs = {p["metadata"]["name"]: p for p in _wait_for("PVCs Bound", bound)}
    volumes = Path(cluster["control_plane"]["dir"]) / "volumes"
    for name, mode in claims.items():
        pvc = pvcs[name]
        assert pvc["spec"]["storageClassName"] == cluster["control_plane"]["storage_class"]  # the default class
        pv = _get(cluster, "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["accessModes"] == [mode]
        assert Path(pv["spec"]["hostPath"]["path"]).parent == volumes
        assert Path(pv["spec"]["hostPath"]["path"]).is_dir()

    home_pv = _get(cluster, "pv", pvcs["home"]["spec"]["volumeName"])
    _kubectl(cluster, "-n", namespace, "delete", "pvc", "home")
    _wait_for("the released volume deleted", lambda: _kubectl(
        cluster, "get", "pv", home_pv["metadata"]["name"], check=False).returncode != 0)
    assert not Path(home_pv["spec"]["hostPath"]["path"]).exists()


def test_service_account_tokens_authenticate_and_rbac_applies(cluster, namespace, tmp_path):
    _kubectl(cluster, "-n", namespace, "create", "serviceaccount", "hub")
    _kubectl(cluster, "-n", namespace, "create", "role", "pods", "--verb=list", "--resource=pods")
    _kubectl(cluster, "-n", namespace, "create", "rolebinding", "hub-pods", "--role=pods",
             f"--serviceaccount={namespace}:hub")
    token = _kubectl(cluster, "-n", namespace, "create", "token", "hub").stdout.strip()
    kubeconfig = tmp_path / "hub.kubeconfig"
    kubeconfig.touch(mode=0o600)
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "hub",
        "clusters": [{"name": "dev", "cluster": {
            "server": cluster["control_plane"]["server"],
            "certificate-authority": str(Path(cluster["control_plane"]["dir"]) / "pki" / "ca.crt")}}],
        "users": [{"name": "hub", "user": {"token": token}}],
        "contexts": [{"name": "hub", "context": {"cluster": "dev", "user": "hub", "namespace": namespace}}]}))

    def as_hub(*args):
        # The token reaches kubectl in a 0600 kubeconfig, never on its command line.
        return subprocess.run([cluster["kubectl"], "--kubeconfig", str(kubeconfig), *args],
                              capture_output=True, text=True, timeout=60)
    who = as_hub("auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:hub"
    assert as_hub("get", "pods").returncode == 0
    denied = as_hub("get", "nodes")
    assert denied.returncode != 0 and "forbidden" in denied.stderr


def test_up_again_reuses_everything_once(cluster, private_dev):
    before = _our_processes(private_dev)
    assert all(len(pids) == 1 for pids in before.values()), before
    again = devenv.up(private_dev)
    assert again["pids"] == cluster["pids"]
    assert again["control_plane"]["server"] == cluster["control_plane"]["server"]
    assert _our_processes(private_dev) == before
    states = {name: state for name, state, _, _ in devenv.status(private_dev)}
    assert all(states[c.name] == "running" for c in COMPONENTS), states


def test_down_stops_what_it_started_and_up_brings_the_cluster_back(cluster, private_dev):
    shared = Path(os.environ.get("CLASSTOOLS_DEV_DIR", REPO / ".dev"))
    shared_before = _our_processes(shared)
    _kubectl(cluster, "create", "configmap", "survives-restart", "-n", "default", "--from-literal=a=b")

    devenv.down(private_dev)
    assert all(pids == [] for pids in _our_processes(private_dev).values())
    assert not Path(cluster["kubeconfig"]).exists()  # no admin key left lying around
    states = {name: state for name, state, _, _ in devenv.status(private_dev)}
    assert all(states[c.name] == "stopped" for c in COMPONENTS), states
    assert _our_processes(shared) == shared_before  # another dev dir's cluster never noticed

    again = devenv.up(private_dev)
    assert again["control_plane"]["server"] == cluster["control_plane"]["server"]  # recorded ports reused
    assert _get(again, "configmap", "survives-restart", "-n", "default")["data"] == {"a": "b"}
