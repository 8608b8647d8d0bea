"""The pure specs against the project's real files, and the chart repository on disk.

The spec modules' own unit tests (test_chartspec.py, test_releasespec.py,
test_imagespec.py, ...) build their inputs in memory and read no file.  These
check what only the files can say: the real chart archive is the same from two
processes at different times, the chart's templates ask only for names the
contract writes, the images use the contract's data path, the committed config
makes release values, and the directory chart repository (an adapter) never
overwrites an index or an archive.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tasks import contract
from tasks.chart import spec as chartspec
from tasks.chart.repo import ChartRepoError, DirectoryRepository
from tasks.config.loader import load
from tasks.release import spec as releasespec
from tests.unit.test_chartspec import ENTRY, _packaged, _paths

# The chart's archive from the real chart sources, packaged values and version: run in a fresh
# interpreter each time, so nothing of one process (hash seed, clock, time zone, umask) is shared.
_ARCHIVE_SCRIPT = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
os.umask(int(sys.argv[2], 8))
from tests.unit.test_chartspec import IMAGES, _config
from tasks.chart import spec as chartspec
root = Path(sys.argv[1]) / "helm" / "classroom"
sources = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
values = chartspec.packaged_values(_config(), IMAGES)
version = chartspec.chart_version("0.1.0", sources, values, "4.4.0", "d" * 64)
files = chartspec.chart_files(sources, version, "4.4.0", values, ("jupyterhub-4.4.0.tgz", b"dependency"))
sys.stdout.buffer.write(chartspec.archive(files, "classroom"))
"""


def test_archive_is_the_same_from_separate_processes_at_different_times():
    import os
    import subprocess
    import sys
    import time
    repo = Path(__file__).resolve().parents[2]

    def build(hash_seed, time_zone, umask):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TZ": time_zone}
        return subprocess.run([sys.executable, "-c", _ARCHIVE_SCRIPT, str(repo), umask], env=env,
                              capture_output=True, check=True).stdout

    first = build("1", "UTC", "022")
    time.sleep(1.5)  # a later second: a timestamp anywhere in the archive would differ
    second = build("2", "Pacific/Kiritimati", "077")

    assert first[:2] == b"\x1f\x8b" and len(first) > 1000  # a gzip stream with the chart in it
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert "classroom/Chart.yaml" in tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {chartspec.FIXED_MTIME}


@pytest.mark.parametrize("corrupt", ["entries: [unclosed\n", "- just a list\n"])
def test_corrupt_index_is_never_overwritten(tmp_path, corrupt):
    repo = DirectoryRepository(tmp_path)
    (tmp_path / "index.yaml").write_text(corrupt)
    with pytest.raises(ChartRepoError, match="left as it is"):
        repo.add_to_index(ENTRY)
    assert (tmp_path / "index.yaml").read_text() == corrupt


def test_directory_repository_publishes_once_and_refuses_other_bytes(tmp_path):
    repo = DirectoryRepository(tmp_path / "charts")
    assert repo.upload_chart("c.tgz", b"one") is True
    assert repo.upload_chart("c.tgz", b"one") is False
    with pytest.raises(ChartRepoError, match="refusing to overwrite"):
        repo.upload_chart("c.tgz", b"two")
    assert (tmp_path / "charts" / "c.tgz").read_bytes() == b"one"


def test_no_list_is_set_by_both_the_package_and_the_release(project):
    """helm replaces lists: a list set in both places would silently lose the packaged one."""
    from tasks.config.loader import load
    packaged = {path for path, value in _paths(_packaged()) if isinstance(value, list)}
    variants = ["profile: local\n", """hub: {domain: h.example.edu, tls: {mode: ingress, email: a@example.edu}}
auth:
  type: ldap
  admin_users: [dean]
  ldap: {server: ldap.example.edu, search_user: "cn=hub,dc=example,dc=edu",
         user_search_base: "ou=people,dc=example,dc=edu", allowed_groups: ["cn=g,dc=example,dc=edu"]}
"""]
    for text in variants:
        project.write("classroom.yaml", text)
        released = {path for path, _ in _paths(releasespec.release_values(load(project.config), "203.0.113.7"))}
        assert released
        assert not {p for p in packaged if any(r[:len(p)] == p or p[:len(r)] == r for r in released)}


def test_the_chart_names_its_objects_only_from_the_contract():
    """Every name a template asks for is one chart_names writes, and every name written is used."""
    import re
    templates = "\n".join(p.read_text() for p in (Path(__file__).parents[2] / "helm" / "classroom" / "templates").glob("*"))
    asked = set(re.findall(r'"classroom\.objectName" \(list [$.\w]+ "(\w+)"\)', templates))
    grader_keys = set(re.findall(r'"classroom\.grader" \(list [$.\w]+ [$.\w]+ "(\w+)"\)', templates))
    names = contract.chart_names(["c"])
    assert asked == set(names) - {"graders"}
    assert grader_keys == set(names["graders"]["c"])
    # and no object is named by a literal
    object_names = re.findall(r"^metadata:\n  name: (.+)$", templates, re.M)
    assert object_names and all(name.startswith("{{") for name in object_names), object_names


def test_the_committed_config_makes_release_values(project):
    """The keys read here are the keys the config schema defines (with their defaults)."""
    config = load(project.config)
    values = releasespec.release_values(config)
    assert values["jupyterhub"]["hub"]["config"]["Authenticator"]["allow_existing_users"] is False
    assert values["jupyterhub"]["singleuser"]["memory"]["limit"] == config.classroom["resources"]["memory_limit"]


def test_the_images_and_the_start_script_use_the_contracts_data_path():
    """The local image bakes the datasets where the cluster mounts them; classroom-start links there."""
    images = Path(__file__).parents[2] / "images"
    dockerfile = (images / "local" / "Dockerfile").read_text()
    assert f"install -d -m 0755 {contract.DATA_DIR} " in dockerfile
    assert f"cp -R /tmp/datasets/. {contract.DATA_DIR}/" in dockerfile
    script = (images / "shared" / "classroom-start").read_text()
    assert f'os.environ.get("CLASSROOM_DATA_DIR") or "{contract.DATA_DIR}"' in script
    assert f'DATA_LINK = "{contract.DATA_LINK}"' in script
