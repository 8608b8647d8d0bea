"""Pure parts of the chart stage: packaged values, the chart-release contract, versions, archives, index merging."""

from __future__ import annotations

import copy
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from tasks import contract
from tasks.chart import spec as chartspec
from tasks.chart.repo import ChartRepoError, merge_index

SOURCES = {
    "Chart.yaml": b"apiVersion: v2\nname: classroom\nversion: 0.1.0\ndependencies:\n"
                  b"- name: jupyterhub\n  version: 1.0.0\n  repository: https://hub.jupyter.org/helm-chart/\n",
    "values.yaml": b"classroom:\n  exchange:\n    size: 1Gi\njupyterhub:\n  singleuser:\n    image:\n"
                   b"      name: placeholder\n      tag: latest\n",
    "templates/a.yaml": b"kind: ConfigMap\n",
}
IMAGES = {"notebook": {"ref": "127.0.0.1:5000/c/notebook:abc"}, "db": {"ref": "127.0.0.1:5000/c/db:def"}}
VALUES = {"jupyterhub": {"singleuser": {"image": {"name": "127.0.0.1:5000/c/notebook", "tag": "abc"}}}}


def _version(**changes):
    inputs = dict(sources=SOURCES, values=VALUES, dep="4.4.0", digest="d" * 64)
    inputs.update(changes)
    return chartspec.chart_version("0.1.0", inputs["sources"], inputs["values"], inputs["dep"], inputs["digest"])


def test_version_is_semver_and_moves_with_each_input():
    version = _version()
    assert version == _version()
    assert version.startswith("0.1.0-c") and len(version) == len("0.1.0-c") + 12
    assert _version(digest="e" * 64) != version
    assert _version(dep="4.4.1") != version
    assert _version(values={}) != version
    assert _version(sources={**SOURCES, "templates/a.yaml": b"kind: Secret\n"}) != version


def test_files_carry_version_dependency_and_image_refs():
    values = {**VALUES, "classroom": {"names": {"dbSecret": "classroom-db"}}}
    files = chartspec.chart_files(SOURCES, "0.1.0-cabc", "4.4.0", values, ("jupyterhub-4.4.0.tgz", b"tgz"))
    chart = yaml.safe_load(files["Chart.yaml"])
    assert chart["version"] == "0.1.0-cabc" and chart["dependencies"][0]["version"] == "4.4.0"
    values = yaml.safe_load(files["values.yaml"])
    assert values["jupyterhub"]["singleuser"]["image"] == {"name": "127.0.0.1:5000/c/notebook", "tag": "abc"}
    assert values["classroom"] == {"exchange": {"size": "1Gi"}, "names": {"dbSecret": "classroom-db"}}
    assert files["charts/jupyterhub-4.4.0.tgz"] == b"tgz"


def test_archive_is_byte_identical_and_readable():
    files = chartspec.chart_files(SOURCES, "0.1.0-cabc", "4.4.0", {}, ("jupyterhub-4.4.0.tgz", b"x"))
    first = chartspec.archive(dict(reversed(list(files.items()))), "classroom")
    assert first == chartspec.archive(files, "classroom")
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == sorted(names) and all(n.startswith("classroom/") for n in names)
        assert {m.mtime for m in tar.getmembers()} == {chartspec.FIXED_MTIME}


def test_archive_has_fixed_owners_modes_and_no_gzip_timestamp():
    data = chartspec.archive({"b.txt": b"bee", "a/c.yaml": b"x: 1\n"}, "classroom")
    # RFC 1952 header: magic, deflate; FLG 0 (no file name); MTIME 0 (no time); XFL 2 (best compression)
    assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\x00" * 4 and data[8] == 2
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert [(m.name, m.mode, m.uid, m.gid, m.uname, m.gname, m.isfile(), m.size) for m in tar.getmembers()] == [
            ("classroom/a/c.yaml", 0o644, 0, 0, "", "", True, 5), ("classroom/b.txt", 0o644, 0, 0, "", "", True, 3)]
        assert tar.extractfile("classroom/b.txt").read() == b"bee"
        assert tar.extractfile("classroom/a/c.yaml").read() == b"x: 1\n"


