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
    from tasks import chart
    from tasks.config import load
    project.write("classroom.yaml", GKE + f"chart: {{jupyterhub_repository: '{UNREACHABLE_REPOSITORY}'}}\n")
    shutil.copytree(REPO / "helm", project.root / "helm")
    images = {"ref": "europe-docker.pkg.dev/uni-ds/classroom/x:1", "tag": "1", "digest": "sha256:" + "0" * 64}
    config = load(project.config)
    version = config.classroom["chart"]["jupyterhub_version"]  # the default, whatever it is
    message = str(chart.package_chart(config, notebook=images, db=images))
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
