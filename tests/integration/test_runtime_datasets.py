"""Datasets in the students' servers: the pods KubeSpawner 7.0.0 builds from the rendered release.

The test classroom (runtime/fixtures.py: intro with prof, alice and bob; stats
with prof2 and carol; dean an admin in no course) gets a gs:// data bucket and
three datasets: one for everybody, one for intro, one for stats.  The hub's
own code loads the rendered release (runtime/spawn.py: JupyterHub's
initialize(), the steps of User.spawn() with the group overrides, KubeSpawner's
get_pod_manifest()); the pods it builds are then sent to the dev control
plane's real kube-apiserver (server-side dry run: validation and admission,
the ServiceAccount admission among them, with the chart's ServiceAccount
applied first), and so are the rendered graders, which mount their course's
datasets.  Then `doit diagnose`'s look for the CSI driver on that API server,
and classroom-start's ~/data link, run for real in a throwaway home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks import contract
from tests.integration.runtime import spawn
from tests.integration.runtime.fixtures import ADMINS, INSTRUCTOR, STUDENT

pytestmark = pytest.mark.integration

BUCKET = "classroom-data-test"
EVERYBODY, INTRO, STATS = "handbook", "intro-flights", "stats-census"
DATASETS = [
    {"name": EVERYBODY, "source": f"gs://upstream-data/{EVERYBODY}"},
    {"name": INTRO, "source": f"gs://upstream-data/{INTRO}", "courses": ["intro"]},
    {"name": STATS, "source": f"gs://upstream-data/{STATS}", "courses": ["stats"]},
]
STATS_STUDENT, ADMIN = "carol", ADMINS[0]
USERS = [STUDENT, INSTRUCTOR, STATS_STUDENT, ADMIN]
START_SCRIPT = Path(__file__).resolve().parents[2] / "images" / "shared" / "classroom-start"


def _release(runtime_classroom, datasets):
    return runtime_classroom.release({"buckets": {"data": f"gs://{BUCKET}"}}, datasets=datasets)


@pytest.fixture(scope="module")
def data_release(runtime_classroom):
    try:
        yield _release(runtime_classroom, DATASETS)
    finally:
        runtime_classroom.configure()  # the other runtime tests' classroom again


@pytest.fixture(scope="module")
def data_pods(data_release, tmp_path_factory, hub_venv) -> dict:
    return spawn.load(data_release, USERS, tmp_path_factory.mktemp("spawn-data"), hub_venv)["pods"]


def _notebook(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def _datasets(pod: dict) -> dict:
    """dataset name -> (volume, mount) of the pod's Cloud Storage FUSE volumes."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or [] if "csi" in v}
    mounts = {m["name"]: m for m in _notebook(pod).get("volumeMounts") or []}
    found = {}
    for name, volume in volumes.items():
        assert volume["csi"]["driver"] == contract.GCSFUSE_DRIVER
        options = volume["csi"]["volumeAttributes"]["mountOptions"].split(",")
        dataset = next(o.split("=", 1)[1] for o in options if o.startswith("only-dir="))
        found[dataset] = (volume, mounts.get(name))
    return found


def _annotated(pod: dict) -> bool:
    return (pod["metadata"].get("annotations") or {}).get(contract.GCSFUSE_ANNOTATION) == "true"


def test_a_students_pod_mounts_each_dataset_read_only_at_the_shared_path(data_pods):
    pod = data_pods[STUDENT]
    found = _datasets(pod)
    assert sorted(found) == sorted([EVERYBODY, INTRO])
    for name, (volume, mount) in found.items():
        assert volume["csi"]["readOnly"] is True
        assert volume["csi"]["volumeAttributes"]["bucketName"] == BUCKET
        assert "implicit-dirs" in volume["csi"]["volumeAttributes"]["mountOptions"].split(",")
        assert mount is not None, f"{name}: the notebook does not mount {volume['name']}"
        assert mount["mountPath"] == f"{contract.DATA_DIR}/{name}"
        assert mount["readOnly"] is True
    assert _annotated(pod)
    assert pod["spec"]["serviceAccountName"] == contract.USER_SERVICE_ACCOUNT
    assert pod["spec"].get("automountServiceAccountToken") is False
    # nothing privileged came with them
    for container in pod["spec"]["containers"] + (pod["spec"].get("initContainers") or []):
        assert not (container.get("securityContext") or {}).get("privileged"), container["name"]


def test_a_course_gets_its_own_dataset_and_not_the_other_courses(data_pods):
    assert sorted(_datasets(data_pods[STUDENT])) == sorted([EVERYBODY, INTRO])
    assert sorted(_datasets(data_pods[INSTRUCTOR])) == sorted([EVERYBODY, INTRO])   # instructors too
    assert sorted(_datasets(data_pods[STATS_STUDENT])) == sorted([EVERYBODY, STATS])
    assert sorted(_datasets(data_pods[ADMIN])) == [EVERYBODY]                       # in no course
    assert all(_annotated(data_pods[user]) for user in USERS)


