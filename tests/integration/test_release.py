"""The release stage end to end on the local chain, against a RECORDING DOUBLE of helm/kubectl/gcloud.

No Kubernetes API server (and no cloud) can run here, so helm's release
commands, kubectl and gcloud are played by tests/integration/doubles (named
as a double, recording every call); everything before them is real: the
Docker Engine and registry, the GCS emulator, helm lint/package/template and
the real z2jh chart 4.4.0.  The double's `helm upgrade` of the classroom
release first renders it with the real `helm template` (same chart, version
and values files), so values z2jh's strict schema refuses fail the deploy.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import yaml

from tests.integration.conftest import JUPYTERHUB_VERSION
from tests.integration.test_chart import GKE, HERE, _classroom, _ran

pytestmark = pytest.mark.integration
DOUBLES = HERE / "doubles" / "bin"


def _calls(project):
    path = project.double_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def deployed(project, registry, bucket, jupyterhub_chart, helm_bin, tmp_path):
    _classroom(project, registry, bucket, jupyterhub_chart, f"r{uuid.uuid4().hex[:8]}")
    text = (project.config / "classroom.yaml").read_text()
    project.write("classroom.yaml", text.replace("deploy: auto", "deploy: always"))
    project.double_dir = tmp_path / "double"
    project.double_dir.mkdir()
    base_env = project.env
    project.env = lambda **extra: base_env(
        CLASSTOOLS_HELM=str(DOUBLES / "helm"), CLASSTOOLS_KUBECTL=str(DOUBLES / "kubectl"),
        CLASSTOOLS_GCLOUD=str(DOUBLES / "gcloud"), KUBE_DOUBLE_DIR=str(project.double_dir),
        KUBE_DOUBLE_REAL_HELM=helm_bin, KUBE_DOUBLE_RENDER="classroom", **extra)
    result = project.doit(check=True)
    assert {"cluster:hub-node", "release:jupyterhub"} <= _ran(result)
    project.bucket = bucket
    return project


def _upgrades(project):
    return [c for c in _calls(project) if c["tool"] == "helm" and c["argv"][0] == "upgrade"]


def test_order_and_arguments(deployed, gcs_emulator):
    calls = _calls(deployed)
    label = next(i for i, c in enumerate(calls) if c["tool"] == "kubectl" and c["argv"][0] == "label")
    upgrade = next(i for i, c in enumerate(calls) if c["tool"] == "helm" and c["argv"][0] == "upgrade")
    health = next(i for i, c in enumerate(calls) if c["argv"][:2] == ["get", "--raw"])
    assert label < upgrade < health
    assert calls[label]["argv"] == ["label", "node/pool-a-1", "hub-node=true"]
    version = json.loads(deployed.dep_file.read_text())["chart:publish"]["_values_:"]["version"]
    argv = calls[upgrade]["argv"]
    assert argv[:7] == ["upgrade", "--install", "classroom", "classroom", "--namespace", "classroom",
                        "--create-namespace"]
    # helm 4's words (the real helm here is v4): no --atomic
    assert "--rollback-on-failure" in argv and "--wait=watcher" in argv and "--atomic" not in argv
    assert argv[argv.index("--repo") + 1] == f"{gcs_emulator}/{deployed.bucket}"
    assert argv[argv.index("--version") + 1] == version
    assert calls[health]["argv"][-1] == "/api/v1/namespaces/classroom/services/hub:8081/proxy/hub/health"


def _rendered(project) -> list[dict]:
    """The manifests of the last upgrade of the classroom release (real `helm template`)."""
    path = project.double_dir / "rendered" / "classroom_classroom.yaml"
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _hub_values(docs) -> dict:
    """What the hub and KubeSpawner are configured from: z2jh keeps the values in its hub Secret."""
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def test_the_deploy_is_what_the_real_z2jh_chart_renders(deployed):
    docs = _rendered(deployed)
    hub = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub")
    image = hub["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f"/k8s-hub:{JUPYTERHUB_VERSION}"), image
    notebook = json.loads(deployed.dep_file.read_text())["image:notebook"]["_values_:"]["ref"]
    image = _hub_values(docs)["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == notebook


def test_secrets_only_in_private_files(deployed):
    secrets = dict(line.split("=", 1) for line in deployed.secrets_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    upgrade = _upgrades(deployed)[-1]
    argv = " ".join(" ".join(c["argv"]) for c in _calls(deployed))
    for value in secrets.values():
        assert value not in argv, "a secret reached a command line"
    files = list(upgrade["files"].values())
    assert all(f["mode"] == "0o600" and f["dir_mode"] == "0o700" for f in files)
    given = json.dumps([f["content"] for f in files])
    assert all(value in given for value in secrets.values()), "every secret reaches helm, in a file"
    # In the cluster the db password is only in the chart's Secret, which the db sidecar reads
    docs = _rendered(deployed)
    sidecar = next(c for c in _hub_values(docs)["singleuser"]["extraContainers"] if c["name"] == "db")
    password = next(e for e in sidecar["env"] if e["name"] == "MYSQL_ROOT_PASSWORD")
    ref = password["valueFrom"]["secretKeyRef"]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"])
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == secrets["db_root_password"]
    state = deployed.dep_file.read_text()
    assert not any(value in state for value in secrets.values())


def test_unchanged_release_is_not_redeployed(deployed):
    before = len(_upgrades(deployed))
    assert _ran(deployed.doit(check=True)) == set()
    assert len(_upgrades(deployed)) == before


def test_courses_edit_flows_to_the_hub_and_admin_edit_only_to_the_release(deployed):
    courses = deployed.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v2"))
    assert _ran(deployed.doit(check=True)) == {"image:notebook", "image:local", "chart:package",
                                               "chart:publish", "release:jupyterhub"}
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    assert _ran(deployed.doit(check=True)) == {"release:jupyterhub"}
    values = _upgrades(deployed)[-1]["files"]
    admins = list(values.values())[0]["content"]["jupyterhub"]["hub"]["config"]["Authenticator"]["admin_users"]
    assert admins == ["dean"], "admins are auth.admin_users alone: instructors grade, they do not administer"


def test_drift_is_detected_and_corrected(deployed):
    env = deployed.env(CLASSTOOLS_CHECK_CLUSTER="1")
    assert _ran(deployed.doit(env=env, check=True)) == set()
    releases_file = deployed.double_dir / "releases.json"
    releases = json.loads(releases_file.read_text())
    releases["classroom/classroom"]["values"]["jupyterhub"]["cull"]["enabled"] = False  # changed by hand
    releases_file.write_text(json.dumps(releases))
    result = deployed.doit(env=env, check=True)
    assert _ran(result) == {"release:jupyterhub"}
    assert "differ from the config (drift); correcting" in result.stdout
    assert _ran(deployed.doit(env=env, check=True)) == set()


@pytest.mark.parametrize("failure,message", [
    ("helm-upgrade", "release:jupyterhub: helm upgrade failed: Error: UPGRADE FAILED"),
    ("health", "the hub's health endpoint does not answer"),
])
def test_failed_deploy_is_not_marked_done(deployed, failure, message):
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    result = deployed.doit(env=deployed.env(KUBE_DOUBLE_FAIL=failure))
    assert result.returncode != 0 and message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert _ran(deployed.doit(check=True)) == {"release:jupyterhub"}, "the failed release runs again"


def test_static_ip_is_reserved_once(project, helm_bin, tmp_path, monkeypatch):
    from tasks import release
    from tasks.config import load
    project.write("classroom.yaml", GKE)
    monkeypatch.setenv("CLASSTOOLS_GCLOUD", str(DOUBLES / "gcloud"))
    monkeypatch.setenv("KUBE_DOUBLE_DIR", str(tmp_path))
    config = load(project.config)
    assert release.reserve_ip(config) == {"address": "203.0.113.10"}
    assert release.reserve_ip(config) == {"address": "203.0.113.10"}
    verbs = [c["argv"][2] for c in _calls(type("P", (), {"double_dir": tmp_path})())]
    assert verbs == ["describe", "create", "describe", "describe"]


def test_ingress_mode_brings_cert_manager_and_traefik_and_the_email_is_cert_managers_alone(deployed):
    text = (deployed.config / "classroom.yaml").read_text()
    text = text.replace('domain: ""', "domain: hub.example.edu").replace("mode: none", "mode: ingress")
    text = text.replace("dummy_trial: false", "dummy_trial: true")  # a public hub with dummy login
    deployed.write("classroom.yaml", text.replace('email: ""', "email: staff@example.edu"))
    result = deployed.doit(check=True)
    assert _ran(result) == {"release:cert-manager", "release:ingress", "release:jupyterhub"}
    upgrades = [c["argv"] for c in _upgrades(deployed)]
    names = [argv[2] for argv in upgrades]
    assert names[-3:-1] in (["cert-manager", "traefik"], ["traefik", "cert-manager"]) and names[-1] == "classroom"
    cert_manager = next(a for a in upgrades if a[2] == "cert-manager")
    assert cert_manager[cert_manager.index("--repo") + 1] == "https://charts.jetstack.io"
    applied = json.loads((deployed.double_dir / "applied.json").read_text())
    assert applied["ClusterIssuer/classroom-letsencrypt"]["spec"]["acme"]["email"] == "staff@example.edu"

    deployed.write("classroom.yaml", text.replace('email: ""', "email: it-staff@example.edu"))
    assert _ran(deployed.doit(check=True)) == {"release:cert-manager"}
    applied = json.loads((deployed.double_dir / "applied.json").read_text())
    assert applied["ClusterIssuer/classroom-letsencrypt"]["spec"]["acme"]["email"] == "it-staff@example.edu"


def test_helm_3_gets_its_own_words(deployed):
    text = (deployed.config / "classroom.yaml").read_text()
    deployed.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    deployed.doit(env=deployed.env(KUBE_DOUBLE_HELM_VERSION="v3.16.2+g13654a5"), check=True)
    argv = _upgrades(deployed)[-1]["argv"]
    assert "--atomic" in argv and "--wait" in argv and "--rollback-on-failure" not in argv


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


def test_teardown_says_what_it_removes_and_keeps_homes(deployed):
    result = deployed.doit("clean", "release:jupyterhub", "cluster:hub-node", check=True)
    assert "uninstalling helm release classroom (namespace classroom)" in result.stdout
    assert "keeping the students' home volumes" in result.stdout
    calls = _calls(deployed)
    assert any(c["argv"][:2] == ["uninstall", "classroom"] for c in calls if c["tool"] == "helm")
    assert not any(c["argv"][:2] == ["delete", "pvc"] for c in calls if c["tool"] == "kubectl")
    assert any(c["argv"][:1] == ["label"] and c["argv"][-1] == "hub-node-" for c in calls)
    assert "classroom/classroom" not in json.loads((deployed.double_dir / "releases.json").read_text())


def test_teardown_deletes_homes_only_when_asked(deployed):
    result = deployed.doit("clean", "release:jupyterhub", env=deployed.env(CLASSTOOLS_DELETE_HOMES="1"), check=True)
    assert "DELETING the students' home volumes" in result.stdout
    assert any(c["argv"][:2] == ["delete", "pvc"] and "component=singleuser-storage" in c["argv"]
               for c in _calls(deployed) if c["tool"] == "kubectl")


def test_diagnosis_is_read_only_and_follows_the_checklist(deployed):
    before = len(_calls(deployed))
    result = deployed.doit("diagnose", "--user", "ann.lee", check=True)
    calls = [c["argv"] for c in _calls(deployed)[before:]]
    assert [a[0] for a in calls] == ["get", "get", "logs", "logs", "logs"]
    assert calls[0][:3] == ["get", "pod", "jupyter-ann-2elee"]
    assert ["-c", "db"] == calls[3][4:6] and calls[4][3] == "deploy/hub"
    assert "==== events of jupyter-ann-2elee" in result.stdout
    result = deployed.doit("diagnose", check=True)
    assert "==== hub and proxy pods" in result.stdout


def test_teardown_frees_the_static_ip(project, tmp_path):
    project.write("classroom.yaml", GKE)
    (tmp_path / "addresses.json").write_text('{"ds-hub": "203.0.113.10"}')
    env = project.env(CLASSTOOLS_GCLOUD=str(DOUBLES / "gcloud"), KUBE_DOUBLE_DIR=str(tmp_path))
    result = project.doit("clean", "cluster:ip", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "releasing the static IP ds-hub (europe-west1, project uni-ds)" in result.stdout
    assert json.loads((tmp_path / "addresses.json").read_text()) == {}
