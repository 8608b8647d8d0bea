"""The packaged chart with the release values, rendered by real helm on the REAL z2jh 4.4.0 chart.

No Kubernetes API server runs here: `helm template` (which checks the values
against z2jh's own schema, which rejects unknown keys) and offline schema
validation (kubernetes-validate) are the real parts that can run.  The chart
is packaged the way `chart:package` packages it (tasks.chart.factory.packaged_files),
with the z2jh archive from ../shared/upstream; the values are exactly the two
documents release:jupyterhub hands to `helm upgrade`
(tasks.release.factory.hub_release_values), secrets read from a private secrets file.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks import contract
from tasks.chart import factory as chart
from tasks.config.loader import load
from tasks.release import factory as release
from tasks.release import spec as releasespec

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
REPO = HERE.parents[1]
UPSTREAM = REPO.parent / "shared" / "upstream" / "jupyterhub-4.4.0.tgz"
IMAGES = {"notebook": {"ref": "registry.example.edu/classroom/notebook:n1"},
          "db": {"ref": "registry.example.edu/classroom/db:abc"}}
LDAP = """auth:
  type: ldap
  admin_users: [dean]
  ldap:
    server: ldap.example.edu
    bind_dn_templates: ["uid={username},ou=people,dc=example,dc=edu", "uid={username},ou=staff,dc=example,dc=edu"]
    tls_strategy: before_bind
    search_user: cn=hub,dc=example,dc=edu
    user_search_base: ou=people,dc=example,dc=edu
    allowed_groups: ["cn=ds-students,ou=groups,dc=example,dc=edu"]
"""
TLS = {
    "none": "profile: local\n",
    "autohttps": "hub: {domain: hub.example.edu, tls: {mode: autohttps, email: staff@example.edu, "
                 "acme_server: staging}}\nauth: {dummy_trial: true}\n",
    "ingress": "hub: {domain: hub.example.edu, tls: {mode: ingress, email: staff@example.edu}}\n"
               "auth: {dummy_trial: true}\n",
}
COURSES = """courses:
  - {name: ds-101, repo: "https://git.example.edu/ds101.git", instructors: [prof], students: [ann, bob]}
  - {name: sql-201, repo: "https://git.example.edu/sql.git", instructors: [prof, ta], students: [cy]}
"""
SECRETS = {"CLASSTOOLS_PROXY_SECRET_TOKEN": "p" * 64, "CLASSTOOLS_HUB_COOKIE_SECRET": "c0" * 32,
           "CLASSTOOLS_DB_ROOT_PASSWORD": "db-pw-4711", "CLASSTOOLS_LDAP_BIND_PASSWORD": "bind-pw-4711"}


def _classroom_yaml(auth: str, tls: str) -> str:
    if auth == "ldap" and tls != "none":
        return LDAP + TLS[tls].replace("auth: {dummy_trial: true}\n", "")
    return (LDAP if auth == "ldap" else "") + TLS[tls]


@pytest.fixture
def classroom(project, monkeypatch):
    assert UPSTREAM.exists(), f"the real z2jh chart is missing: {UPSTREAM}"
    shutil.copytree(REPO / "helm", project.root / "helm")
    project.write("courses.yaml", COURSES)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return project


def _package(project, config) -> Path:
    version, files = chart.packaged_files(config, IMAGES, UPSTREAM)
    root = project.root / "packaged" / chart.CHART_NAME
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _render(helm_bin, packaged: Path, documents: list[dict], tmp: Path) -> subprocess.CompletedProcess:
    args = [helm_bin, "template", "classroom", str(packaged), "-n", "classroom"]
    for i, document in enumerate(documents):
        path = tmp / f"values-{i}.json"
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        args += ["-f", str(path)]
    result = subprocess.run(args, capture_output=True, text=True)
    for i in range(len(documents)):
        (tmp / f"values-{i}.json").unlink()
    return result


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _hub_values(docs) -> dict:
    """The values the hub reads: z2jh mounts its Secret's values.yaml at /usr/local/etc/jupyterhub/secret/."""
    secret = _one(docs, "Secret", contract.HUB_SECRET)
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