def test_with_course_datasets_only_a_user_in_no_course_mounts_nothing(runtime_classroom, tmp_path,
                                                                     hub_venv):
    try:
        rendered = _release(runtime_classroom, [d for d in DATASETS if d.get("courses")])
    finally:
        runtime_classroom.configure()
    pods = spawn.load(rendered, [ADMIN, STATS_STUDENT], tmp_path, hub_venv)["pods"]
    assert _datasets(pods[ADMIN]) == {}
    assert not _annotated(pods[ADMIN])
    assert sorted(_datasets(pods[STATS_STUDENT])) == [STATS] and _annotated(pods[STATS_STUDENT])


def test_the_api_server_accepts_the_pods_and_graders_with_the_charts_service_account(data_release, data_pods,
                                                                                    kubeconfig, kubectl_bin):
    namespace = f"datasets-{uuid.uuid4().hex[:8]}"

    def kubectl(*args, manifest=None, check=True):
        result = subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                                input=None if manifest is None else json.dumps(manifest), timeout=120)
        assert not check or result.returncode == 0, result.stderr
        return result

    account = data_release.find("ServiceAccount", contract.USER_SERVICE_ACCOUNT)
    assert account.get("automountServiceAccountToken") is False
    kubectl("create", "namespace", namespace)
    try:
        for user in USERS:
            pod = json.loads(json.dumps(data_pods[user]))
            pod["metadata"].pop("namespace", None)
            # Without the chart's ServiceAccount, the API server's admission refuses the pod.
            refused = kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", manifest=pod, check=False)
            assert refused.returncode != 0 and contract.USER_SERVICE_ACCOUNT in refused.stderr, refused.stderr
        kubectl("apply", "-n", namespace, "-f", "-", manifest=account)
        for user in USERS:
            pod = json.loads(json.dumps(data_pods[user]))
            pod["metadata"].pop("namespace", None)
            created = kubectl("create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", manifest=pod)
            stored = json.loads(created.stdout)
            assert _datasets(stored) == _datasets(data_pods[user])
            assert _annotated(stored) == _annotated(data_pods[user])
        for course in ("intro", "stats"):
            grader = data_release.find("Deployment", contract.grader_host(course))
            kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", manifest=grader)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _grader_datasets(rendered, course: str) -> tuple[dict, dict]:
    """(the grader pod template, its datasets as _datasets gives them)."""
    template = rendered.find("Deployment", contract.grader_host(course))["spec"]["template"]
    pod = {"metadata": template["metadata"],
           "spec": {**template["spec"], "containers": [{**c, "name": "notebook"} if c["name"] == "grader" else c
                                                        for c in template["spec"]["containers"]]}}
    return template, _datasets(pod)


def test_each_grader_mounts_its_courses_datasets_to_autograde_with_them(data_release):
    for course, names in (("intro", [EVERYBODY, INTRO]), ("stats", [EVERYBODY, STATS])):
        template, found = _grader_datasets(data_release, course)
        assert sorted(found) == sorted(names), course
        for name, (volume, mount) in found.items():
            assert volume["csi"]["readOnly"] is True and mount["readOnly"] is True
            assert mount["mountPath"] == f"{contract.DATA_DIR}/{name}"
        assert template["metadata"]["annotations"][contract.GCSFUSE_ANNOTATION] == "true"
        assert template["spec"]["serviceAccountName"] == contract.USER_SERVICE_ACCOUNT
        assert template["spec"]["automountServiceAccountToken"] is False


def test_without_a_gs_bucket_nothing_is_mounted_anywhere(runtime_release, loaded_hub):
    """The default test classroom: buckets.data on disk (file://)."""
    template, found = _grader_datasets(runtime_release, "intro")
    assert found == {} and contract.GCSFUSE_ANNOTATION not in (template["metadata"].get("annotations") or {})
    assert "serviceAccountName" not in template["spec"]
    assert not [d for d in runtime_release.all("ServiceAccount")
                if d["metadata"]["name"] == contract.USER_SERVICE_ACCOUNT]
    assert _datasets(loaded_hub["pods"][STUDENT]) == {} and not _annotated(loaded_hub["pods"][STUDENT])


# ---- doit diagnose: the add-on, asked of the real API server ----------------------------------

