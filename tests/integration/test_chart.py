"""The chart stage with real helm, the real GCS client and the GCS emulator.

No chart repository is reachable here, so the JupyterHub dependency is the
real z2jh chart 4.4.0 from ../shared/upstream (fixture `jupyterhub_chart`),
named in config as a local copy: helm lint, package and template run on the
chart that deploys.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.integration.conftest import JUPYTERHUB_VERSION, use_jupyterhub_chart

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def _ran(result) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)$", result.stdout, re.M)}


def _classroom(project, registry, bucket, jupyterhub_chart, prefix):
    """The project with the stand-in images, a registry path of its own, the bucket and the real z2jh."""
    shutil.copytree(HERE / "images", project.root / "images")
    shutil.copytree(REPO / "helm", project.root / "helm")
    text = (project.config / "classroom.yaml").read_text()
    text = text.replace('registry: ""', f'registry: "{registry}/{prefix}"')
    text = text.replace("charts: file://.classroom/buckets/charts", f"charts: gs://{bucket}")
    project.write("classroom.yaml", use_jupyterhub_chart(text, jupyterhub_chart))
    return project


@pytest.fixture
def classroom(project, registry, bucket, jupyterhub_chart):
    _classroom(project, registry, bucket, jupyterhub_chart, f"c{uuid.uuid4().hex[:8]}")
    result = project.doit(check=True)
    assert {"chart:package", "chart:publish"} <= _ran(result)
    project.bucket = bucket
    return project


def _state(project, task):
    return json.loads(project.dep_file.read_text())[task]["_values_:"]


def _helm(*args, helm_bin, cwd=None):
    return subprocess.run([helm_bin, *args], check=True, capture_output=True, text=True, cwd=cwd)


def test_published_chart_installs_from_the_bucket_with_the_image_tags(classroom, helm_bin, gcs_emulator,
                                                                      tmp_path):
    version = _state(classroom, "chart:publish")["version"]
    notebook = _state(classroom, "image:notebook")["ref"]
    db = _state(classroom, "image:db")["ref"]
    env_home = {"HELM_CONFIG_HOME": str(tmp_path / "h"), "HELM_CACHE_HOME": str(tmp_path / "c"),
                "HELM_DATA_HOME": str(tmp_path / "d")}
    run = lambda *a: subprocess.run([helm_bin, *a], check=True, capture_output=True, text=True,
                                    env={**__import__("os").environ, **env_home})
    run("repo", "add", "classroom-test", f"{gcs_emulator}/{classroom.bucket}")
    (tmp_path / "pulled").mkdir()
    run("pull", "classroom-test/classroom", "--version", version, "-d", str(tmp_path / "pulled"))
    data = (tmp_path / "pulled" / f"classroom-{version}.tgz").read_bytes()
    assert data == Path(_state(classroom, "chart:package")["path"]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        values = yaml.safe_load(tar.extractfile("classroom/values.yaml"))
    image = values["jupyterhub"]["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == notebook
    sidecars = {c["name"]: c["image"] for c in values["jupyterhub"]["singleuser"]["extraContainers"]}
    assert sidecars["db"] == db
    rendered = run("template", "t", str(tmp_path / "pulled" / f"classroom-{version}.tgz")).stdout
    assert notebook.rsplit(":", 1)[1] in rendered
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    hub = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub")
    assert hub["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"/k8s-hub:{JUPYTERHUB_VERSION}"), \
        "the packaged dependency is the real z2jh"
    # every rendered object is valid Kubernetes (offline schemas; no API server here)
    import sys
    check = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", "-"],
                           input=rendered, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_package_is_byte_identical_in_another_directory(classroom, tmp_path):
    from tests.conftest import Project
    other = Project(tmp_path / "elsewhere" / "classroom")
    shutil.copytree(classroom.config, other.config)
    shutil.copytree(classroom.root / "images", other.root / "images")
    shutil.copytree(classroom.root / "helm", other.root / "helm")
    other.doit("chart:package", check=True)
    mine, theirs = _state(classroom, "chart:package"), _state(other, "chart:package")
    assert mine["version"] == theirs["version"]
    assert Path(mine["path"]).read_bytes() == Path(theirs["path"]).read_bytes()


def test_publishing_again_changes_nothing_and_versions_accumulate(classroom, gcs_emulator):
    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    first_version = _state(classroom, "chart:publish")["version"]

    again = classroom.doit("forget", "chart:publish")
    assert again.returncode == 0
    result = classroom.doit("chart:publish", check=True)
    assert "already published" in result.stdout

    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v2"))
    result = classroom.doit(check=True)
    assert _ran(result) == {"image:notebook", "image:local", "chart:package", "chart:publish"}
    second_version = _state(classroom, "chart:publish")["version"]
    assert second_version != first_version
    index = yaml.safe_load(bucket.blob("index.yaml").download_as_text())
    assert {e["version"] for e in index["entries"]["classroom"]} == {first_version, second_version}
    assert bucket.get_blob("index.yaml").cache_control == "no-cache"


def test_admin_users_edit_makes_no_chart_work(classroom):
    text = (classroom.config / "classroom.yaml").read_text()
    classroom.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    assert _ran(classroom.doit(check=True)) == set()


def test_conflicting_upload_is_refused_and_the_index_kept(classroom, gcs_emulator):
    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    index_before = bucket.blob("index.yaml").download_as_bytes()
    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v3"))
    package = classroom.doit("chart:package", check=True)
    assert "chart:package:" in package.stdout
    name = Path(_state(classroom, "chart:package")["path"]).name
    bucket.blob(name).upload_from_string(b"someone else's bytes")
    result = classroom.doit("chart:publish")
    assert result.returncode != 0
    assert f"chart:publish: gs://{classroom.bucket}/{name} exists with other content" in result.stdout
    assert bucket.blob("index.yaml").download_as_bytes() == index_before


def test_missing_bucket_is_a_clear_failure(project, registry, jupyterhub_chart):
    _classroom(project, registry, f"nobucket-{uuid.uuid4().hex[:8]}", jupyterhub_chart, "nb")
    result = project.doit()
    assert result.returncode != 0
    assert re.search(r"chart:publish: bucket gs://nobucket-\w+ does not exist", result.stdout)
    assert "Traceback" not in result.stdout + result.stderr


def test_lint_errors_fail_the_package(classroom):
    template = classroom.root / "helm" / "classroom" / "templates" / "broken.yaml"
    template.write_text("kind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n")
    result = classroom.doit("chart:package")
    assert result.returncode != 0
    assert "chart:package: helm lint failed" in result.stdout


# No chart repository answers on this port: the same on a machine with internet (CI).
UNREACHABLE_REPOSITORY = "http://127.0.0.1:9/helm-chart/"
# A public deployment logs in through LDAP (gke with dummy login is refused).
GKE = f"""profile: gke
images: {{registry: europe-docker.pkg.dev/uni-ds/classroom}}
buckets: {{charts: gs://uni-ds-charts, data: gs://uni-ds-data}}
gcp: {{project: uni-ds, cluster: classroom, region: europe-west1}}
hub: {{domain: hub.uni.example.edu, static_ip_name: ds-hub}}
auth: {{type: ldap, ldap: {{server: ldap.uni.example.edu, bind_dn_templates: ["uid={{username}},dc=uni,dc=example,dc=edu"]}}}}
"""


def _without_upstream_chart(project, registry, prefix):
    shutil.copytree(HERE / "images", project.root / "images")
    shutil.copytree(REPO / "helm", project.root / "helm")
    text = (project.config / "classroom.yaml").read_text()
    text = re.sub(r"(?m)^(\s*jupyterhub_repository:) .*$", rf"\g<1> {UNREACHABLE_REPOSITORY}", text)
    text = re.sub(r"(?m)^(\s*jupyterhub_version:) .*$", rf"\g<1> {JUPYTERHUB_VERSION}", text)
    project.write("classroom.yaml", text.replace('registry: ""', f'registry: "{registry}/{prefix}"'))


def test_local_profile_without_upstream_chart_skips_chart_tasks_only(project, registry):
    _without_upstream_chart(project, registry, "skip")
    result = project.doit()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"chart:package: skipped: the JupyterHub chart {JUPYTERHUB_VERSION} is not available from "
            f"{UNREACHABLE_REPOSITORY}") in result.stdout
    assert "set chart.jupyterhub_chart in config/classroom.yaml" in result.stdout
    assert "chart:publish: skipped" in result.stdout
    assert {"image:base", "image:notebook", "image:local", "image:db"} <= _ran(result)
    assert _ran(project.doit(check=True)) == set(), "a skip is remembered: no-op runs stay no-ops"


def test_upstream_chart_appearing_in_the_cache_resumes_the_chart_tasks(project, registry, jupyterhub_chart):
    _without_upstream_chart(project, registry, "resume")
    assert "chart:package: skipped" in project.doit(check=True).stdout
    cache = project.root / ".classroom" / "charts" / "upstream"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(jupyterhub_chart, cache / jupyterhub_chart.name)
    result = project.doit(check=True)
    assert _ran(result) == {"chart:package", "chart:publish"}
    assert "chart:publish: published: classroom-" in result.stdout
    packaged = Path(_state(project, "chart:package")["path"])
    with tarfile.open(packaged) as tar:
        dependency = tar.extractfile(f"classroom/charts/{jupyterhub_chart.name}").read()
    assert dependency == jupyterhub_chart.read_bytes(), "the cached z2jh is the one packaged"


def test_gke_profile_without_upstream_chart_is_an_error_naming_repository_and_key(project, helm_bin):
    from tasks.chart import factory as chart
    from tasks.config.loader import load
    from tasks.errors import run_reporting_failure
    project.write("classroom.yaml", GKE + f"chart: {{jupyterhub_repository: '{UNREACHABLE_REPOSITORY}'}}\n")
    shutil.copytree(REPO / "helm", project.root / "helm")
    images = {"ref": "europe-docker.pkg.dev/uni-ds/classroom/x:1", "tag": "1", "digest": "sha256:" + "0" * 64}
    config = load(project.config)
    version = config.classroom["chart"]["jupyterhub_version"]  # the default, whatever it is
    package = SimpleNamespace(name="chart:package")  # the task doit would pass
    message = str(run_reporting_failure(chart.package_chart, config, task=package, notebook=images, db=images))
    assert (f"chart:package: the JupyterHub chart {version} is not available from {UNREACHABLE_REPOSITORY}"
            in message)
    assert "set chart.jupyterhub_chart in config/classroom.yaml" in message


def test_corrupt_index_stops_publishing_before_any_upload(classroom, gcs_emulator):
    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    bucket.blob("index.yaml").upload_from_string(b"entries: [unclosed\n")
    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v4"))
    result = classroom.doit()
    assert result.returncode != 0
    assert f"chart:publish: gs://{classroom.bucket}/index.yaml is corrupt" in result.stdout
    name = Path(_state(classroom, "chart:package")["path"]).name
    assert bucket.get_blob(name) is None, "nothing may be half-published"
    assert bucket.blob("index.yaml").download_as_bytes() == b"entries: [unclosed\n"


def test_no_credentials_is_a_clear_failure(classroom, tmp_path):
    classroom.doit("forget", "chart:publish", check=True)
    env = {k: v for k, v in classroom.env().items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(HOME=str(tmp_path), NO_GCE_CHECK="True", CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
    result = classroom.doit("chart:publish", env=env)
    assert result.returncode != 0
    assert (f"chart:publish: no Google Cloud credentials to write gs://{classroom.bucket}: run "
            "`gcloud auth application-default login`") in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_tls_and_domain_belong_to_the_release_not_the_chart(classroom):
    text = (classroom.config / "classroom.yaml").read_text()
    text = text.replace('domain: ""', "domain: hub.example.edu").replace("mode: none", "mode: autohttps")
    text = text.replace("dummy_trial: false", "dummy_trial: true")  # a public hub with dummy login
    classroom.write("classroom.yaml", text.replace('email: ""', "email: staff@example.edu"))
    assert _ran(classroom.doit(check=True)) == set()


# ---- the bucket's index: read back, looked at by the up-to-date check, faults ------------------------

def test_a_version_missing_from_the_index_is_published_again_by_the_next_run(classroom, gcs_emulator):
    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    published = _state(classroom, "chart:publish")
    index = yaml.safe_load(bucket.blob("index.yaml").download_as_text())
    assert [e["version"] for e in index["entries"]["classroom"]] == [published["version"]]
    assert published["index"] == str(bucket.get_blob("index.yaml").generation), "the generation read back"

    # Someone else's publisher rewrote the index without our entry (the loss of issue 10).
    index["entries"]["classroom"] = []
    bucket.blob("index.yaml").upload_from_string(yaml.safe_dump(index))
    result = classroom.doit(check=True)
    assert _ran(result) == {"chart:publish"}
    assert (f"chart:publish: gs://{classroom.bucket}/index.yaml does not list classroom {published['version']}; "
            f"publishing classroom {published['version']} again") in result.stdout
    index = yaml.safe_load(bucket.blob("index.yaml").download_as_text())
    assert [(e["version"], e["digest"]) for e in index["entries"]["classroom"]] == \
        [(published["version"], published["digest"])]
    # Another writer that keeps our entry changes the generation, not the answer.
    bucket.blob("index.yaml").upload_from_string(yaml.safe_dump({**index, "generated": "later"}))
    assert _ran(classroom.doit(check=True)) == set()
    assert _ran(classroom.doit(check=True)) == set()


def _closed_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_gcs_endpoint_down_is_one_line_naming_the_service_and_address(classroom, gcs_emulator):
    import time

    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    index_before = bucket.blob("index.yaml").download_as_bytes()
    down = f"http://127.0.0.1:{_closed_port()}"
    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v5"))
    classroom.doit("chart:package", check=True)
    for args in (("chart:publish",), ()):  # a new version, then a run where nothing else changed
        started = time.monotonic()
        result = classroom.doit(*args, env=classroom.env(STORAGE_EMULATOR_HOST=down))
        elapsed = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Traceback" not in output
        expected = (f"chart:publish: cannot reach the GCS emulator at {down} (STORAGE_EMULATOR_HOST) to open "
                    f"gs://{classroom.bucket} (connection refused;")
        assert [line for line in output.splitlines() if "cannot reach" in line and "gave up" in line] == \
            [line for line in output.splitlines() if line.startswith(expected)], output
        assert expected in result.stdout, output
        print(f"GCS endpoint down: doit {' '.join(args)} failed in {elapsed:.1f}s")
    assert bucket.blob("index.yaml").download_as_bytes() == index_before
    name = Path(_state(classroom, "chart:package")["path"]).name
    assert bucket.get_blob(name) is None, "nothing half-published"


@pytest.mark.parametrize("index_text, problem", [
    ("apiVersion: v1\nentries:\n  classroom: '0.1.0'\n",
     "entries.classroom is a string, expected a list of chart versions"),
    ("apiVersion: v1\nentries: [classroom]\n", "entries is a list, expected a mapping of chart name to versions"),
    ("- apiVersion: v1\n", "the document is a list, expected a mapping with apiVersion and entries"),
])
def test_index_of_another_shape_stops_publishing_before_any_upload(classroom, gcs_emulator, index_text, problem):
    from google.cloud import storage
    bucket = storage.Client.create_anonymous_client().bucket(classroom.bucket)
    bucket.blob("index.yaml").upload_from_string(index_text.encode())
    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v6"))
    result = classroom.doit()
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert (f"chart:publish: gs://{classroom.bucket}/index.yaml is not a helm repository index: {problem}; "
            "it was left as it is") in result.stdout
    name = Path(_state(classroom, "chart:package")["path"]).name
    assert bucket.get_blob(name) is None, "nothing may be half-published"
    assert bucket.blob("index.yaml").download_as_bytes() == index_text.encode()


# ---- parsing the index (pure) ----------------------------------------------------------------------

ENTRY = {"apiVersion": "v2", "name": "classroom", "version": "0.1.0-cabc", "digest": "d" * 64,
         "created": "2026-11-27T10:00:00.000000Z", "urls": ["https://example.org/classroom-0.1.0-cabc.tgz"]}


@pytest.mark.parametrize("text, problem", [
    ("entries:\n  classroom:\n    - 1\n", "entries.classroom[0] is a number, expected a mapping"),
    ("entries:\n  classroom:\n    - {name: classroom, version: 1.0}\n",
     "entries.classroom[0].version is a number, expected a version string"),
    ("entries:\n  classroom:\n    - {name: classroom}\n",
     "entries.classroom[0].version is empty, expected a version string"),
    ("apiVersion: v2\nentries: {}\n", "apiVersion is 'v2', expected 'v1'"),
    ("just text\n", "the document is a string, expected a mapping"),
])
def test_merge_refuses_an_index_of_another_shape_naming_the_object_and_key(text, problem):
    from tasks.chart import repo as chart_repo
    with pytest.raises(chart_repo.ChartRepoError) as refused:
        chart_repo.merge_index(text, ENTRY, "gs://b")
    message = str(refused.value)
    assert message.startswith("gs://b/index.yaml is not a helm repository index: ")
    assert problem in message and "\n" not in message


def test_merge_refuses_aliases_and_oversized_indexes():
    from tasks.chart import repo as chart_repo
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nentries: {classroom: [*b, *b]}\n"
    with pytest.raises(chart_repo.ChartRepoError, match=r"^gs://b/index\.yaml is corrupt \(.*alias"):
        chart_repo.merge_index(bomb, ENTRY, "gs://b")
    with pytest.raises(chart_repo.ChartRepoError, match=r"^gs://b/index\.yaml is \d+ bytes, expected at most"):
        chart_repo.merge_index(" " * (chart_repo.MAX_INDEX_BYTES + 1), ENTRY, "gs://b")


def test_merge_keeps_what_helm_wrote_and_adds_the_entry():
    from tasks.chart import repo as chart_repo
    helm_written = ("apiVersion: v1\nentries:\n  other:\n  - name: other\n    version: 1.2.3\n"
                    "    created: 2025-01-02T03:04:05.678Z\n    digest: abc\n    urls: [o.tgz]\n"
                    "  classroom: null\ngenerated: 2025-01-02T03:04:05Z\n")
    text, changed = chart_repo.merge_index(helm_written, ENTRY, "gs://b")
    assert changed
    index = yaml.safe_load(text)
    # helm's timestamps stay the text helm wrote (not re-serialised as YAML timestamps)
    assert index["entries"]["other"][0]["created"] == "2025-01-02T03:04:05.678Z"
    assert chart_repo.listed(index, "classroom", ENTRY["version"], ENTRY["digest"])
    assert chart_repo.merge_index(text, ENTRY, "gs://b") == (None, False)
    for empty in (None, "", "\n"):
        assert chart_repo.listed(yaml.safe_load(chart_repo.merge_index(empty, ENTRY, "gs://b")[0]),
                                 "classroom", ENTRY["version"], ENTRY["digest"])


def test_directory_repository_remembers_the_index_it_confirmed(tmp_path):
    """The file:// bucket of the local profile: the up-to-date check needs no parsing while the
    index is the one the entry was read back from, and sees a rewrite that dropped it."""
    from tasks.chart import repo as chart_repo
    repo = chart_repo.DirectoryRepository(tmp_path / "charts")
    other = {**ENTRY, "version": "0.1.0-cother", "digest": "e" * 64}
    assert repo.add_to_index(ENTRY) == (True, 0)
    token = repo.confirm(ENTRY)
    assert token is not None and repo.confirm(other) is None
    assert repo.still_lists("classroom", ENTRY["version"], ENTRY["digest"], token) == (True, "")
    assert repo.still_lists("classroom", ENTRY["version"], "f" * 64, None)[0] is False  # another digest
    repo.add_to_index(other)  # someone else's version: a new index that still lists ours
    assert repo.still_lists("classroom", ENTRY["version"], ENTRY["digest"], token) == (True, "")
    index = tmp_path / "charts" / "index.yaml"
    index.write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {"classroom": [other]}}))
    assert repo.still_lists("classroom", ENTRY["version"], ENTRY["digest"], token) == \
        (False, f"file://{tmp_path / 'charts'}/index.yaml does not list classroom {ENTRY['version']}")
    index.unlink()
    assert repo.still_lists("classroom", ENTRY["version"], ENTRY["digest"], token)[0] is False
