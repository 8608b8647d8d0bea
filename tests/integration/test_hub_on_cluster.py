"""The real hub of a deployed release, with the hub's own ServiceAccount token, against the real API server.

`doit` deploys the classroom release to the dev control plane (as in
test_release.py).  Then the hub code of the runtime harness — JupyterHub 5.5
and KubeSpawner 7.0 at the hub image's pins, running z2jh 4.4.0's own
jupyterhub_config.py on the hub ConfigMap and Secret of the DEPLOYED release
(read back from helm, so the z2jh-generated keys are the cluster's) — runs as
a process whose only Kubernetes credential is a token of the release's `hub`
ServiceAccount (`kubectl create token hub`), in a 0600 kubeconfig.  A student
logs in and starts their server through the hub's REST API: KubeSpawner
creates the student's home PVC and pod in the release's namespace, allowed
by z2jh's Role alone, and deletes the pod when the server is stopped.

kwok's nodes run no containers, and z2jh's user-scheduler is itself only a
fake pod, so the student's pod is created but never scheduled: the test
stops the server after seeing what the hub created.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.runtime import hub as hubs
from tests.integration.test_chart import _classroom, _ran
from tests.integration.test_release import _on_cluster, cluster  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
STUDENT = "ann"  # made a student of config/courses.yaml's first course


def _post(hub: hubs.Hub, path: str, token: str, method: str = "POST") -> int:
    request = urllib.request.Request(f"{hub.url}/hub/api{path}", data=b"{}" if method == "POST" else None,
                                     method=method, headers={"Authorization": f"token {token}",
                                                             "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _service_account_kubeconfig(path: Path, server: str, ca_file: str, token: str, namespace: str):
    """What a pod of the hub's ServiceAccount would have, as a kubeconfig only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hub",
        "clusters": [{"name": "dev", "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": "hub", "user": {"token": token}}],
        "contexts": [{"name": "hub", "context": {"cluster": "dev", "user": "hub", "namespace": namespace}}]}))


@pytest.fixture
def hub_on_cluster(project, registry, bucket, jupyterhub_chart, helm_bin, kubectl_bin, kubeconfig, kube_cluster,
                   cluster, hub_venv, tmp_path):  # noqa: F811 (cluster: the fixture imported above)
    _classroom(project, registry, bucket, jupyterhub_chart, f"h{uuid.uuid4().hex[:8]}")
    _on_cluster(project, cluster, kubeconfig, kubectl_bin, helm_bin, tmp_path)
    courses = project.config / "courses.yaml"
    assert "students: []" in courses.read_text(), "config/courses.yaml changed its first course's students"
    courses.write_text(courses.read_text().replace("students: []", f"students: [{STUDENT}]", 1))
    assert "release:jupyterhub" in _ran(project.doit(check=True))

    manifests = [d for d in yaml.safe_load_all(cluster.helm("get", "manifest", cluster.release).stdout) if d]
    rendered = hubs.Rendered(manifests=manifests, release=cluster.release, namespace=cluster.namespace)
    token = cluster.kubectl("-n", cluster.namespace, "create", "token", "hub", "--duration=1h").stdout.strip()
    workdir = tmp_path / "hub"
    # Hub writes a kubeconfig only where none is: this one is the ServiceAccount's.
    _service_account_kubeconfig(workdir / "kubeconfig", kube_cluster["server"],
                                str(Path(kube_cluster["dir"]) / "pki" / "ca.crt"), token, cluster.namespace)
    hub = hubs.Hub(workdir=workdir, venv=hub_venv, rendered=rendered)
    hub.start()
    yield hub, cluster
    hub.stop()
    (workdir / "kubeconfig").unlink(missing_ok=True)  # the token goes with the hub


def test_the_hub_starts_a_students_pod_and_home_with_its_service_account(hub_on_cluster):
    hub, cluster = hub_on_cluster
    # The hub's credential is the ServiceAccount's, and nothing more: z2jh's Role, no cluster rights.
    as_hub = [cluster.kubectl_bin, "--kubeconfig", str(hub.workdir / "kubeconfig")]
    who = json.loads(subprocess.run([*as_hub, "auth", "whoami", "-o", "json"], capture_output=True, text=True,
                                    check=True).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{cluster.namespace}:hub"
    for verb, resource, namespace, allowed in [
            ("create", "pods", cluster.namespace, "yes"), ("delete", "pods", cluster.namespace, "yes"),
            ("create", "persistentvolumeclaims", cluster.namespace, "yes"),
            ("create", "pods", "kube-system", "no"), ("list", "nodes", "", "no")]:
        answer = subprocess.run([*as_hub, "auth", "can-i", verb, resource, *(["-n", namespace] if namespace else [])],
                                capture_output=True, text=True)
        assert answer.stdout.strip() == allowed, (verb, resource, namespace, answer.stdout, answer.stderr)

    session = hub.login(STUDENT, "any password")  # dummy login (the test config)
    token = session.new_token()
    assert _post(hub, f"/users/{STUDENT}/server", token) in (201, 202), hub.log()

    pod_name, claim_name = f"jupyter-{STUDENT}", f"claim-{STUDENT}"
    claim = cluster.wait_for("the student's home PVC", lambda: next(
        (p for p in cluster.get("pvc")["items"] if p["metadata"]["name"] == claim_name), None))
    pod = cluster.wait_for("the student's pod", lambda: next(
        (p for p in cluster.get("pods")["items"] if p["metadata"]["name"] == pod_name), None))
    # Made by KubeSpawner (the Python client), not by helm or the test's admin credentials
    shown = json.loads(cluster.kubectl("-n", cluster.namespace, "get", "pod", pod_name, "-o", "json",
                                       "--show-managed-fields").stdout)
    managers = {f["manager"] for f in shown["metadata"]["managedFields"] if f["operation"] == "Update"}
    assert not managers & {"helm", "kubectl", "kubectl-client-side-apply"}, managers
    assert pod["metadata"]["labels"]["component"] == "singleuser-server"
    assert pod["metadata"]["labels"]["hub.jupyter.org/username"] == STUDENT
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == claim_name
    packaged = {c["name"] for c in pod["spec"]["containers"]}
    assert {"notebook", "db"} <= packaged, packaged  # the db sidecar of the packaged chart
    assert claim["metadata"]["labels"]["component"] == "singleuser-storage"
    cluster.wait_for("the home PVC bound", lambda: cluster.get("pvc", claim_name)["status"].get("phase") == "Bound")

    # Stopping the server: KubeSpawner deletes the pod (RBAC delete), the home stays
    status = _post(hub, f"/users/{STUDENT}/server", token, method="DELETE")
    assert status in (202, 204), (status, hub.log())
    cluster.wait_for("the student's pod deleted", lambda: pod_name not in
                     {p["metadata"]["name"] for p in cluster.get("pods")["items"]})
    assert cluster.get("pvc", claim_name)["metadata"]["name"] == claim_name
