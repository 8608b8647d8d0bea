"""kill -9 at named points of a full run; the next run converges, the one after does nothing.

Each scenario runs the whole chain of a project (stand-in images built with
BuildKit and pushed to the dev registry, the classroom chart on the real z2jh
chart packaged and published to a bucket of the GCS emulator, the hub node
labelled and the release deployed with the real helm to the dev control plane,
helm and kubectl under the recorder of tests/integration/doubles) with
CLASSTOOLS_CRASH_AT naming a point (tasks/run/runlock.py): when the run reaches it,
it SIGKILLs its whole process group, children included, as `kill -9 -PGID`
would (`watch:` points are kills from outside: the test kills the group as soon
as helm's release record says pending). Then:

- the killed run left no secret on disk (outside the secrets file itself) and,
  once the next run is through, no temporary file, scratch directory or state
  temp of the killed one;
- the next run (no crash) succeeds and converges: the same image tags as an
  uninterrupted run, the chart version in doit's state is in the bucket's
  index exactly once with its archive, and the release runs that version;
- the run after that executes nothing.

Points before the images exist in the registry use a registry path of their
own (tags are content-addressed, so the kill would not be reached otherwise):
their chart version differs from the reference's (it carries the image
references) and is checked for consistency instead of equality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, Project
from tests.integration.test_chart import _classroom, _ran
from tests.integration.test_release import CHART, Cluster, _on_cluster

pytestmark = pytest.mark.integration

IMAGES = ("base", "notebook", "local", "db")
UPGRADE = "upgrade:"  # a scenario that deploys first, edits the config, then is killed at the point
# (point, what the run is doing when it dies, needs images not yet in the registry)
POINTS = [
    ("point:secrets:written", "secrets: the new secrets file written, not yet renamed", True),
    ("point:data-manifest:written", "data:upload: the data bucket's manifest written, not yet renamed", False),
    ("point:build:base", "image:base: its BuildKit build client just started", True),
    ("point:image:base:built", "image:base: built, not pushed", True),
    ("point:push:base", "image:base: pushing", True),
    ("point:image:base:pushed", "image:base: pushed, result not recorded", True),
    ("point:build:notebook", "image:notebook: its build client just started (base done)", True),
    ("point:image:db:pushed", "image:db: pushed, result not recorded", True),
    ("exec:*helm package*", "chart:package: helm package starting", False),
    ("rename:*/classroom-*.tgz", "chart:package: archive written, not yet renamed into place", False),
    ("send:application/gzip", "chart:publish: uploading the archive to the bucket", False),
    ("send:text/yaml", "chart:publish: writing the bucket's index.yaml", False),
    ("exec:*kubectl* label *", "cluster:hub-node: labelling the node", False),
    ("watch:pending-install", "release:jupyterhub: helm installing, killed by the test as soon as helm records "
     "the release pending-install", False),
    ("upgrade:watch:pending-upgrade", "release:jupyterhub: helm upgrading a deployed release (admin_users "
     "edited), killed by the test as soon as helm records the revision pending-upgrade", False),
    ("point:helm:upgraded", "release:jupyterhub: helm done, task not finished", False),
    ("point:state:written", "doit's state: temp file written, not synced", False),
    ("point:state:synced", "doit's state: temp file synced, not renamed", False),
    ("point:state:renamed", "doit's state: renamed, directory not synced", False),
]


class World:
    """What a run of one project leaves in the services: tags, chart versions, the release."""

    def __init__(self, project: Project, bucket: str, cluster: Cluster, gcs_emulator: str):
        self.project, self.bucket, self.cluster, self.gcs = project, bucket, cluster, gcs_emulator

    def state(self) -> dict:
        return json.loads(self.project.dep_file.read_text())

    def tags(self) -> dict:
        state = self.state()
        return {name: state[f"image:{name}"]["_values_:"]["tag"] for name in IMAGES if f"image:{name}" in state}

    def chart_version(self) -> str:
        return self.state()["chart:publish"]["_values_:"]["version"]

    def index_versions(self) -> list[str]:
        from google.cloud import storage
        client = storage.Client.create_anonymous_client()
        index = yaml.safe_load(client.bucket(self.bucket).blob("index.yaml").download_as_text())
        return [entry["version"] for entry in index["entries"][CHART]]

    def has_archive(self, version: str) -> bool:
        from google.cloud import storage
        client = storage.Client.create_anonymous_client()
        return client.bucket(self.bucket).get_blob(f"{CHART}-{version}.tgz") is not None

    def datasets(self) -> dict:
        """<dataset>/<path> -> bytes of every local dataset of data.yaml, as the bucket should hold them."""
        files = {}
        for dataset in yaml.safe_load((self.project.config / "data.yaml").read_text())["datasets"]:
            root = self.project.root / dataset["source"]
            files.update({f"{dataset['name']}/{p.relative_to(root)}": p.read_bytes()
                          for p in root.rglob("*") if p.is_file()})
        return files

    def data_bucket(self) -> dict:
        """The data bucket (profile local's directory) without its manifest."""
        root = self.project.root / ".classroom" / "buckets" / "data"
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and not str(p.relative_to(root)).startswith(".classroom/")}

    def release(self) -> tuple[str, str]:
        [status] = json.loads(self.cluster.helm("list", "--deployed", "--failed", "--pending", "--superseded", "-o", "json").stdout)
        return status["status"], status["chart"]


