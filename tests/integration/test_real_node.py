"""The dev cluster's real node (scripts/lib/devenv/realnode.py): pods on it really run.

What the classroom needs from a node, checked with plain pods: the node
registers Ready with its label and taint (and only pods that tolerate it land
there), a pod's containers run from the dev registry, cluster DNS answers,
the API server is reachable through the `kubernetes` Service with the pod's
own ServiceAccount token, a claim of the dev storage class mounts read-write,
and `kubectl logs` / `exec` reach the kubelet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WAIT = 240  # a loaded machine, a cold image pull


@pytest.fixture(scope="module")
def node(dev_services) -> dict:
    if not dev_services.get("real_node"):
        pytest.fail("the dev environment runs no real node (CLASSTOOLS_REAL_NODE=0?)", pytrace=False)
    return dev_services["real_node"]


@pytest.fixture(scope="module")
def kubectl(kubeconfig, kubectl_bin):
    def run(*args, check=True, input=None, namespace=None):
        command = [kubectl_bin, "--kubeconfig", kubeconfig, *(["-n", namespace] if namespace else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {result.stderr.strip()}")
        return result
    return run


@pytest.fixture(scope="module")
def tools_image(registry, docker_client, kubectl_bin) -> str:
    """The Debian base image with the static kubectl: getent for DNS, kubectl for the API."""
    ref = f"{registry}/classtools-test/node-tools:1"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(kubectl_bin, Path(tmp) / "kubectl")
        (Path(tmp) / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY kubectl /usr/local/bin/kubectl\n")
        docker_client.images.build(path=tmp, tag=ref, rm=True)
    for line in docker_client.images.push(ref, stream=True, decode=True):
        assert "error" not in line, line
    return ref


@pytest.fixture
def namespace(kubectl):
    name = f"node-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(name: str, image: str, node: dict, command: list[str], **spec) -> dict:
    key, value = node["label"].split("=")
    taint_key, rest = node["taint"].split("=")
    taint_value, effect = rest.split(":")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {key: value},
                     "tolerations": [{"key": taint_key, "operator": "Equal", "value": taint_value, "effect": effect}],
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image, "command": command,
                                     **spec.pop("container", {})}],
                     **spec}}


def _apply(kubectl, namespace: str, obj: dict) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj), namespace=namespace)


def _wait_ready(kubectl, namespace: str, pod: str) -> dict:
    kubectl("wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={WAIT}s", namespace=namespace,
            check=False)
    shown = json.loads(kubectl("get", "pod", pod, "-o", "json", namespace=namespace).stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in shown["status"].get("conditions", []))
    assert ready, json.dumps(shown["status"], indent=1)[:3000]
    return shown


def test_the_node_is_ready_labelled_and_tainted_and_kwok_stays(node, kubectl, kube_cluster):
    nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    real = nodes[node["name"]]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in real["status"]["conditions"])
    key, value = node["label"].split("=")
    assert real["metadata"]["labels"][key] == value
    assert node["taint"] in {f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in real["spec"].get("taints", [])}
    assert real["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.0"
    assert real["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in real["status"]["addresses"]}
    assert addresses["InternalIP"] == node["ip"] and not node["ip"].startswith("127.")
    for kwok in kube_cluster["nodes"]:  # still there for tests of scale, untainted
        assert kwok in nodes and not nodes[kwok]["spec"].get("taints")


def test_a_pod_that_does_not_tolerate_the_taint_never_lands_there(node, kubectl, namespace, tools_image):
    _apply(kubectl, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere"},
                                "spec": {"containers": [{"name": "main", "image": tools_image}]}})
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        placed = kubectl("get", "pod", "elsewhere", "-o", "jsonpath={.spec.nodeName}", namespace=namespace).stdout
        if placed:
            break
        time.sleep(0.5)
    assert placed and placed != node["name"]


def test_a_pod_runs_resolves_services_and_reaches_the_api_with_its_token(node, kubectl, namespace, tools_image):
    kubectl("create", "serviceaccount", "reader", namespace=namespace)
    kubectl("create", "rolebinding", "reader", "--clusterrole=view", f"--serviceaccount={namespace}:reader",
            namespace=namespace)
    _apply(kubectl, namespace, _pod("tools", tools_image, node, ["sh", "-c", "echo started; exec sleep 3600"],
                                    serviceAccountName="reader"))
    shown = _wait_ready(kubectl, namespace, "tools")
    assert shown["spec"]["nodeName"] == node["name"]
    assert shown["status"]["podIP"].startswith(node["pod_cidr"].split(".0.0/")[0] + ".")
    assert "started" in kubectl("logs", "tools", namespace=namespace).stdout  # API server -> kubelet
    # Cluster DNS (CoreDNS, the kubelet's clusterDNS) names the API server's Service
    found = kubectl("exec", "tools", "--", "getent", "hosts", "kubernetes.default.svc.cluster.local",
                    namespace=namespace).stdout.split()
    assert found[0] == "10.96.0.1", found
    search = kubectl("exec", "tools", "--", "cat", "/etc/resolv.conf", namespace=namespace).stdout
    assert f"nameserver {node['dns']}" in search and f"{namespace}.svc.cluster.local" in search
    # In-cluster config: the Service's address through kube-proxy to the API server, TLS verified
    # against the ServiceAccount's CA, authenticated by the pod's own token
    who = json.loads(kubectl("exec", "tools", "--", "kubectl", "auth", "whoami", "-o", "json",
                             namespace=namespace).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    pods = kubectl("exec", "tools", "--", "kubectl", "get", "pods", "-o", "name", namespace=namespace).stdout
    assert "pod/tools" in pods.split()
    denied = kubectl("exec", "tools", "--", "kubectl", "get", "secrets", namespace=namespace, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_a_claim_of_the_dev_storage_class_is_mounted_read_write(node, kubectl, namespace, tools_image, kube_cluster):
    _apply(kubectl, namespace, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "home"},
                                "spec": {"accessModes": ["ReadWriteMany"],
                                         "resources": {"requests": {"storage": "1Gi"}}}})
    _apply(kubectl, namespace, _pod("writer", tools_image, node,
                                    ["sh", "-c", "echo from-the-pod > /home/jovyan/note && exec sleep 3600"],
                                    securityContext={"runAsUser": 1000, "runAsGroup": 100},
                                    container={"volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}]},
                                    volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}]))
    _wait_ready(kubectl, namespace, "writer")
    volume = kubectl("get", "pvc", "home", "-o", "jsonpath={.spec.volumeName}", namespace=namespace).stdout
    on_disk = Path(kube_cluster["dir"]) / "volumes" / volume / "note"
    deadline = time.monotonic() + 30
    while not on_disk.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert on_disk.read_text() == "from-the-pod\n"
    assert on_disk.stat().st_uid == 1000


def test_status_reports_the_node(dev_services, node):
    import devenv
    lines = {name: (state, ok) for name, state, _, ok in devenv.status()}
    assert lines["real-node"] == ("ready", True)
    for part in ("containerd", "kubelet", "kube-proxy"):
        assert lines[f"real-node/{part}"] == ("running", True)
