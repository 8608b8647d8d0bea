"""Fixtures of the runtime tests: the hub venv, a real slapd, and hubs of rendered releases.

Imported by tests/integration/conftest.py (`from tests.integration.runtime.fixtures import *`).

The classroom used throughout (courses.yaml of a test project):
    intro: instructor prof,  students alice, bob
    stats: instructor prof2, student  carol
    auth.admin_users: dean        (an admin who teaches nothing)
    mallory: in the LDAP directory, in no course: an outsider
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.runtime import hub as hubs
from tests.integration.runtime import hubenv, ldap, spawn

COURSES = [
    {"name": "intro", "title": "Intro", "repo": "https://git.invalid/intro.git", "ref": "main",
     "instructors": ["prof"], "students": ["alice", "bob"], "packages": []},
    {"name": "stats", "title": "Stats", "repo": "https://git.invalid/stats.git", "ref": "main",
     "instructors": ["prof2"], "students": ["carol"], "packages": []},
]
ADMINS = ["dean"]
OUTSIDER = "mallory"
LDAP_GROUPS = {"instructors": ["prof", "prof2"], "students": ["alice", "bob", "carol"],
               "staff": ["dean"], "visitors": [OUTSIDER]}


def ldap_auth(server: ldap.LdapServer, tls_strategy: str, **settings) -> dict:
    """classroom.yaml `auth:` for this slapd; no port: ldapauthenticator picks it by strategy."""
    return {"type": "ldap", "admin_users": ADMINS,
            "ldap": {"server": server.host, "tls_strategy": tls_strategy,
                     "bind_dn_templates": [server.bind_dn_template], **settings}}


@pytest.fixture(scope="session")
def hub_venv() -> Path:
    """The hub image's exact pins, in a venv cached outside the checkout."""
    return hubenv.hub_venv()


@pytest.fixture(scope="session")
def ldap_server(tmp_path_factory):
    server = ldap.start_ldap(tmp_path_factory.mktemp("slapd") / "ldap", LDAP_GROUPS)
    yield server
    server.stop()


class RuntimeClassroom:
    """One test project (packaged by the real chain) and the hubs started from its releases."""

    def __init__(self, project: hubs.ClassroomProject, workdirs: Path, venv: Path, server: ldap.LdapServer):
        self.project, self.workdirs, self.venv, self.ldap = project, workdirs, venv, server
        self.base_classroom = (project.config / "classroom.yaml").read_text()
        self.base_data = (project.config / "data.yaml").read_text()
        self.hubs: list[hubs.Hub] = []

    def configure(self, classroom: dict | None = None, courses: list | None = None,
                  datasets: list | None = None):
        """classroom.yaml merged into the project's own, the courses (default COURSES) and, given,
        data.yaml's datasets (else the project's own data.yaml)."""
        (self.project.config / "classroom.yaml").write_text(self.base_classroom)
        self.project.configure({"auth": {"type": "dummy", "admin_users": ADMINS}, **(classroom or {})},
                               copy.deepcopy(COURSES if courses is None else courses))
        data = self.base_data if datasets is None else yaml.safe_dump({"datasets": datasets}, sort_keys=False)
        (self.project.config / "data.yaml").write_text(data)

    def release(self, classroom: dict | None = None, courses: list | None = None,
                env: dict | None = None, datasets: list | None = None) -> hubs.Rendered:
        """Configure, `doit chart:package` (fast when nothing changed) and render the release."""
        self.configure(classroom, courses, datasets)
        chart = hubs.package(self.project)
        return hubs.render(self.project, chart, env)

    def start(self, classroom: dict | None = None, courses: list | None = None, env: dict | None = None,
              hub_env: dict | None = None) -> hubs.Hub:
        """A running hub of this release; `env`: the chain's environment (e.g. the bind password)."""
        rendered = self.release(classroom, courses, env)
        hub = hubs.Hub(workdir=self.workdirs / f"hub-{len(self.hubs)}", venv=self.venv, rendered=rendered,
                       extra_hosts={self.ldap.host: self.ldap.address},
                       # The hub trusts the test CA the way it trusts any CA: the system's store.
                       extra_env={"SSL_CERT_FILE": str(self.ldap.ca_file), **(hub_env or {})})
        self.hubs.append(hub)
        hub.start()
        return hub

    def redeploy(self, hub: hubs.Hub, classroom: dict | None = None, courses: list | None = None,
                 env: dict | None = None):
        """What the chain does after an edit: a new chart and values, the hub restarted on its db."""
        hub.redeploy(self.release(classroom, courses, env))

    def stop_all(self):
        for hub in self.hubs:
            hub.stop()


@pytest.fixture(scope="session")
def runtime_classroom(tmp_path_factory, registry, helm_bin, hub_venv, ldap_server):
    root = tmp_path_factory.mktemp("runtime")
    project = hubs.new_project(root / "classroom", registry, helm_bin)
    classroom = RuntimeClassroom(project, root / "hubs", hub_venv, ldap_server)
    classroom.configure()
    yield classroom
    classroom.stop_all()
    shutil.rmtree(project.root / ".classroom", ignore_errors=True)  # the secrets file goes with it


@pytest.fixture(scope="session")
def courses() -> list[dict]:
    return copy.deepcopy(COURSES)


STUDENT, INSTRUCTOR = "alice", "prof"   # of course intro


@pytest.fixture(scope="session")
def runtime_release(runtime_classroom) -> hubs.Rendered:
    """The default release (dummy login) of the test classroom, rendered from its packaged chart."""
    return runtime_classroom.release()


@pytest.fixture(scope="session")
def loaded_hub(runtime_release, tmp_path_factory, hub_venv) -> dict:
    """What the hub loads from that release: {"pods": {student, instructor: V1Pod dict}, "config": ...}
    (runtime/spawn.py: JupyterHub's own initialize() and KubeSpawner's get_pod_manifest())."""
    return spawn.load(runtime_release, [STUDENT, INSTRUCTOR], tmp_path_factory.mktemp("spawn"), hub_venv)


@pytest.fixture(scope="session")
def pods(docker_client, runtime_classroom, courses, tmp_path_factory):
    """The classroom's pods on the Docker Engine (runtime/podrun.py), shared by the pod,
    nbgrader and browser tests: one hub, one exchange, servers made on first use."""
    from tests.integration.runtime.podrun import RuntimePods
    runtime = RuntimePods(docker_client, runtime_classroom, tmp_path_factory.mktemp("pods"), courses)
    yield runtime
    runtime.close()
