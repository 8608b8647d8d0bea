"""Two projects publishing to one bucket at once lose nothing.

Two real processes, each a project of its own with its own config, run the
real publish code (tasks.chart.factory.publish_chart, as `doit chart:publish` does)
for 16 chart versions each against one bucket of the real GCS emulator
(fake-gcs-server, which refuses a stale `if_generation_match` with 412). Each
version must end up in the bucket's index, with its digest, readable by helm.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VERSIONS_PER_PROJECT = 16

# One publisher: packs its versions, says "ready", waits for "go" on stdin (so both
# start together), then publishes them one after the other with the real code.
WORKER = r"""
import hashlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tasks.chart import factory as chart
from tasks.chart import spec as chartspec
from tasks.config.loader import load
from tasks.errors import ClassroomError

project, label, count = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
config = load(project / "config")
out = project / ".classroom" / "charts"
out.mkdir(parents=True, exist_ok=True)
packages = []
for i in range(count):
    version = f"0.1.0-race.{label}.{i}"
    chart_yaml = f"apiVersion: v2\nname: classroom\nversion: {version}\ndescription: race {label} {i}\n"
    data = chartspec.archive({"Chart.yaml": chart_yaml.encode()}, "classroom")
    path = out / f"classroom-{version}.tgz"
    path.write_bytes(data)
    packages.append({"version": version, "path": str(path), "digest": hashlib.sha256(data).hexdigest()})
print("ready", flush=True)
sys.stdin.readline()
for package in packages:
    try:
        chart.publish_chart(config, package=package)
    except ClassroomError as exc:
        print(f"FAILED {package['version']}: {exc}", flush=True)
"""


def _project(root: Path, bucket: str) -> Project:
    shutil.copytree(REPO / "config", root / "config")
    project = Project(root)
    text = (project.config / "classroom.yaml").read_text()
    text = text.replace("charts: file://.classroom/buckets/charts", f"charts: gs://{bucket}")
    assert f"charts: gs://{bucket}" in text, "config/classroom.yaml no longer has buckets.charts"
    project.write("classroom.yaml", text)
    return project


def _start(project: Project, label: str) -> subprocess.Popen:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(REPO), str(project.root), label,
                               str(VERSIONS_PER_PROJECT)],
                              cwd=project.root, env=project.env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = worker.stdout.readline()
    assert line.strip() == "ready", f"publisher {label} did not start: {line}{worker.stdout.read()}"
    return worker


def test_two_projects_publishing_at_once_lose_no_version(tmp_path, bucket, gcs_emulator, helm_bin):
    from google.cloud import storage
    projects = {label: _project(tmp_path / label, bucket) for label in ("a", "b")}
    workers = {label: _start(project, label) for label, project in projects.items()}
    for worker in workers.values():
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = {}
    for label, worker in workers.items():
        outputs[label], _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, outputs[label]
    everything = "".join(outputs.values())
    assert "FAILED" not in everything and "Traceback" not in everything, everything
    assert len(re.findall(r"^chart:publish: published: ", everything, re.M)) == 2 * VERSIONS_PER_PROJECT

    # Every version each process published is in the index, with the digest of its archive.
    published = {}
    for project in projects.values():
        for path in (project.root / ".classroom" / "charts").glob("classroom-*.tgz"):
            published[path.name[len("classroom-"):-len(".tgz")]] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(published) == 2 * VERSIONS_PER_PROJECT
    blobs = storage.Client.create_anonymous_client().bucket(bucket)
    index = yaml.safe_load(blobs.blob("index.yaml").download_as_text())
    indexed = {entry["version"]: entry["digest"] for entry in index["entries"]["classroom"]}
    assert indexed == published, f"lost: {sorted(set(published) - set(indexed))}"
    for version in published:
        assert blobs.get_blob(f"classroom-{version}.tgz") is not None

    # What helm reads from the bucket lists them all too.
    home = {f"HELM_{kind}_HOME": str(tmp_path / "helm" / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")}
    env = {**os.environ, **home}
    subprocess.run([helm_bin, "repo", "add", "race", f"{gcs_emulator}/{bucket}"], env=env, check=True,
                   capture_output=True)
    found = subprocess.run([helm_bin, "search", "repo", "race/classroom", "--versions", "--devel", "-o", "yaml"],
                           env=env, check=True, capture_output=True, text=True).stdout
    assert {entry["version"] for entry in yaml.safe_load(found)} == set(published)
    conflicts = sum(int(n) for n in re.findall(r"index merged after (\d+) concurrent", everything))
    print(f"race: {len(published)} versions published by 2 processes, {len(published) - len(indexed)} lost, "
          f"{conflicts} index writes refused (412) and merged again")
