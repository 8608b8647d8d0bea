"""The pods the hub would create: KubeSpawner 7.0.0's own get_pod_manifest() from the hub's loaded config.

runtime/spawn.py runs JupyterHub 5.5's own initialize() on the chart's
jupyterhub_config.py with the rendered hub ConfigMap and Secret, then asks
the real KubeSpawner for the student's and the instructor's pod.  The grader
of each course is a Deployment of the classroom chart: it is checked in the
rendered manifests.  Names come from tasks/contract.py, the one definition
the chart and the Python side share.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tasks import contract
from tests.integration.runtime.fixtures import ADMINS, COURSES, INSTRUCTOR, STUDENT
from tests.integration.runtime.hub import hub_object_name, secret_data

pytestmark = pytest.mark.integration

# JupyterHub's ByteSpecification (jupyterhub/traitlets.py): an int, or a number with K, M, G or T,
# powers of 1024.
UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def byte_spec(text: str) -> int:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT])", str(text))
    assert match, f"{text!r} is not a JupyterHub byte specification"
    return int(float(match.group(1)) * UNITS[match.group(2)])


def _container(pod: dict, name: str) -> dict:
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert name in containers, f"no container {name} in the pod: {sorted(containers)}"
    return containers[name]


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env") or []}


def _mounts(container: dict) -> dict:
    return {m["mountPath"]: m for m in container.get("volumeMounts") or []}


def _volumes(pod_spec: dict) -> dict:
    return {v["name"]: v for v in pod_spec.get("volumes") or []}


def _stored_secret(project, name: str) -> str:
    for line in project.secrets_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"{name} is not in the project's secrets file")


@pytest.fixture(scope="module", params=[STUDENT, INSTRUCTOR])
def pod(request, loaded_hub) -> dict:
    return loaded_hub["pods"][request.param]


@pytest.fixture(scope="module")
def notebook(pod) -> dict:
    return _container(pod, "notebook")


# ---- defect 1: memory JupyterHub can parse ---------------------------------------------------

def test_memory_limit_and_guarantee_parse(notebook, runtime_release):
    """KubeSpawner got bytes: `2Gi` made every spawn fail before a pod existed."""
    memory = runtime_release.hub_values["singleuser"]["memory"]
    resources = notebook["resources"]
    assert resources["limits"]["memory"] == byte_spec(memory["limit"])
    assert resources["requests"]["memory"] == byte_spec(memory["guarantee"])
    assert resources["requests"]["memory"] <= resources["limits"]["memory"]


# ---- defect 2: the image's CMD (classroom-start jupyterhub-singleuser) runs ------------------

def test_notebook_keeps_the_image_command(notebook):
    """No command and no args: Kubernetes then runs the image's ENTRYPOINT/CMD, which is
    `classroom-start jupyterhub-singleuser` (z2jh's default cmd replaced it)."""
    assert not notebook.get("command"), notebook.get("command")
    assert not notebook.get("args"), notebook.get("args")


# ---- defect 7: the database ------------------------------------------------------------------

def test_notebook_has_the_db_env_with_the_password_from_the_secret(notebook, runtime_release, runtime_classroom):
    env = _env(notebook)
    assert env["DB_HOST"]["value"] == "127.0.0.1"     # the sidecar shares the pod's network
    assert env["DB_PORT"]["value"] == "3306"
    assert (env["DB_USER"]["value"], env["DB_NAME"]["value"]) == (contract.DB_USER, contract.DB_NAME)
    ref = env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (contract.DB_SECRET, contract.DB_USER_PASSWORD_KEY)
    assert contract.DB_PASSWORD_KEY not in str(notebook.get("env")), "root's key: the db container only"
    rendered = secret_data(runtime_release.find("Secret", contract.DB_SECRET))
    assert rendered[contract.DB_USER_PASSWORD_KEY] and contract.DB_PASSWORD_KEY in rendered
    assert rendered[contract.DB_USER_PASSWORD_KEY] != rendered[contract.DB_PASSWORD_KEY]
    same = hashlib.sha256(rendered[contract.DB_PASSWORD_KEY].encode()).digest() == \
        hashlib.sha256(_stored_secret(runtime_classroom.project, "db_root_password").encode()).digest()
    assert same, "the db Secret must hold the classroom's db_root_password"


def test_db_sidecar_keeps_its_data_in_the_home_volume_with_resources(pod):
    db = _container(pod, "db")
    ref = _env(db)["MYSQL_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (contract.DB_SECRET, contract.DB_PASSWORD_KEY)
    datadir = _mounts(db)["/var/lib/mysql"]
    assert datadir["name"] == contract.HOME_VOLUME
    assert datadir["subPath"] == contract.DB_DATA_SUBPATH
    home = _volumes(pod["spec"])[contract.HOME_VOLUME]
    assert "persistentVolumeClaim" in home                  # the user's home PVC: survives a stop
    assert _mounts(_container(pod, "notebook"))[contract.HOME_PATH]["name"] == contract.HOME_VOLUME
    resources = db.get("resources") or {}
    assert resources.get("requests", {}).get("memory") and resources.get("limits", {}).get("memory")
    assert resources["requests"].get("cpu")


# ---- nbgrader: exchange and config -----------------------------------------------------------

def test_exchange_and_nbgrader_config_are_mounted(notebook, pod, runtime_release):
    mounts, volumes = _mounts(notebook), _volumes(pod["spec"])
    exchange = mounts[contract.EXCHANGE_ROOT]
    assert volumes[exchange["name"]]["persistentVolumeClaim"]["claimName"] == contract.EXCHANGE_CLAIM
    runtime_release.find("PersistentVolumeClaim", contract.EXCHANGE_CLAIM)
    config = mounts[contract.NBGRADER_CONFIG_PATH]
    assert config.get("readOnly") is True
    assert volumes[config["name"]]["configMap"]["name"] == contract.NBGRADER_CONFIGMAP
    configmap = runtime_release.find("ConfigMap", contract.NBGRADER_CONFIGMAP)
    assert config["subPath"] in configmap["data"]


def test_student_and_instructor_pods_differ_only_by_user(loaded_hub):
    student, instructor = loaded_hub["pods"][STUDENT], loaded_hub["pods"][INSTRUCTOR]
    for pod, user in ((student, STUDENT), (instructor, INSTRUCTOR)):
        assert _env(_container(pod, "notebook"))["JUPYTERHUB_USER"]["value"] == user
    assert [c["name"] for c in student["spec"]["containers"]] == [c["name"] for c in instructor["spec"]["containers"]]
    assert sorted(_mounts(_container(student, "notebook"))) == sorted(_mounts(_container(instructor, "notebook")))


# ---- what the hub loaded: who is admin, what admins may do ----------------------------------

def test_hub_loads_admins_and_no_admin_access(loaded_hub):
    """Defect 9: instructors are not admins, and admins cannot open users' servers."""
    config = loaded_hub["config"]
    assert config["admin_users"] == sorted(ADMINS)
    assert config["admin_access"] is False
    assert config["allow_existing_users"] is False


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c["name"])
def test_hub_loads_the_course_roles(loaded_hub, course):
    name, roles = course["name"], loaded_hub["config"]["roles"]
    formgrade = roles[contract.formgrade_group(name)]
    assert formgrade["groups"] == [contract.formgrade_group(name)]
    assert f"access:services!service={contract.grader_service(name)}" in formgrade["scopes"]
    assert not any(s.startswith("access:services") and not s.endswith(f"service={name}")
                   for s in formgrade["scopes"]), "one course's graders reach only its formgrader"
    nbgrader = roles[contract.nbgrader_group(name)]
    assert nbgrader["groups"] == [contract.nbgrader_group(name)]
    assert contract.grader_service(name) in loaded_hub["config"]["services"]


# ---- the grader of each course: a Deployment of the chart ------------------------------------

@pytest.mark.parametrize("course", COURSES, ids=lambda c: c["name"])
def test_grader_deployment_runs_the_course_formgrader(runtime_release, loaded_hub, course):
    name = course["name"]
    deployment = runtime_release.find("Deployment", contract.grader_host(name))
    spec = deployment["spec"]["template"]["spec"]
    graders = [c for c in spec["containers"] if "CLASSROOM_GRADER_COURSE" in _env(c)]
    assert len(graders) == 1, [c["name"] for c in spec["containers"]]
    grader = graders[0]
    student_image = _container(loaded_hub["pods"][STUDENT], "notebook")["image"]
    assert grader["image"] == student_image
    env = _env(grader)
    assert env["CLASSROOM_GRADER_COURSE"]["value"] == name
    token = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    hub_secret = runtime_release.find("Secret", hub_object_name(runtime_release))
    assert token["name"] == hub_secret["metadata"]["name"]
    assert token["key"] == f"hub.services.{contract.grader_service(name)}.apiToken"
    assert token["key"] in hub_secret["data"]
    mounts, volumes = _mounts(grader), _volumes(spec)
    assert volumes[mounts[contract.EXCHANGE_ROOT]["name"]]["persistentVolumeClaim"]["claimName"] == \
        contract.EXCHANGE_CLAIM
    assert volumes[mounts[contract.NBGRADER_CONFIG_PATH]["name"]]["configMap"]["name"] == contract.NBGRADER_CONFIGMAP
    security = {**(spec.get("securityContext") or {}), **(grader.get("securityContext") or {})}
    assert security.get("runAsUser") == contract.NOTEBOOK_UID
    service = runtime_release.find("Service", contract.grader_host(name))
    assert any(p.get("port") == contract.GRADER_PORT for p in service["spec"]["ports"])