def _new_bucket() -> str:
    from google.cloud import storage
    client = storage.Client.create_anonymous_client()
    client.project = "classroom-test"
    name = f"charts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return name


def _world(root: Path, prefix: str, registry, jupyterhub_chart, kubeconfig, kubectl_bin, helm_bin,
           gcs_emulator, storage_class, sources: Path) -> World:
    project = Project(root / "classroom")
    shutil.copytree(sources / "config", project.config)
    bucket = _new_bucket()
    _classroom(project, registry, bucket, jupyterhub_chart, prefix)
    shutil.rmtree(project.root / "helm")
    shutil.copytree(sources / "helm", project.root / "helm")
    cluster = Cluster(kubeconfig, kubectl_bin, helm_bin, f"rel-{uuid.uuid4().hex[:8]}")
    _on_cluster(project, cluster, kubeconfig, kubectl_bin, helm_bin, root)
    # The exchange on the dev control plane's storage class (its provisioner binds any claim).
    text = (project.config / "classroom.yaml").read_text()
    text = re.sub(r"(?m)^(\s*storage_class:) \S+", rf"\g<1> {storage_class}", text, count=1)
    project.write("classroom.yaml", text.replace("helm_timeout: 600", "helm_timeout: 240"))
    (root / "tmp").mkdir()
    base_env = project.env
    project.env = lambda **extra: base_env(**{"TMPDIR": str(root / "tmp"), **extra})
    return World(project, bucket, cluster, gcs_emulator)


def _remove(world: World):
    cluster = world.cluster
    cluster.helm("uninstall", cluster.release, "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", cluster.namespace, "--wait=false", "--ignore-not-found")
    cluster.kubectl("delete", "pv", f"{cluster.namespace}-classroom-exchange", "--ignore-not-found", check=False)
    cluster.kubectl("label", "nodes", "--all", f"{cluster.label_key}-", check=False)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """The config and chart every project of this module starts from, copied once: the same
    inputs must give the same chart version, whatever happens to the checkout meanwhile."""
    root = tmp_path_factory.mktemp("sources")
    shutil.copytree(REPO / "config", root / "config")
    shutil.copytree(REPO / "helm", root / "helm")
    return root


@pytest.fixture(scope="module")
def prefix() -> str:
    """The registry path shared by the reference and the points after the image stage."""
    return f"k{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sources, prefix, registry, gcs_emulator, jupyterhub_chart, kubeconfig, kubectl_bin,
              helm_bin, kube_cluster):
    """An uninterrupted run: the tags and chart version every crashed run must converge to."""
    world = _world(tmp_path_factory.mktemp("reference"), prefix, registry, jupyterhub_chart, kubeconfig,
                   kubectl_bin, helm_bin, gcs_emulator, kube_cluster["storage_class"], sources)
    try:
        started = time.monotonic()
        world.project.doit(check=True)
        world.seconds = time.monotonic() - started
        assert world.release() == ("deployed", f"{CHART}-{world.chart_version()}")
        yield world
    finally:
        _remove(world)


