"""Release values from the config, rendered with the real helm and checked against Kubernetes schemas.

No Kubernetes API server runs here: `helm template` and offline schema
validation (kubernetes-validate) are the real parts that can run.  The
JupyterHub dependency is the test stand-in (tests/integration/charts).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks import releasespec
from tasks.config import load

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
REPO = HERE.parents[1]
LDAP = """auth:
  type: ldap
  admin_users: [dean]
  ldap:
    server: ldap.example.edu
    bind_dn_templates: ["uid={username},ou=people,dc=example,dc=edu", "uid={username},ou=staff,dc=example,dc=edu"]
    tls_strategy: before_bind
    search_user: cn=hub,dc=example,dc=edu
    allowed_groups: ["cn=ds-students,ou=groups,dc=example,dc=edu"]
"""
TLS = {
    "none": "profile: local\n",
    "autohttps": "hub: {domain: hub.example.edu, tls: {mode: autohttps, email: staff@example.edu, acme_server: staging}}\n",
    "ingress": "hub: {domain: hub.example.edu, tls: {mode: ingress, email: staff@example.edu}}\n",
}


@pytest.fixture(scope="module")
def chart(tmp_path_factory, helm_bin) -> Path:
    root = tmp_path_factory.mktemp("chart") / "classroom"
    shutil.copytree(REPO / "helm" / "classroom", root)
    subprocess.run([helm_bin, "package", str(HERE / "charts" / "jupyterhub"), "-d", str(root / "charts")],
                   check=True, capture_output=True)
    return root


@pytest.mark.parametrize("tls", sorted(TLS))
@pytest.mark.parametrize("auth", ["dummy", "ldap"])
def test_rendered_release_is_valid_kubernetes(project, chart, helm_bin, tls, auth):
    project.write("classroom.yaml", (LDAP if auth == "ldap" else "") + TLS[tls])
    project.write("courses.yaml", """courses:
  - {name: ds-101, repo: "https://git.example.edu/ds101.git", instructors: [prof], students: [ann, bob]}
  - {name: sql-201, repo: "https://git.example.edu/sql.git", instructors: [prof, ta]}
""")
    config = load(project.config)
    values = releasespec.release_values(config, "registry.example.edu/classroom/db:abc", "203.0.113.7")
    values_file = project.root / "values.json"
    values_file.write_text(json.dumps(values))
    rendered = subprocess.run([helm_bin, "template", "classroom", str(chart), "-n", "classroom",
                               "-f", str(values_file)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    check = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", "-"],
                           input=rendered.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    hub = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub")
    assert hub["spec"]["template"]["spec"]["nodeSelector"] == {"hub-node": "true"}
    text = rendered.stdout
    assert "registry.example.edu/classroom/db:abc" in text
    assert "secretKeyRef" in text and "root-password" in text
    kinds = {d["kind"] for d in docs}
    assert "ClusterIssuer" not in kinds, "release:cert-manager owns the ClusterIssuer"
    assert ("Ingress" in kinds) == (tls == "ingress")
    if tls == "ingress":
        ingress = next(d for d in docs if d["kind"] == "Ingress")
        issuer = releasespec.cluster_issuer(config)
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == issuer["metadata"]["name"]
        assert issuer["spec"]["acme"]["email"] == "staff@example.edu"
        assert "email" not in json.dumps(values["classroom"]), "the email is cert-manager's input only"
    hub_config = values["jupyterhub"]["hub"]["config"]
    assert hub_config["Authenticator"]["admin_users"] == (["dean", "prof", "ta"] if auth == "ldap" else ["prof", "ta"])
    assert set(hub_config["Authenticator"]["allowed_users"]) >= {"ann", "bob", "prof", "ta"}
    assert hub_config["JupyterHub"]["load_groups"]["formgrade-sql-201"] == {"users": ["prof", "ta"]}
    if auth == "ldap":
        ldap = hub_config["LDAPAuthenticator"]
        assert ldap["bind_dn_template"][1] == "uid={username},ou=staff,dc=example,dc=edu"
        assert ldap["tls_strategy"] == "before_bind" and "use_ssl" not in ldap
        assert "lookup_dn_search_password" not in json.dumps(values), "a secret must not be a value"


def test_chart_alone_still_makes_its_issuer(project, chart, helm_bin):
    """Deployed by hand (without Class Tools' cert-manager release), the chart brings the ClusterIssuer."""
    project.write("classroom.yaml", TLS["ingress"])
    values = releasespec.release_values(load(project.config), "db:1")
    values["classroom"]["tls"].update(createIssuer=True, email="staff@example.edu")
    values_file = project.root / "values.json"
    values_file.write_text(json.dumps(values))
    rendered = subprocess.run([helm_bin, "template", "classroom", str(chart), "-f", str(values_file)],
                              capture_output=True, text=True, check=True).stdout
    issuer = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterIssuer")
    assert issuer["spec"]["acme"]["email"] == "staff@example.edu"