@pytest.mark.parametrize("base", ["1.2.3", "1.2.3-rc.1", "1.2.3-rc-1", "1.2.3+build.5", "1.2.3-rc.1+build.5"])
def test_version_keeps_only_the_core_of_the_source_version(base):
    version = chartspec.chart_version(base, SOURCES, VALUES, "4.4.0", "d" * 64)
    assert version.startswith("1.2.3-c") and len(version) == len("1.2.3-c") + 12


def test_version_does_not_depend_on_the_order_of_keys():
    assert _version(values={"b": 1, "a": {"y": 1, "x": 2}}) == _version(values={"a": {"x": 2, "y": 1}, "b": 1})


def test_written_files_keep_the_order_of_their_sources():
    files = chartspec.chart_files(SOURCES, "0.1.0-cabc", "4.4.0", {"zeta": 1, "alpha": 2}, ("d.tgz", b""))
    assert list(yaml.safe_load(files["Chart.yaml"])) == ["apiVersion", "name", "version", "dependencies"]
    assert list(yaml.safe_load(files["values.yaml"])) == ["classroom", "jupyterhub", "zeta", "alpha"]
    assert chartspec.dump_values({"b": 1, "a": "n"}) == b"b: 1\na: 'n'\n"  # helm reads a bare n as false


def test_a_chart_without_values_gets_just_the_packaged_ones():
    sources = {k: v for k, v in SOURCES.items() if k != "values.yaml"}
    files = chartspec.chart_files(sources, "0.1.0-cabc", "4.4.0", {"a": {"b": 1}}, ("d.tgz", b""))
    assert yaml.safe_load(files["values.yaml"]) == {"a": {"b": 1}}


def test_no_privileged_iptables_container_in_student_pods():
    assert _packaged()["jupyterhub"]["singleuser"]["cloudMetadata"] == {"blockWithIptables": False}


def test_index_entry_is_what_helm_repo_index_writes():
    chart = {"apiVersion": "v2", "name": "classroom", "version": "0.1.0-c1", "appVersion": "5.5.0",
             "description": "A classroom", "type": "application", "keywords": ["jupyter"], "home": "https://h",
             "dependencies": [{"name": "jupyterhub", "version": "4.4.0"}], "maintainers": [{"name": "x"}]}
    files = {"Chart.yaml": yaml.safe_dump(chart).encode()}
    entry = chartspec.index_entry(files, "f" * 64, "https://x/classroom-0.1.0-c1.tgz", "2026-11-28T00:00:00Z")
    assert entry == {**{k: v for k, v in chart.items() if k != "maintainers"}, "created": "2026-11-28T00:00:00Z",
                     "digest": "f" * 64, "urls": ["https://x/classroom-0.1.0-c1.tgz"]}
    minimal = chartspec.index_entry({"Chart.yaml": b"apiVersion: v2\nname: c\nversion: 1.0.0\n"}, "d", "u", "t")
    assert minimal == {"apiVersion": "v2", "name": "c", "version": "1.0.0", "created": "t", "digest": "d",
                       "urls": ["u"]}




ENTRY = {"apiVersion": "v2", "name": "classroom", "version": "0.1.0-c1", "digest": "a" * 64,
         "created": "2026-11-26T00:00:00Z", "urls": ["https://x/classroom-0.1.0-c1.tgz"]}


def test_index_merge_keeps_every_entry_and_refuses_a_changed_version():
    text, changed = merge_index(None, ENTRY, "gs://b")
    assert changed
    second = {**ENTRY, "version": "0.1.0-c2", "digest": "b" * 64, "created": "2026-11-27T00:00:00Z"}
    text, changed = merge_index(text, second, "gs://b")
    versions = [e["version"] for e in yaml.safe_load(text)["entries"]["classroom"]]
    assert changed and versions == ["0.1.0-c2", "0.1.0-c1"]
    assert merge_index(text, ENTRY, "gs://b") == (None, False)
    with pytest.raises(ChartRepoError, match="versions are immutable"):
        merge_index(text, {**ENTRY, "digest": "c" * 64}, "gs://b")