def _kill_when_pending(world: World) -> threading.Thread:
    """A kill from outside, at a state rather than a line of code: as soon as the release's
    record says pending (helm is installing or upgrading it), SIGKILL the process group of this
    project's doit, helm with it."""
    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            listed = world.cluster.helm("list", "--pending", "-o", "json", check=False)
            if listed.returncode == 0 and json.loads(listed.stdout or "[]"):
                for pid in _doit_pids(world.project.root):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _doit_pids(root: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"doit" in b" ".join(argv) and str(root).encode() in argv:
                pids.append(int(entry.name))
    return pids


def _files_holding(roots: list[Path], values: list[str], allowed: set[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path in allowed or not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(value.encode() in data for value in values):
                found.append(str(path))
    return found


def _secret_values(project: Project) -> list[str]:
    lines = project.secrets_file.read_text().splitlines() if project.secrets_file.exists() else []
    return [line.split("=", 1)[1] for line in lines if "=" in line and not line.startswith("#")]


@pytest.mark.parametrize("point, doing, fresh_images", POINTS,
                         ids=[re.sub(r"[^A-Za-z0-9]+", "-", p[0]).strip("-") for p in POINTS])
def test_a_kill_at_any_point_converges_on_the_next_run(point, doing, fresh_images, reference, sources, prefix, tmp_path,
                                                       registry, gcs_emulator, jupyterhub_chart, kubeconfig,
                                                       kubectl_bin, helm_bin, kube_cluster, record_property):
    world = _world(tmp_path, f"k{uuid.uuid4().hex[:8]}" if fresh_images else prefix, registry,
                   jupyterhub_chart, kubeconfig, kubectl_bin, helm_bin, gcs_emulator, kube_cluster["storage_class"],
                   sources)
    project, scratch = world.project, tmp_path / "tmp"
    try:
        if point.startswith(UPGRADE):  # first deployed, then an edit that only the release sees
            project.doit(check=True)
            text = (project.config / "classroom.yaml").read_text()
            project.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [crash-admin]", 1))
        started = time.monotonic()
        crash_at = point.removeprefix(UPGRADE)
        watcher = _kill_when_pending(world) if crash_at.startswith("watch:") else None
        killed = project.doit(env=project.env(CLASSTOOLS_CRASH_AT=crash_at))
        if watcher:
            watcher.join()
        assert killed.returncode == -9, f"{point} ({doing}) was not reached:\n{killed.stdout[-3000:]}"
        assert "Traceback" not in killed.stderr
        listed = world.cluster.helm("list", "--deployed", "--failed", "--pending", "--superseded", "-o", "json")
        release_after_kill = [r["status"] for r in json.loads(listed.stdout)] or ["none"]
        left = [p.name for p in scratch.iterdir()]
        assert len(left) == 1 and left[0].startswith("classtools-run-"), left  # the killed run's scratch

        rerun = project.doit()
        assert rerun.returncode == 0, (f"after a kill at {point}:\n{rerun.stdout[-3000:]}\n{rerun.stderr[-2000:]}\n"
                                       f"{world.cluster.kubectl('get', 'pods,pvc,events', '-n', world.cluster.namespace, check=False).stdout}")
        assert "Traceback" not in rerun.stdout + rerun.stderr
        assert "cleaned up after an interrupted run" in rerun.stderr
        noop = project.doit(check=True)
        assert _ran(noop) == set(), f"after a kill at {point}, the run after the rerun did:\n{noop.stdout}"
        elapsed = time.monotonic() - started

        # Converged: same tags, the state's chart version published once with its archive and deployed.
        assert world.tags() == reference.tags()
        version = world.chart_version()
        if not fresh_images:
            assert version == reference.chart_version()
        assert world.index_versions() == [version] and world.has_archive(version)
        assert world.release() == ("deployed", f"{CHART}-{version}")
        assert world.data_bucket() == world.datasets(), "the data bucket holds every dataset's files"
        if point.startswith(UPGRADE):
            assert world.cluster.hub_values()["hub"]["config"]["Authenticator"]["admin_users"] == ["crash-admin"]

        # Nothing of the killed run is left: no scratch, no state or secrets temp, no secret anywhere.
        assert list(scratch.iterdir()) == []
        temps = [p.name for p in project.root.rglob("*.tmp")]
        assert temps == [], temps
        secrets = _secret_values(project)
        assert len(secrets) == 3
        holding = _files_holding([project.root, scratch], secrets, {project.secrets_file})
        assert holding == [], f"secret values on disk after a kill at {point}: {holding}"
        upgrades = [c for c in map(json.loads, (project.double_dir / "calls.jsonl").read_text().splitlines())
                    if c["tool"] == "helm" and c["argv"][:1] == ["upgrade"]]
        assert upgrades and all(f["on_disk"] is False for c in upgrades for f in c["files"].values())
        record_property("crash", json.dumps({"point": point, "doing": doing, "seconds": round(elapsed, 1),
                                             "release_after_kill": release_after_kill,
                                             "rerun_ran": sorted(_ran(rerun))}))
        print(f"CRASH {point} | {doing} | release after the kill: {', '.join(release_after_kill)} | "
              f"rerun ran {len(_ran(rerun))}: {' '.join(sorted(_ran(rerun)))} | no-op ran 0 | {elapsed:.0f}s")
    finally:
        _remove(world)