def test_diagnose_says_when_the_cluster_lacks_the_fuse_driver_and_finds_it_once_there(kubeconfig, kubectl_bin,
                                                                                     monkeypatch, capsys):
    from tasks.cluster import diagnosis
    from tasks.config.loader import Config
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    monkeypatch.setenv("CLASSTOOLS_KUBECTL", kubectl_bin)
    classroom = {"buckets": {"data": f"gs://{BUCKET}"}, "cluster": {"kube_context": ""},
                 "gcp": {"project": "uni-ds", "cluster": "classroom", "zone": "europe-west1-b",
                         "region": "europe-west1"}}
    config = Config(directory=Path("/nonexistent/config"), classroom=classroom,
                    courses=[{"name": "intro", "instructors": ["prof"], "students": ["alice"]}],
                    datasets=[{"name": EVERYBODY, "source": "gs://upstream-data/x"}])
    driver = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": contract.GCSFUSE_DRIVER},
              "spec": {"attachRequired": False, "podInfoOnMount": True, "volumeLifecycleModes": ["Ephemeral"]}}

    def kubectl(*args, manifest=None):
        return subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                              input=None if manifest is None else json.dumps(manifest), timeout=120)

    kubectl("delete", "csidriver", contract.GCSFUSE_DRIVER, "--ignore-not-found")
    assert diagnosis.check_fuse_driver(config, "") is True
    missing = [line for line in capsys.readouterr().out.splitlines() if "no CSIDriver" in line]
    assert len(missing) == 1
    assert ("gcloud container clusters update classroom --project uni-ds --location europe-west1-b "
            "--update-addons GcsFuseCsiDriver=ENABLED") in missing[0]
    assert kubectl("create", "-f", "-", manifest=driver).returncode == 0
    try:
        assert diagnosis.check_fuse_driver(config, "") is True
        out = capsys.readouterr().out
        assert "no CSIDriver" not in out and f"csidriver.storage.k8s.io/{contract.GCSFUSE_DRIVER}" in out
    finally:
        kubectl("delete", "csidriver", contract.GCSFUSE_DRIVER, "--ignore-not-found")
    on_disk = Config(directory=config.directory, classroom={**classroom, "buckets": {"data": "file://d"}},
                     courses=config.courses, datasets=config.datasets)
    assert diagnosis.check_fuse_driver(on_disk, "") is True
    assert "not mounted in the cluster: buckets.data is file://d" in capsys.readouterr().out


# ---- classroom-start: the datasets in the file browser (~/data) ------------------------------

def _start(home: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """The real start script, as the images run it, with `true` as the server."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CLASSROOM_DATA_DIR": str(data_dir),
           "CLASSROOM_COURSES": str(home.parent / "no-courses.json"),
           "CLASSROOM_NBGRADER_GLOBAL_CONFIG": str(home.parent / "no-nbgrader-config.py")}
    return subprocess.run([sys.executable, str(START_SCRIPT), "true"], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    data = tmp_path / "srv-data"
    (data / EVERYBODY).mkdir(parents=True)
    (data / EVERYBODY / "table.csv").write_text("a,b\n1,2\n")
    return data


def test_start_links_the_datasets_into_an_empty_home(tmp_path, data_dir):
    home = tmp_path / "home"
    home.mkdir()
    result = _start(home, data_dir)
    assert result.returncode == 0, result.stderr
    link = home / contract.DATA_LINK
    assert link.is_symlink() and os.readlink(link) == str(data_dir)
    assert (link / EVERYBODY / "table.csv").read_text() == "a,b\n1,2\n"
    again = _start(home, data_dir)  # the next start finds its own link: nothing to say
    assert again.returncode == 0 and "not a link" not in again.stderr
    assert os.readlink(link) == str(data_dir)


@pytest.mark.parametrize("kind", ["directory", "file", "other-link"])
def test_start_leaves_the_users_own_data_alone(tmp_path, data_dir, kind):
    home = tmp_path / "home"
    home.mkdir()
    own = home / contract.DATA_LINK
    if kind == "directory":
        own.mkdir()
        (own / "mine.txt").write_text("my notes\n")
    elif kind == "file":
        own.write_text("my notes\n")
    else:
        own.symlink_to(tmp_path)
    result = _start(home, data_dir)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "left as it is" in line]
    assert len(said) == 1 and str(own) in said[0], result.stderr
    if kind == "directory":
        assert not own.is_symlink() and (own / "mine.txt").read_text() == "my notes\n"
    elif kind == "file":
        assert not own.is_symlink() and own.read_text() == "my notes\n"
    else:
        assert os.readlink(own) == str(tmp_path)


def test_start_makes_no_link_where_there_is_no_dataset(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = _start(home, tmp_path / "absent")
    assert result.returncode == 0, result.stderr
    assert not (home / contract.DATA_LINK).exists() and not (home / contract.DATA_LINK).is_symlink()