def test_values_keep_logins_that_go_yaml_would_read_as_booleans():
    text = chartspec.dump_values({"classroom": {"courses": [{"name": "c", "instructors": ["n", "y", "on", "ann"]}]}})
    assert b"- 'n'" in text and b"- 'y'" in text and b"- 'on'" in text and b"- ann" in text
    assert yaml.safe_load(text)["classroom"]["courses"][0]["instructors"] == ["n", "y", "on", "ann"]


# ---- packaged values: what the classroom is -------------------------------------------------

COURSES = [{"name": "ds-101", "title": "Data science", "instructors": ["prof"], "students": ["ann"]},
           {"name": "sql-201", "title": "", "instructors": ["prof", "ta"], "students": []}]


def _config(storage="storage_class"):
    from tasks.config.loader import Config
    classroom = {"exchange": {"storage": storage, "storage_class": "standard-rwx", "size": "20Gi"}}
    return Config(directory=Path("/nonexistent/config"), classroom=classroom, courses=copy.deepcopy(COURSES),
                  datasets=[])


def _packaged():
    return chartspec.packaged_values(_config(), IMAGES)


def test_packaged_classroom_part_names_every_object_from_the_contract():
    classroom = _packaged()["classroom"]
    assert classroom["names"] == contract.chart_names(["ds-101", "sql-201"])
    assert classroom["names"]["graders"]["ds-101"] == {
        "service": "ds-101", "user": "grader-ds-101", "host": "grader-ds-101",
        "formgradeGroup": "formgrade-ds-101", "nbgraderGroup": "nbgrader-ds-101"}
    assert classroom["exchange"] == {"storage": "storage_class", "storageClass": "standard-rwx", "size": "20Gi"}
    assert classroom["courses"] == [{"name": "ds-101", "title": "Data science", "instructors": ["prof"]},
                                    {"name": "sql-201", "title": "", "instructors": ["prof", "ta"]}]


def test_contract_names():
    names = contract.chart_names(["c"])
    assert (names["exchangeClaim"], names["dbSecret"], names["dbPasswordKey"], names["nbgraderConfigMap"]) == (
        "classroom-exchange", "classroom-db", "root-password", "classroom-nbgrader")
    assert (names["exchangeRoot"], names["nbgraderConfigPath"]) == (
        "/srv/nbgrader/exchange", "/etc/jupyter/nbgrader_config.py")
    assert (contract.grader_service("c"), contract.grader_user("c"), contract.grader_host("c")) == (
        "c", "grader-c", "grader-c")
    assert contract.grader_url("c") == "http://grader-c:8888"
    assert (contract.formgrade_group("c"), contract.nbgrader_group("c")) == ("formgrade-c", "nbgrader-c")
    assert contract.issuer_name("ns") == "ns-letsencrypt"


def test_student_servers_keep_the_image_command_and_a_home_volume_named_home():
    singleuser = _packaged()["jupyterhub"]["singleuser"]
    assert singleuser["image"] == {"name": "127.0.0.1:5000/c/notebook", "tag": "abc"}
    assert "cmd" in singleuser and singleuser["cmd"] is None  # z2jh: null keeps the image's CMD
    assert singleuser["storage"]["dynamic"] == {"volumeNameTemplate": "home"}


