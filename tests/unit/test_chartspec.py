"""Pure parts of the chart stage: versions, archives, index merging."""

from __future__ import annotations

import io
import tarfile

import pytest
import yaml

from tasks import chartspec
from tasks.chart_repo import ChartRepoError, DirectoryRepository, merge_index

SOURCES = {
    "Chart.yaml": b"apiVersion: v2\nname: classroom\nversion: 0.1.0\ndependencies:\n"
                  b"- name: jupyterhub\n  version: 1.0.0\n  repository: https://hub.jupyter.org/helm-chart/\n",
    "values.yaml": b"classroom:\n  exchange:\n    size: 1Gi\njupyterhub:\n  singleuser:\n    image:\n"
                   b"      name: placeholder\n      tag: latest\n",
    "templates/a.yaml": b"kind: ConfigMap\n",
}
IMAGES = {"notebook": {"ref": "127.0.0.1:5000/c/notebook:abc"}, "db": {"ref": "127.0.0.1:5000/c/db:def"}}


def _version(**changes):
    inputs = dict(sources=SOURCES, values=chartspec.image_values(IMAGES), dep="4.2.0", digest="d" * 64)
    inputs.update(changes)
    return chartspec.chart_version("0.1.0", inputs["sources"], inputs["values"], inputs["dep"], inputs["digest"])


def test_version_is_semver_and_moves_with_each_input():
    version = _version()
    assert version == _version()
    assert version.startswith("0.1.0-c") and len(version) == len("0.1.0-c") + 12
    assert _version(digest="e" * 64) != version
    assert _version(dep="4.2.1") != version
    assert _version(values={}) != version
    assert _version(sources={**SOURCES, "templates/a.yaml": b"kind: Secret\n"}) != version


def test_files_carry_version_dependency_and_image_refs():
    files = chartspec.chart_files(SOURCES, "0.1.0-cabc", "4.2.0", chartspec.image_values(IMAGES),
                                  ("jupyterhub-4.2.0.tgz", b"tgz"))
    chart = yaml.safe_load(files["Chart.yaml"])
    assert chart["version"] == "0.1.0-cabc" and chart["dependencies"][0]["version"] == "4.2.0"
    values = yaml.safe_load(files["values.yaml"])
    assert values["jupyterhub"]["singleuser"]["image"] == {"name": "127.0.0.1:5000/c/notebook", "tag": "abc"}
    assert values["classroom"] == {"exchange": {"size": "1Gi"}, "images": {"db": "127.0.0.1:5000/c/db:def"}}
    assert files["charts/jupyterhub-4.2.0.tgz"] == b"tgz"


def test_archive_is_byte_identical_and_readable():
    files = chartspec.chart_files(SOURCES, "0.1.0-cabc", "4.2.0", {}, ("jupyterhub-4.2.0.tgz", b"x"))
    first = chartspec.archive(dict(reversed(list(files.items()))), "classroom")
    assert first == chartspec.archive(files, "classroom")
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == sorted(names) and all(n.startswith("classroom/") for n in names)
        assert {m.mtime for m in tar.getmembers()} == {chartspec.FIXED_MTIME}


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


def test_values_keep_logins_that_go_yaml_would_read_as_booleans():
    text = chartspec.dump_values({"classroom": {"courses": [{"name": "c", "instructors": ["n", "y", "on", "ann"]}]}})
    assert b"- 'n'" in text and b"- 'y'" in text and b"- 'on'" in text and b"- ann" in text
    assert yaml.safe_load(text)["classroom"]["courses"][0]["instructors"] == ["n", "y", "on", "ann"]