@pytest.mark.parametrize("tls", sorted(TLS))
@pytest.mark.parametrize("auth", ["dummy", "ldap"])
def test_release_renders_on_the_real_z2jh_and_the_hub_gets_what_was_set(classroom, helm_bin, tmp_path, tls,
                                                                        auth):
    classroom.write("classroom.yaml", _classroom_yaml(auth, tls))
    config = load(classroom.config)
    packaged = _package(classroom, config)
    public, secret = release.hub_release_values(config, {"address": "203.0.113.7"})
    rendered = _render(helm_bin, packaged, [public, secret], tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    check = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", "-"],
                           input=rendered.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    docs = _docs(rendered.stdout)
    hub_values = _hub_values(docs)
    hub_config = hub_values["hub"]["config"]

    # what the release set, as the hub will read it
    assert hub_config == {**public["jupyterhub"]["hub"]["config"],
                          **({"LDAPAuthenticator": {**public["jupyterhub"]["hub"]["config"]["LDAPAuthenticator"],
                                                    "lookup_dn_search_password": "bind-pw-4711"}}
                             if auth == "ldap" else {})}
    assert hub_config["Authenticator"]["admin_users"] == (["dean"] if auth == "ldap" else [])
    assert hub_config["Authenticator"]["allow_existing_users"] is False
    assert hub_config["JupyterHub"]["admin_access"] is False
    assert hub_values["singleuser"]["memory"] == {"limit": "2G", "guarantee": "512M"}
    if auth == "ldap":
        ldap = hub_config["LDAPAuthenticator"]
        assert ldap["server_port"] == 389 and ldap["tls_strategy"] == "before_bind"
        assert (ldap["lookup_dn"], ldap["user_search_base"], ldap["user_attribute"]) == (
            True, "ou=people,dc=example,dc=edu", "uid")
        assert "bind-pw-4711" not in json.dumps(public), "a secret must not be a public value"
    # what the package set survives the release values (dicts merge, no list set twice)
    singleuser = hub_values["singleuser"]
    # helm drops a null from the subchart's defaults: z2jh then leaves KubeSpawner.cmd at its
    # default None (KubeSpawner 7.0.0), so the image's CMD (classroom-start ...) runs
    assert singleuser.get("cmd") is None
    assert singleuser["extraContainers"][0]["image"] == IMAGES["db"]["ref"]
    assert set(singleuser["storage"]["extraVolumeMounts"]) == {"exchange", "nbgrader-config"}
    assert set(hub_values["hub"]["loadRoles"]) >= {"server", "admin", "formgrade-ds-101", "nbgrader-sql-201"}
    assert set(hub_values["hub"]["services"]) == {"ds-101", "sql-201"}

    hub = _one(docs, "Deployment", "hub")
    assert hub["spec"]["template"]["spec"]["nodeSelector"] == {"hub-node": "true"}
    kinds = {d["kind"] for d in docs}
    assert "ClusterIssuer" not in kinds, "release:cert-manager owns the ClusterIssuer"
    assert ("Ingress" in kinds) == (tls == "ingress")
    proxy = _one(docs, "Service", "proxy-public")
    assert proxy["spec"].get("loadBalancerIP") == (None if tls == "ingress" else "203.0.113.7")
    if tls == "ingress":
        ingress = _one(docs, "Ingress", "jupyterhub")
        issuer = releasespec.cluster_issuer(config)
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == issuer["metadata"]["name"]
        assert ingress["spec"]["tls"][0]["secretName"] == contract.TLS_SECRET
        assert "email" not in json.dumps(public["classroom"]), "the email is cert-manager's input only"
    # the chart's Secret carries the db password, under the name the sidecar's secretKeyRef uses
    db_secret = _one(docs, "Secret", contract.DB_SECRET)
    assert base64.b64decode(db_secret["data"][contract.DB_PASSWORD_KEY]).decode() == "db-pw-4711"
    # and the notebook account's: another value, which does not contain root's
    user_password = base64.b64decode(db_secret["data"][contract.DB_USER_PASSWORD_KEY]).decode()
    assert len(user_password) == 64 and "db-pw-4711" not in user_password


def _pod_specs(docs) -> dict[str, dict]:
    """Every pod template of the manifests, by kind/name (Pods, workloads, CronJobs)."""
    specs = {}
    for doc in docs:
        spec = doc.get("spec") or {}
        template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template")
        pod = doc["spec"] if doc["kind"] == "Pod" else (template or {}).get("spec")
        if pod:
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = pod
    return specs


def test_the_committed_config_runs_no_privileged_container_and_no_0777(classroom, helm_bin, tmp_path):
    """The default (committed config/): no container of any object, z2jh's included, nor of the
    student pods the hub makes (singleuser's containers), is privileged; nothing is 0777."""
    shutil.copy(REPO / "config" / "classroom.yaml", classroom.config / "classroom.yaml")
    config = load(classroom.config)
    assert config.classroom["exchange"]["storage"] == "storage_class", "the secure default"
    documents = list(release.hub_release_values(config))
    rendered = _render(helm_bin, _package(classroom, config), documents, tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    docs = _docs(rendered.stdout)
    containers = {f"{where}/{c['name']}": c for where, pod in _pod_specs(docs).items()
                  for c in [*pod.get("initContainers", []), *pod.get("containers", [])]}
    # the student pod: what KubeSpawner adds from z2jh's singleuser values
    singleuser = _hub_values(docs)["singleuser"]
    containers.update({f"singleuser/{c['name']}": c for c in
                       [*singleuser.get("initContainers", []), *singleuser.get("extraContainers", [])]})
    assert {"Deployment/hub/hub", "Deployment/proxy/chp", "singleuser/db"} <= set(containers), sorted(containers)
    privileged = sorted(name for name, c in containers.items()
                        if (c.get("securityContext") or {}).get("privileged"))
    print(f"containers rendered: {len(containers)}; privileged: {len(privileged)}")
    assert privileged == [], privileged
    # z2jh's privileged iptables init container is off; its NetworkPolicy keeps the metadata server out
    assert singleuser["cloudMetadata"]["blockWithIptables"] is False
    student_policy = _one(docs, "NetworkPolicy", "singleuser")
    assert student_policy["spec"]["egress"], "z2jh's singleuser egress policy is what blocks 169.254.169.254"
    everywhere = next(rule["ipBlock"] for egress in student_policy["spec"]["egress"]
                      for rule in egress.get("to", []) if rule.get("ipBlock", {}).get("cidr") == "0.0.0.0/0")
    assert "169.254.169.254/32" in everywhere["except"], everywhere
    assert not [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == contract.EXCHANGE_SERVER]
    text = rendered.stdout + json.dumps(singleuser)
    assert "0777" not in text and "777 " not in text and "a+rwx" not in text


def test_graders_exchange_and_config_are_wired_to_what_z2jh_makes(classroom, helm_bin, tmp_path):
    classroom.write("classroom.yaml", "exchange: {storage: storage_class, storage_class: standard-rwx}\n")
    config = load(classroom.config)
    public, secret = release.hub_release_values(config)
    rendered = _render(helm_bin, _package(classroom, config), [public, secret], tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    docs = _docs(rendered.stdout)
    hub_secret = _one(docs, "Secret", contract.HUB_SECRET)
    hub_service = _one(docs, "Service", "hub")
    for course in ("ds-101", "sql-201"):
        host = contract.grader_host(course)
        deployment = _one(docs, "Deployment", host)
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        token = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
        # the token z2jh generated for hub.services.<course> is in its hub Secret under that key
        assert token["name"] == hub_secret["metadata"]["name"]
        assert token["key"] in hub_secret["data"]
        assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == contract.grader_service(course)
        assert env["JUPYTERHUB_USER"]["value"] == contract.grader_user(course)
        assert env["CLASSROOM_GRADER_COURSE"]["value"] == course
        assert env["JUPYTERHUB_API_URL"]["value"] == (
            f"http://{hub_service['metadata']['name']}:{hub_service['spec']['ports'][0]['port']}/hub/api")
        assert container["image"] == IMAGES["notebook"]["ref"]
        assert container["args"] == ["classroom-start", "jupyterhub-singleuser"]
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        # the hub's NetworkPolicy admits pods with this label
        assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert set(mounts) == {contract.HOME_PATH, contract.EXCHANGE_ROOT, contract.NBGRADER_CONFIG_PATH}
        service = _one(docs, "Service", host)
        assert service["spec"]["ports"][0]["port"] == contract.GRADER_PORT
        assert _one(docs, "PersistentVolumeClaim", host)["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert _hub_values(docs)["hub"]["services"][course]["url"] == contract.grader_url(course)
    configmap = _one(docs, "ConfigMap", contract.NBGRADER_CONFIGMAP)
    assert set(configmap["data"]) == {contract.NBGRADER_CONFIG_KEY}
    global_config = configmap["data"][contract.NBGRADER_CONFIG_KEY]
    assert f'c.Exchange.root = "{contract.EXCHANGE_ROOT}"' in global_config
    assert "c.Exchange.path_includes_course = True" in global_config
    assert "c.Authenticator.plugin_class = JupyterHubAuthPlugin" in global_config
    compile(global_config, "nbgrader_config.py", "exec")


def _selects(selector: dict, labels: dict) -> bool:
    """A NetworkPolicy podSelector (matchLabels only, as these policies use) matches LABELS."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _egress_by_selector(policy: dict, labels: dict, port: int) -> bool:
    """POLICY lets its pods connect to pods with LABELS on PORT by a pod selector (not an ipBlock)."""
    for rule in policy["spec"].get("egress", []):
        ports = [p.get("port") for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        if any("podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer
               and _selects(peer["podSelector"], labels) for peer in rule.get("to", [])):
            return True
    return False


def test_only_the_hub_and_the_proxy_reach_the_graders_and_by_pod_selector(classroom, helm_bin, tmp_path):
    """Where ipBlock rules do not match pod addresses (Cilium, GKE Dataplane V2), z2jh's egress to
    private ranges does not let the proxy reach a grader: the path must be a pod selector."""
    config = load(classroom.config)
    rendered = _render(helm_bin, _package(classroom, config), list(release.hub_release_values(config)), tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    docs = _docs(rendered.stdout)
    release_name = config.classroom["release"]["name"]
    pods = {name.split("/")[1]: (next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == name))
            for name in _pod_specs(docs) if name.split("/")[0] == "Deployment"}
    labels = {name: doc["spec"]["template"]["metadata"]["labels"] for name, doc in pods.items()}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    student = {"component": "singleuser-server", "app": "jupyterhub", "release": release_name,
               "hub.jupyter.org/network-access-hub": "true"}
    for course in ("ds-101", "sql-201"):
        grader = labels[contract.grader_host(course)]
        for source in ("hub", "proxy"):
            egress = [p for p in policies if _selects(p["spec"]["podSelector"], labels[source])]
            assert any(_egress_by_selector(p, grader, contract.GRADER_PORT) for p in egress), (source, course)
        ingress = [p for p in policies if _selects(p["spec"]["podSelector"], grader)
                   and "Ingress" in p["spec"].get("policyTypes", [])]
        assert ingress, f"no policy guards the grader of {course}"
        admitted = [peer["podSelector"] for p in ingress for rule in p["spec"].get("ingress", [])
                    for peer in rule.get("from", [])]
        assert all("podSelector" in peer for p in ingress for rule in p["spec"].get("ingress", [])
                   for peer in rule.get("from", [])), "an ingress rule of the graders is not by pod selector"
        assert any(_selects(s, labels["hub"]) for s in admitted)
        assert any(_selects(s, labels["proxy"]) for s in admitted)
        # no student's server, of any course, is admitted; nor does its egress name the graders
        assert not any(_selects(s, student) for s in admitted), admitted
        singleuser = [p for p in policies if _selects(p["spec"]["podSelector"], student)]
        assert singleuser and not any(_egress_by_selector(p, grader, contract.GRADER_PORT) for p in singleuser)


@pytest.mark.parametrize("storage", ["nfs", "storage_class"])
def test_exchange_root_is_given_to_uid_1000_without_privilege(classroom, helm_bin, tmp_path, storage):
    classroom.write("classroom.yaml", f"exchange: {{storage: {storage}, storage_class: standard-rwx}}\n")
    config = load(classroom.config)
    rendered = _render(helm_bin, _package(classroom, config), list(release.hub_release_values(config)), tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    docs = _docs(rendered.stdout)
    assert not [d for d in docs if d["kind"] == "Job" and "helm.sh/hook" not in d["metadata"].get("annotations", {})], \
        "a Job in the release: its immutable pod template would need a name per revision, which breaks rollbacks"
    course = config.courses[0]["name"]
    grader = _one(docs, "Deployment", contract.grader_host(course))["spec"]["template"]["spec"]
    [prepare] = grader["initContainers"]
    assert prepare["command"][-1] == (f"chown 1000:100 {contract.EXCHANGE_ROOT} && "
                                      f"chmod 2775 {contract.EXCHANGE_ROOT}")
    security = prepare["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    # root in group 100: chmod keeps the setgid bit only for a member of the file's group
    assert (security["runAsUser"], security["runAsGroup"]) == (0, contract.USERS_GID)
    exchange_volume = next(m["name"] for m in prepare["volumeMounts"] if m["mountPath"] == contract.EXCHANGE_ROOT)
    assert {"name": exchange_volume, "persistentVolumeClaim": {"claimName": contract.EXCHANGE_CLAIM}} \
        in grader["volumes"]
    text = rendered.stdout
    assert "0777" not in text and "chmod 777" not in text
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == contract.EXCHANGE_CLAIM]
    assert len(claims) == 1 and claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == contract.EXCHANGE_SERVER
               for d in docs) == (storage == "nfs")


def test_a_chart_not_packaged_by_the_build_engine_says_what_is_missing(classroom, helm_bin, tmp_path):
    config = load(classroom.config)
    packaged = _package(classroom, config)
    values = yaml.safe_load((packaged / "values.yaml").read_text())
    values["classroom"]["names"] = {}
    (packaged / "values.yaml").write_text(yaml.safe_dump(values))
    rendered = _render(helm_bin, packaged, list(release.hub_release_values(config)), tmp_path)
    assert rendered.returncode != 0
    assert "classroom.names." in rendered.stderr and "the build engine writes classroom.names" in rendered.stderr


# ---- the rendered values in the hub's own code ----------------------------------------------

# Runs inside a private mount namespace, where the laid-out hub files are z2jh's
# /usr/local/etc/jupyterhub: JupyterHub 5.5 initialises from z2jh's jupyterhub_config.py
# (database, roles, users, groups, services; no proxy, no spawn) and reports its state.
INIT_HUB = r'''
import asyncio, json, os, sys
from jupyterhub import orm, scopes
from jupyterhub.app import JupyterHub

async def main():
    app = JupyterHub()
    await app.initialize(["--config", "/usr/local/etc/jupyterhub/jupyterhub_config.py",
                          "--JupyterHub.db_url=sqlite:///" + os.environ["HUB_DB"]])
    db = app.db
    login = {}
    for name in json.loads(os.environ["LOGINS"]):
        login[name] = bool(await app.authenticator.get_authenticated_user(None, {"username": name, "password": "pw"}))
    print(json.dumps({
        "admins": sorted(u.name for u in db.query(orm.User).filter(orm.User.admin)),
        "groups": {g.name: sorted(u.name for u in g.users) for g in db.query(orm.Group)},
        "roles": {r.name: {"scopes": sorted(r.scopes), "groups": sorted(g.name for g in r.groups),
                           "services": sorted(s.name for s in r.services)} for r in db.query(orm.Role)},
        "services": sorted(app._service_map),
        "admin_access": app.admin_access,
        "admin_scopes": {u.name: sorted(scopes.get_scopes_for(u)) for u in db.query(orm.User).filter(orm.User.admin)},
        "login": login,
    }))

asyncio.run(main())
'''
LAUNCH = 'mount --bind "$HUB_ETC" /usr/local/etc && exec "$@"'


def _lay_out(docs, etc: Path):
    """ETC/jupyterhub as z2jh's hub Deployment mounts its ConfigMap and Secret."""
    hub = etc / "jupyterhub"
    (hub / "config").mkdir(parents=True)
    (hub / "secret").mkdir(mode=0o700)
    config = _one(docs, "ConfigMap", "hub")["data"]
    for key, text in config.items():
        (hub / "config" / key).write_text(text)
    for key in ("jupyterhub_config.py", "z2jh.py"):
        (hub / key).write_text(config[key])
    for key, value in _one(docs, "Secret", contract.HUB_SECRET)["data"].items():
        path = hub / "secret" / key
        path.touch(mode=0o600)
        path.write_bytes(base64.b64decode(value))


def _initialise_hub(docs, work: Path, logins) -> dict:
    from tests.integration.runtime.hubenv import hub_venv
    venv = hub_venv()
    etc = work / "etc"
    if not etc.exists():
        _lay_out(docs, etc)
    (work / "init_hub.py").write_text(INIT_HUB)
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work),
           "POD_NAMESPACE": "classroom", "HELM_RELEASE_NAME": "classroom", "CONFIGPROXY_AUTH_TOKEN": "unused",
           "HUB_ETC": str(etc), "HUB_DB": str(work / "jupyterhub.sqlite"), "LOGINS": json.dumps(logins)}
    for service, port in (("HUB", 8081), ("PROXY_API", 8001), ("PROXY_PUBLIC", 80)):
        env.update({f"{service}_SERVICE_HOST": "127.0.0.1", f"{service}_SERVICE_PORT": str(port)})
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", LAUNCH, "launch",
                             str(venv / "bin" / "python"), str(work / "init_hub.py")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_hub_loads_the_roles_and_revokes_earlier_admins(classroom, helm_bin, tmp_path):
    """JupyterHub's admin_users only adds admins: the admin role makes it exact, so an
    instructor who was an admin under the old values is one no more."""
    classroom.write("classroom.yaml", "auth: {admin_users: [dean]}\n")
    config = load(classroom.config)
    rendered = _render(helm_bin, _package(classroom, config), list(release.hub_release_values(config)), tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    docs = _docs(rendered.stdout)
    work = tmp_path / "hub"
    work.mkdir()
    logins = ["prof", "ann", "dean", "mallory"]
    first = _initialise_hub(docs, work, logins)
    assert first["admins"] == ["dean"] and first["admin_access"] is False
    # What the hub itself expands the admin's role to: everything, every student's server
    # and every grader included (admin_access limits nothing): only admin_users hold it.
    assert {"access:servers", "access:services", "admin:users"} <= set(first["admin_scopes"]["dean"])
    assert set(first["admin_scopes"]) == {"dean"}
    assert first["login"] == {"prof": True, "ann": True, "dean": True, "mallory": False}
    assert first["groups"]["formgrade-ds-101"] == ["grader-ds-101", "prof"]
    assert first["roles"]["formgrade-sql-201"] == {"scopes": ["access:services!service=sql-201"],
                                                   "groups": ["formgrade-sql-201"], "services": []}
    assert first["roles"]["grader-ds-101"]["services"] == ["ds-101"]
    assert first["roles"]["server"]["scopes"] == ["inherit"]
    assert {"ds-101", "sql-201"} <= set(first["services"])

    import sqlite3
    with sqlite3.connect(work / "jupyterhub.sqlite") as db:  # prof as an admin of the old values
        db.execute("UPDATE users SET admin = 1 WHERE name = 'prof'")
        db.execute("INSERT INTO user_role_map (user_id, role_id, managed_by_auth) SELECT u.id, r.id, 0 "
                   "FROM users u, roles r WHERE u.name = 'prof' AND r.name = 'admin'")
    assert _initialise_hub(docs, work, [])["admins"] == ["dean"]