def _strings(node):
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_db_sidecar_listens_on_loopback_as_999_with_its_data_in_the_home():
    singleuser = _packaged()["jupyterhub"]["singleuser"]
    [db] = singleuser["extraContainers"]
    assert db == {
        "name": "db",
        "image": "127.0.0.1:5000/c/db:def",
        "args": ["--bind-address=127.0.0.1"],
        "env": [{"name": "MYSQL_ROOT_PASSWORD",
                 "valueFrom": {"secretKeyRef": {"name": "classroom-db", "key": "root-password"}}},
                {"name": "MARIADB_USER", "value": "student"},
                {"name": "MARIADB_DATABASE", "value": "student"},
                {"name": "MARIADB_PASSWORD",
                 "valueFrom": {"secretKeyRef": {"name": "classroom-db", "key": "user-password"}}}],
        "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "home", "mountPath": "/var/lib/mysql", "subPath": ".classroom-db"}],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "readinessProbe": {"exec": {"command": ["mariadb-admin", "ping", "--silent"]},
                           "periodSeconds": 5, "failureThreshold": 3},
    }
    [prepare] = singleuser["initContainers"]
    assert prepare == {
        "name": "prepare-db-dir",
        "image": "127.0.0.1:5000/c/notebook:abc",
        "command": ["sh", "-c", "mkdir -p /home/jovyan/.classroom-db && chmod 2770 /home/jovyan/.classroom-db"],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
    }
    # KubeSpawner formats init containers with str.format: a brace would break every spawn
    assert not [s for s in _strings(singleuser) if "{" in s or "}" in s]


def test_notebook_gets_its_own_db_account_never_roots_password():
    env = _packaged()["jupyterhub"]["singleuser"]["extraEnv"]
    assert env == {"DB_HOST": "127.0.0.1", "DB_PORT": "3306", "DB_USER": "student", "DB_NAME": "student",
                   "DB_PASSWORD": {"valueFrom": {"secretKeyRef": {"name": "classroom-db", "key": "user-password"}}}}
    # root's key reaches the db container and nothing else of the student's pod
    singleuser = _packaged()["jupyterhub"]["singleuser"]
    readers = [c["name"] for c in [*singleuser["extraContainers"], *singleuser["initContainers"]]
               if "root-password" in str(c)] + (["notebook"] if "root-password" in str(env) else [])
    assert readers == ["db"]
    # KubeSpawner leaves out environment values that are not strings or dicts
    assert all(isinstance(v, (str, dict)) for v in env.values())


def test_exchange_and_nbgrader_config_are_mounted_as_dicts():
    storage = _packaged()["jupyterhub"]["singleuser"]["storage"]
    assert storage["extraVolumes"] == {
        "exchange": {"name": "exchange", "persistentVolumeClaim": {"claimName": "classroom-exchange"}},
        "nbgrader-config": {"name": "nbgrader-config", "configMap": {"name": "classroom-nbgrader"}}}
    assert storage["extraVolumeMounts"] == {
        "exchange": {"name": "exchange", "mountPath": "/srv/nbgrader/exchange"},
        "nbgrader-config": {"name": "nbgrader-config", "mountPath": "/etc/jupyter/nbgrader_config.py",
                            "subPath": "nbgrader_config.py", "readOnly": True}}


def test_each_course_has_a_grader_service_and_nbgrader_roles():
    hub = _packaged()["jupyterhub"]["hub"]
    assert hub["services"] == {
        "ds-101": {"url": "http://grader-ds-101:8888", "display": False, "oauth_no_confirm": True},
        "sql-201": {"url": "http://grader-sql-201:8888", "display": False, "oauth_no_confirm": True}}
    roles = hub["loadRoles"]
    assert roles["server"]["scopes"] == ["inherit"]
    assert {k: v for k, v in roles["formgrade-ds-101"].items() if k != "description"} == {
        "groups": ["formgrade-ds-101"], "scopes": ["access:services!service=ds-101"]}
    assert {k: v for k, v in roles["nbgrader-sql-201"].items() if k != "description"} == {
        "groups": ["nbgrader-sql-201"], "scopes": ["list:services", "read:services!service=sql-201"]}
    assert {k: v for k, v in roles["grader-ds-101"].items() if k != "description"} == {
        "services": ["ds-101"],
        "scopes": ["read:users:groups!user=grader-ds-101", "read:users:name!user=grader-ds-101"]}
    assert set(roles) == {"server", "formgrade-ds-101", "nbgrader-ds-101", "grader-ds-101",
                          "formgrade-sql-201", "nbgrader-sql-201", "grader-sql-201"}


def _paths(values, prefix=()):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _paths(value, prefix + (key,))
        else:
            yield prefix + (key,), value
