"""The release stage end to end against the dev environment's real Kubernetes control plane.

`doit` builds the stand-in images, packages the classroom chart on the real
z2jh chart 4.4.0, publishes it to the GCS emulator and deploys it with the
real helm to the real kube-apiserver (etcd, controller manager, scheduler;
kwok's fake nodes mark pods Running and Ready).  helm and kubectl run under a
RECORDER (tests/integration/doubles, KUBE_DOUBLE_PASS=1) that logs every
call with the modes of its values files and then runs the real tool; only
gcloud, cert-manager's and Traefik's charts (not fetchable here) and the
ClusterIssuer (no cert-manager CRD) are played by the double.

What kwok cannot give: the API server's service proxy cannot reach a pod on
a fake node, so these projects set `cluster.health_probe: false`.  Each test
has a namespace and a node label of its own, removed afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import wait_until
from tests.integration.conftest import JUPYTERHUB_VERSION
from tests.integration.test_chart import GKE, HERE, _classroom, _ran

pytestmark = pytest.mark.integration
DOUBLES = HERE / "doubles" / "bin"
CHART = "classroom"  # the classroom chart's name; each test's release has a name of its own
WAIT = 300  # sized for a cold, loaded 2-core machine; every wait ends as soon as its condition holds


def _calls(project):
    path = project.double_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _upgrades(project, release=None):
    release = release or project.cluster.release
    return [c for c in _calls(project) if c["tool"] == "helm" and c["argv"][:1] == ["upgrade"]
            and _operands(c["argv"])[0] == release]


def _operands(argv: list[str]) -> list[str]:
    """What follows `--`: every operand reaches helm, kubectl and gcloud there, never as an option."""
    assert "--" in argv, f"no `--` before the operands: {argv}"
    return argv[argv.index("--") + 1:]


class Cluster:
    """kubectl and helm as the test itself uses them (not recorded), on the dev control plane."""

    def __init__(self, kubeconfig: str, kubectl: str, helm: str, namespace: str):
        self.kubeconfig, self.kubectl_bin, self.helm_bin, self.namespace = kubeconfig, kubectl, helm, namespace
        # z2jh names its cluster-wide objects (the user-scheduler's ClusterRole) after the release:
        # releases of tests running side by side need names of their own.
        self.release = f"c{namespace.removeprefix('rel-')}"
        self.label_key = f"classtools-test-{namespace}"

    def kubectl(self, *args, check=True, input=None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                                text=True, input=input, timeout=WAIT)
        assert not check or result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def get(self, *args) -> dict:
        return json.loads(self.kubectl("get", *args, "-n", self.namespace, "-o", "json").stdout)

    def helm(self, *args, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.helm_bin, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args],
                                capture_output=True, text=True, timeout=WAIT + 60)
        assert not check or result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result

    def history(self) -> list[dict]:
        result = self.helm("history", self.release, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else []

    def hub_values(self) -> dict:
        """What the hub is configured from: z2jh keeps the values in its hub Secret."""
        secret = self.get("secret", "hub")
        return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))

    def wait_for(self, what, check, timeout=WAIT):
        return wait_until(what, check, timeout)


@pytest.fixture
def cluster(kubeconfig, kubectl_bin, helm_bin):
    namespace = f"rel-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(kubeconfig, kubectl_bin, helm_bin, namespace)
    yield cluster
    cluster.helm("uninstall", cluster.release, "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
    cluster.kubectl("delete", "pv", f"{namespace}-classroom-exchange", "--ignore-not-found", check=False)
    cluster.kubectl("label", "nodes", "--all", f"{cluster.label_key}-", check=False)


def _on_cluster(project, cluster, kubeconfig, kubectl_bin, helm_bin, tmp_path, context="classtools-dev"):
    """The project deploying to the dev control plane, helm and kubectl under the recorder."""
    text = (project.config / "classroom.yaml").read_text()
    text = text.replace("deploy: auto", "deploy: always").replace('kube_context: ""', f"kube_context: {context}")
    text = text.replace("namespace: classroom", f"namespace: {cluster.namespace}")
    text = text.replace("  name: classroom ", f"  name: {cluster.release} ", 1)
    assert f"name: {cluster.release}" in text, "config/classroom.yaml's release name line changed"
    text = text.replace("node_label: hub-node=true", f"node_label: {cluster.label_key}=hub")
    text = text.replace("health_probe: true", "health_probe: false")  # kwok: no pod answers the proxy
    # The NFS branch (opt-in, privileged) has the most objects to deploy, keep and tear down;
    # the default (a managed RWX class) is rendered and checked in test_release_values.
    assert "  storage: storage_class " in text, "config/classroom.yaml's exchange storage line changed"
    text = text.replace("  storage: storage_class ", "  storage: nfs ", 1)
    project.write("classroom.yaml", text)
    project.double_dir = tmp_path / "double"
    project.double_dir.mkdir(exist_ok=True)
    base_env = project.env
    project.env = lambda **extra: base_env(**{
        "KUBECONFIG": kubeconfig, "CLASSTOOLS_HELM": str(DOUBLES / "helm"),
        "CLASSTOOLS_KUBECTL": str(DOUBLES / "kubectl"), "CLASSTOOLS_GCLOUD": str(DOUBLES / "gcloud"),
        "KUBE_DOUBLE_DIR": str(project.double_dir), "KUBE_DOUBLE_PASS": "1",
        "KUBE_DOUBLE_REAL_HELM": helm_bin, "KUBE_DOUBLE_REAL_KUBECTL": kubectl_bin,
        "KUBE_DOUBLE_FAKE_RELEASES": "cert-manager,traefik", **extra})
    return project


@pytest.fixture
def deployed(project, registry, bucket, jupyterhub_chart, helm_bin, kubectl_bin, kubeconfig, cluster, tmp_path):
    _classroom(project, registry, bucket, jupyterhub_chart, f"r{uuid.uuid4().hex[:8]}")
    _on_cluster(project, cluster, kubeconfig, kubectl_bin, helm_bin, tmp_path)
    result = project.doit(check=True)
    assert {"cluster:hub-node", "release:jupyterhub"} <= _ran(result)
    project.bucket = bucket
    project.cluster = cluster
    return project


def _published(project) -> str:
    return json.loads(project.dep_file.read_text())["chart:publish"]["_values_:"]["version"]


def test_deploys_the_published_chart_on_the_labelled_node(deployed, gcs_emulator, kube_cluster):
    cluster = deployed.cluster
    calls = _calls(deployed)
    label = next(i for i, c in enumerate(calls) if c["tool"] == "kubectl" and "label" in c["argv"])
    upgrade = next(i for i, c in enumerate(calls) if c["tool"] == "helm" and c["argv"][0] == "upgrade")
    assert label < upgrade
    argv = calls[upgrade]["argv"]
    assert argv[:5] == ["upgrade", "--install", "--namespace", cluster.namespace, "--create-namespace"]
    assert _operands(argv) == [cluster.release, CHART]
    # helm 4's words (the real helm here is v4): roll back on failure, wait, the config wins conflicts
    assert {"--rollback-on-failure", "--wait=watcher", "--force-conflicts"} <= set(argv) and "--atomic" not in argv
    assert argv[argv.index("--repo") + 1] == f"{gcs_emulator}/{deployed.bucket}"
    assert argv[argv.index("--version") + 1] == _published(deployed)

    # In the cluster: one node has the label, the release is deployed at that version, and the
    # scheduler put the hub on the labelled node.
    nodes = cluster.kubectl("get", "nodes", "-l", f"{cluster.label_key}=hub", "-o", "name").stdout.split()
    assert len(nodes) == 1
    [status] = json.loads(cluster.helm("list", "-o", "json").stdout)
    assert (status["status"], status["chart"]) == ("deployed", f"{CHART}-{_published(deployed)}")
    pods = cluster.get("pods", "-l", "component=hub")["items"]
    assert [p["spec"]["nodeName"] for p in pods] == [nodes[0].removeprefix("node/")]
    assert all(p["status"]["phase"] == "Running" for p in pods)
    hub = cluster.get("deployment", "hub")
    assert hub["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"/k8s-hub:{JUPYTERHUB_VERSION}")
    assert hub["status"].get("availableReplicas") == 1, "helm --wait saw the hub available"
    notebook = json.loads(deployed.dep_file.read_text())["image:notebook"]["_values_:"]["ref"]
    image = cluster.hub_values()["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == notebook
    # The cluster's identity is recorded: the API server and its kube-system namespace's UID
    result = json.loads(deployed.dep_file.read_text())["release:jupyterhub"]["_values_:"]
    uid = cluster.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
    assert (result["server"], result["kube_system_uid"]) == (kube_cluster["server"], uid)
    pvcs = {p["metadata"]["name"]: p["status"]["phase"] for p in cluster.get("pvc")["items"]}
    assert pvcs["hub-db-dir"] == "Bound" and pvcs["classroom-exchange"] == "Bound"


def test_the_default_health_probe_fails_where_no_hub_answers_and_the_deploy_is_not_done(deployed):
    """cluster.health_probe defaults to true: on a real cluster the hub answers through the API
    server's service proxy; kwok's pods cannot, so the probe fails, and says so."""
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("health_probe: false", "health_probe: true"))
    for _ in range(2):  # helm recorded the release as deployed; the task is still not done
        result = deployed.doit()
        assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
        assert "release:jupyterhub" in _ran(result)
        assert "but the hub's health endpoint does not answer through the API server's service proxy" \
            in result.stdout
    assert "the hub's health endpoint does not answer; deploying again" in result.stdout
    deployed.write("classroom.yaml", text)  # probe off: the cluster runs exactly this release
    assert _ran(deployed.doit(check=True)) == set()


def test_a_helm_that_would_keep_z2jhs_cmd_is_refused_in_one_line(deployed):
    """helm 3.8.1 keeps z2jh's singleuser.cmd under the chart's null (classroom-start would never
    run): refused before it packages or deploys anything, in one line."""
    (deployed.root / "helm" / "classroom" / "values.yaml").open("a").write("# an edit: package again\n")
    result = deployed.doit(env=deployed.env(KUBE_DOUBLE_HELM_VERSION="v3.8.1+g5cb9af4"))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "helm v3.8.1 is too old: Class Tools needs v3.17.1 or newer" in output, output[-2000:]
    assert not _ran(result) & {"release:jupyterhub"}


def test_secrets_reach_helm_only_in_memory(deployed):
    secrets = dict(line.split("=", 1) for line in deployed.secrets_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    upgrade = _upgrades(deployed)[-1]
    argv = " ".join(" ".join(c["argv"]) for c in _calls(deployed))
    for value in secrets.values():
        assert value not in argv, "a secret reached a command line"
    files = upgrade["files"]
    # in memory only: a memfd passed as /dev/fd/N, never a path on disk
    assert files and all(f["mode"] == "0o600" and f["on_disk"] is False and path.startswith("/dev/fd/")
                         for path, f in files.items())
    given = json.dumps([f["content"] for f in files.values()])
    assert all(value in given for value in secrets.values()), "every secret reaches helm, in a file"
    # In the cluster the db password is in the chart's Secret, which the db sidecar reads
    sidecar = next(c for c in deployed.cluster.hub_values()["singleuser"]["extraContainers"] if c["name"] == "db")
    ref = next(e for e in sidecar["env"] if e["name"] == "MYSQL_ROOT_PASSWORD")["valueFrom"]["secretKeyRef"]
    secret = deployed.cluster.get("secret", ref["name"])
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == secrets["db_root_password"]
    state = deployed.dep_file.read_text()
    assert not any(value in state for value in secrets.values())


def test_unchanged_release_is_not_redeployed_even_from_a_cold_dep_file(deployed):
    revisions = len(deployed.cluster.history())
    result = deployed.doit(check=True)
    assert _ran(result) == set(), result.stdout
    deployed.dep_file.unlink()  # a lost or cold doit state: the cluster still runs the same release
    result = deployed.doit(check=True)
    assert "release:jupyterhub" not in _ran(result) and "cluster:hub-node" not in _ran(result), result.stdout
    assert len(deployed.cluster.history()) == revisions, "no new helm revision"
    # ... and says so, naming what the cluster runs (the reporter's line for an up-to-date task)
    assert f"   release:jupyterhub: already deployed: {deployed.cluster.release} in {deployed.cluster.namespace} " \
           f"runs classroom-{_published(deployed)} with these values" in result.stdout, result.stdout
    # images found in the registry say so at every verbosity
    assert "nothing built: " in result.stdout


def test_a_renamed_context_of_the_same_cluster_deploys_nothing(deployed, kubeconfig, tmp_path):
    renamed = tmp_path / "renamed.kubeconfig"
    renamed.touch(mode=0o600)
    renamed.write_text(Path(kubeconfig).read_text())
    subprocess.run(["kubectl", "--kubeconfig", str(renamed), "config", "rename-context", "classtools-dev",
                    "lecture-hall"], check=True, capture_output=True)
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("kube_context: classtools-dev", "kube_context: lecture-hall"))
    revisions = len(deployed.cluster.history())
    result = deployed.doit(env=deployed.env(KUBECONFIG=str(renamed)), check=True)
    assert _ran(result) == set(), result.stdout
    assert len(deployed.cluster.history()) == revisions


def test_courses_edit_flows_to_the_hub_and_admin_edit_only_to_the_release(deployed):
    courses = deployed.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v2"))
    assert _ran(deployed.doit(check=True)) == {"image:notebook", "image:local", "chart:package",
                                               "chart:publish", "release:jupyterhub"}
    [status] = json.loads(deployed.cluster.helm("list", "-o", "json").stdout)
    assert status["chart"] == f"{CHART}-{_published(deployed)}"
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    assert _ran(deployed.doit(check=True)) == {"release:jupyterhub"}
    admins = deployed.cluster.hub_values()["hub"]["config"]["Authenticator"]["admin_users"]
    assert admins == ["dean"], "admins are auth.admin_users alone: instructors grade, they do not administer"


def test_drift_by_helm_is_seen_in_the_release_record_and_corrected(deployed):
    cluster = deployed.cluster
    cluster.helm("upgrade", cluster.release, _chart_archive(deployed), "--reuse-values",
                 "--set", "jupyterhub.cull.enabled=false", "--wait=watcher", "--timeout=300s")
    assert cluster.hub_values()["cull"]["enabled"] is False
    result = deployed.doit(check=True)
    assert _ran(result) == {"release:jupyterhub"}
    assert "differ from the config (drift) at jupyterhub.cull.enabled" in result.stdout
    assert cluster.hub_values()["cull"]["enabled"] is True
    assert _ran(deployed.doit(check=True)) == set()


def _chart_archive(project) -> str:
    return json.loads(project.dep_file.read_text())["chart:package"]["_values_:"]["path"]


def test_drift_by_kubectl_is_corrected_with_check_cluster(deployed):
    cluster = deployed.cluster
    hub_image = cluster.get("deployment", "hub")["spec"]["template"]["spec"]["containers"][0]["image"]
    cluster.kubectl("-n", cluster.namespace, "set", "image", "deployment/hub", "hub=registry.invalid/hub:evil")
    # The release's record is unchanged: without check_cluster nobody looks at the objects
    assert _ran(deployed.doit(check=True)) == set()
    env = deployed.env(CLASSTOOLS_CHECK_CLUSTER="1")
    result = deployed.doit(env=env, check=True)
    assert _ran(result) == {"release:jupyterhub"}
    assert f"objects of {cluster.release} were changed in the cluster (drift): Deployment/hub" in result.stdout
    assert cluster.get("deployment", "hub")["spec"]["template"]["spec"]["containers"][0]["image"] == hub_image
    assert _ran(deployed.doit(env=env, check=True)) == set(), "after the correction nothing drifts"


def _deny_new_hub_pods(cluster, checksum: str) -> list[str]:
    """An admission policy (namespace-scoped in effect): hub pods of any other hub Secret are refused,
    so the next revision's hub never comes up while the current one may."""
    name = f"deny-{cluster.namespace}"
    expression = (f"object.metadata.namespace != '{cluster.namespace}' || !has(object.metadata.labels) || "
                  "!('component' in object.metadata.labels) || object.metadata.labels['component'] != 'hub' || "
                  f"object.metadata.annotations['checksum/secret'] == '{checksum}'")
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": name},
              "spec": {"failurePolicy": "Fail",
                       "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                               "operations": ["CREATE"], "resources": ["pods"]}]},
                       "validations": [{"expression": expression, "message": "test: new hub refused"}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": name},
               "spec": {"policyName": name, "validationActions": ["Deny"],
                        "matchResources": {"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": cluster.namespace}}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": [policy, binding]}))
    return [f"validatingadmissionpolicy/{name}", f"validatingadmissionpolicybinding/{name}"]


def test_a_failed_upgrade_rolls_back_keeps_the_hub_serving_and_is_not_done(deployed):
    cluster = deployed.cluster
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("helm_timeout: 600", "helm_timeout: 60"))
    before = cluster.get("deployment", "hub")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    revision = cluster.history()[-1]["revision"]
    objects = _deny_new_hub_pods(cluster, before)
    try:
        # The policy takes effect once the API server has loaded it: a pod of another Secret is refused.
        probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "labels": {"component": "hub"},
                                                               "annotations": {"checksum/secret": "other"}},
                 "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]}}
        cluster.wait_for("the admission policy in force", lambda: "test: new hub refused" in cluster.kubectl(
            "-n", cluster.namespace, "create", "--dry-run=server", "-f", "-", input=json.dumps(probe),
            check=False).stderr, timeout=60)
        deployed.write("classroom.yaml", (deployed.config / "classroom.yaml").read_text()
                       .replace("admin_users: []", "admin_users: [dean]"))
        result = deployed.doit()
        assert result.returncode != 0
        assert "release:jupyterhub: helm upgrade failed" in result.stdout
        assert "Traceback" not in result.stdout + result.stderr
        history = cluster.history()
        assert history[-1]["status"] == "deployed" and "Rollback to" in history[-1]["description"]
        assert any(h["status"] == "failed" and h["revision"] > revision for h in history)
        # The previous revision serves: its hub (the old Secret) is available again
        cluster.wait_for("the previous hub available", lambda: cluster.get("deployment", "hub")["status"]
                         .get("availableReplicas") == 1)
        hub = cluster.get("deployment", "hub")
        assert hub["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] == before
        assert cluster.hub_values()["hub"]["config"]["Authenticator"]["admin_users"] == []
    finally:
        cluster.kubectl("delete", *objects, "--ignore-not-found")
    # Not done: the next run deploys again, and now succeeds
    assert _ran(deployed.doit(check=True)) == {"release:jupyterhub"}
    assert cluster.hub_values()["hub"]["config"]["Authenticator"]["admin_users"] == ["dean"]


def test_an_immutable_change_rolls_back_every_object_and_is_not_done(deployed):
    """A PVC cannot shrink: the upgrade fails at apply, after helm has already changed other objects."""
    cluster = deployed.cluster
    revision = cluster.history()[-1]["revision"]
    claim_before = cluster.get("pvc", "classroom-exchange")["spec"]["resources"]["requests"]["storage"]
    config_before = cluster.get("configmap", "classroom-nbgrader")["metadata"]["labels"]
    text = (deployed.config / "classroom.yaml").read_text()
    assert "  size: 10Gi " in text, "config/classroom.yaml's exchange size line changed"
    deployed.write("classroom.yaml", text.replace("  size: 10Gi ", "  size: 5Gi ", 1))
    result = deployed.doit()
    assert result.returncode != 0
    assert "release:jupyterhub: helm upgrade failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    history = cluster.history()
    assert history[-1]["status"] == "deployed" and f"Rollback to {revision}" in history[-1]["description"]
    assert cluster.get("pvc", "classroom-exchange")["spec"]["resources"]["requests"]["storage"] == claim_before
    # every object is the previous revision's again (the chart version in its labels included)
    assert cluster.get("configmap", "classroom-nbgrader")["metadata"]["labels"] == config_before
    # Not done: the next run tries again (and fails again: the cluster cannot do this change)
    again = deployed.doit()
    assert again.returncode != 0 and "release:jupyterhub" in _ran(again)
    # Back to the running size: the cluster already runs it, nothing to deploy
    deployed.write("classroom.yaml", text)
    assert "release:jupyterhub" not in _ran(deployed.doit(check=True))


def test_ldap_bind_password_goes_in_the_private_file_only(deployed):
    text = (deployed.config / "classroom.yaml").read_text()
    text = text.replace("type: dummy", "type: ldap").replace('server: ""', "server: ldap.example.edu")
    text = text.replace("bind_dn_templates: []", 'bind_dn_templates: ["uid={username},dc=example,dc=edu"]')
    text = text.replace('user_search_base: ""', "user_search_base: dc=example,dc=edu")
    deployed.write("classroom.yaml", text.replace('search_user: ""', "search_user: cn=hub,dc=example,dc=edu"))
    result = deployed.doit(env=deployed.env(CLASSTOOLS_LDAP_BIND_PASSWORD="bind-pw-4711"), check=True)
    assert "release:jupyterhub" in _ran(result)
    upgrade = _upgrades(deployed)[-1]
    assert "bind-pw-4711" not in json.dumps([c["argv"] for c in _calls(deployed)])
    public, private = [f["content"] for f in upgrade["files"].values()]
    assert "bind-pw-4711" not in json.dumps(public)
    assert private["jupyterhub"]["hub"]["config"]["LDAPAuthenticator"]["lookup_dn_search_password"] == "bind-pw-4711"
    assert "bind-pw-4711" not in result.stdout + result.stderr + deployed.dep_file.read_text()
    ldap = deployed.cluster.hub_values()["hub"]["config"]["LDAPAuthenticator"]
    assert ldap["lookup_dn_search_password"] == "bind-pw-4711", "the hub gets it, from its Secret"


def _grader(project) -> str:
    """The grader PVC of the project's first course."""
    from tasks import contract
    return contract.grader_host(yaml.safe_load((project.config / "courses.yaml").read_text())["courses"][0]["name"])


def _home(cluster, user: str):
    """A student's home PVC as KubeSpawner makes it (label component=singleuser-storage)."""
    cluster.kubectl("-n", cluster.namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"claim-{user}", "labels": {"component": "singleuser-storage",
                                                          "app": "jupyterhub"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))


def test_teardown_uninstalls_unlabels_and_keeps_what_the_keep_policy_says(deployed):
    cluster = deployed.cluster
    _home(cluster, "alice")
    result = deployed.doit("clean", "release:jupyterhub", "cluster:hub-node", check=True)
    assert f"uninstalling helm release {cluster.release} (namespace {cluster.namespace})" in result.stdout
    assert "keeping the students' home volumes" in result.stdout
    assert cluster.helm("status", cluster.release, check=False).returncode != 0, "the release is gone"
    assert cluster.kubectl("get", "nodes", "-l", f"{cluster.label_key}=hub", "-o", "name").stdout.strip() == ""
    cluster.wait_for("the hub's objects gone", lambda: not cluster.get("deployment")["items"])
    kept = {p["metadata"]["name"] for p in cluster.get("pvc")["items"]}
    # helm.sh/resource-policy: keep: the exchange's disk and the graders' homes; the student's home
    assert {"classroom-exchange-nfs", _grader(deployed), "claim-alice"} <= kept, kept
    assert cluster.get("secret", "classroom-db")["metadata"]["name"] == "classroom-db"


def test_teardown_deletes_homes_only_when_asked(deployed):
    cluster = deployed.cluster
    _home(cluster, "alice")
    result = deployed.doit("clean", "release:jupyterhub", env=deployed.env(CLASSTOOLS_DELETE_HOMES="1"), check=True)
    assert "DELETING the students' home volumes" in result.stdout
    cluster.wait_for("the home PVC deleted", lambda: "claim-alice" not in
                     {p["metadata"]["name"] for p in cluster.get("pvc")["items"]})
    kept = {p["metadata"]["name"] for p in cluster.get("pvc")["items"]}
    assert {"classroom-exchange-nfs", _grader(deployed)} <= kept, "homes only: the graders' data stays"


def test_diagnosis_is_read_only_and_follows_the_checklist(deployed):
    before = len(_calls(deployed))
    revisions = len(deployed.cluster.history())
    result = deployed.doit("diagnose", "--user", "ann.lee", check=True)
    calls = [c["argv"] for c in _calls(deployed)[before:]]
    verbs = [next(a for a in argv if not a.startswith("-") and a != "classtools-dev") for argv in calls]
    # the pod's reason (get -o json), then the checklist: every call reads
    assert verbs == ["get", "get", "get", "logs", "logs", "logs"]
    assert "==== events of jupyter-ann-2elee" in result.stdout
    assert "==== hub and proxy pods" in deployed.doit("diagnose", check=True).stdout
    assert len(deployed.cluster.history()) == revisions


def test_ingress_mode_brings_cert_manager_and_traefik_and_the_email_is_cert_managers_alone(deployed):
    from tasks import contract
    text = (deployed.config / "classroom.yaml").read_text()
    text = text.replace('domain: ""', "domain: hub.example.edu").replace("mode: none", "mode: ingress")
    text = text.replace("dummy_trial: false", "dummy_trial: true")  # a public hub with dummy login
    deployed.write("classroom.yaml", text.replace('email: ""', "email: staff@example.edu"))
    result = deployed.doit(check=True)
    assert _ran(result) == {"release:cert-manager", "release:ingress", "release:jupyterhub"}
    names = [_operands(c["argv"])[0] for c in _calls(deployed) if c["tool"] == "helm" and c["argv"][:1] == ["upgrade"]]
    assert names[-3:-1] in (["cert-manager", "traefik"], ["traefik", "cert-manager"]) and names[-1] == deployed.cluster.release
    cert_manager = next(c["argv"] for c in _upgrades(deployed, "cert-manager"))
    assert cert_manager[cert_manager.index("--repo") + 1] == "https://charts.jetstack.io"
    issuer = f"ClusterIssuer/{contract.issuer_name(deployed.cluster.namespace)}"
    applied = json.loads((deployed.double_dir / "applied.json").read_text())
    assert applied[issuer]["spec"]["acme"]["email"] == "staff@example.edu"
    ingress = deployed.cluster.get("ingress", "jupyterhub")  # the real z2jh Ingress, in the cluster
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"][0]["hosts"] == ["hub.example.edu"]
    # None of the three releases deploys again while the cluster runs them, cold doit state or not
    assert _ran(deployed.doit(check=True)) == set()
    upgrades = len([c for c in _calls(deployed) if c["tool"] == "helm" and c["argv"][:1] == ["upgrade"]])
    deployed.dep_file.unlink()
    result = deployed.doit(check=True)
    assert not {"release:cert-manager", "release:ingress", "release:jupyterhub"} & _ran(result), result.stdout
    assert len([c for c in _calls(deployed) if c["tool"] == "helm" and c["argv"][:1] == ["upgrade"]]) == upgrades

    deployed.write("classroom.yaml", text.replace('email: ""', "email: it-staff@example.edu"))
    assert _ran(deployed.doit(check=True)) == {"release:cert-manager"}
    applied = json.loads((deployed.double_dir / "applied.json").read_text())
    assert applied[issuer]["spec"]["acme"]["email"] == "it-staff@example.edu"


def test_static_ip_is_reserved_once(project, tmp_path, monkeypatch):
    from tasks.cluster import factory as cluster
    from tasks.config.loader import load
    project.write("classroom.yaml", GKE)
    monkeypatch.setenv("CLASSTOOLS_GCLOUD", str(DOUBLES / "gcloud"))
    monkeypatch.setenv("KUBE_DOUBLE_DIR", str(tmp_path))
    config = load(project.config)
    assert cluster.reserve_ip(config) == {"address": "203.0.113.10"}
    assert cluster.reserve_ip(config) == {"address": "203.0.113.10"}
    calls = [c["argv"] for c in _calls(type("P", (), {"double_dir": tmp_path})())]
    assert [argv[2] for argv in calls] == ["describe", "create", "describe", "describe"]
    assert all(_operands(argv) == [config.classroom["hub"]["static_ip_name"]] for argv in calls)


def test_teardown_frees_the_static_ip(project, tmp_path):
    project.write("classroom.yaml", GKE)
    (tmp_path / "addresses.json").write_text('{"ds-hub": "203.0.113.10"}')
    env = project.env(CLASSTOOLS_GCLOUD=str(DOUBLES / "gcloud"), KUBE_DOUBLE_DIR=str(tmp_path))
    result = project.doit("clean", "cluster:ip", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "releasing the static IP ds-hub (europe-west1, project uni-ds)" in result.stdout
    assert json.loads((tmp_path / "addresses.json").read_text()) == {}
