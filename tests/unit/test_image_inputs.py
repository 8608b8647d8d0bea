"""What each image reads and bakes, and how its tag is laid out (tasks/imagespec.py).

Mutation testing left these unprotected: which config keys reach which image,
what the generated files hold, how a file's digest is made, the Dockerfile's
parser directives, and the tag's byte layout (a silent change of that layout
would rebuild every image on every machine without TAG_VERSION saying so).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from tasks import imagespec
from tasks.config import load


@pytest.fixture
def images_project(project):
    from tests.conftest import REPO
    shutil.copytree(REPO / "images", project.root / "images")
    return project


def _specs(project) -> dict:
    return {spec.name: spec for spec in imagespec.image_specs(load(project.config))}


def _edit(project, file_name, old, new):
    path = project.config / file_name
    text = path.read_text()
    assert old in text, f"{file_name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def _changed_inputs(project, edit) -> set[str]:
    """The images whose task inputs (config values) move with `edit`."""
    before = {name: imagespec.config_values(load(project.config), spec) for name, spec in _specs(project).items()}
    edit()
    config = load(project.config)
    return {name for name, spec in _specs(project).items() if imagespec.config_values(config, spec) != before[name]}


def test_parents_upstreams_and_shared_directories(images_project):
    config = load(images_project.config)
    specs = _specs(images_project)
    images = config.classroom["images"]
    assert [name for name in specs] == ["base", "notebook", "local", "db"], "parents first"
    assert (specs["base"].parent, specs["base"].upstream) == (None, images["base_image"])
    assert (specs["db"].parent, specs["db"].upstream) == (None, images["db_base_image"])
    for child in ("notebook", "local"):
        assert (specs[child].parent, specs[child].upstream, specs[child].shared) == ("base", None, ("shared",))
    assert specs["base"].shared == specs["db"].shared == ()
    root = config.path(images["sources"])
    assert {name: spec.source for name, spec in specs.items()} == {name: root / name for name in specs}
    assert {name: spec.task_name for name, spec in specs.items()} == {name: f"image:{name}" for name in specs}


@pytest.mark.parametrize("file_name,old,new,reached", [
    ("classroom.yaml", 'registry: ""', 'registry: "registry.example.org/classroom"',
     {"base", "notebook", "local", "db"}),
    ("classroom.yaml", "platform: linux/amd64", "platform: linux/arm64", {"base", "notebook", "local", "db"}),
    ("classroom.yaml", "base_image: ", "base_image: docker.io/library/debian:trixie #", {"base"}),
    ("classroom.yaml", "db_base_image: ", "db_base_image: docker.io/library/mariadb:11.8 #", {"db"}),
    ("courses.yaml", "ref: main", "ref: v2", {"notebook", "local"}),
    ("data.yaml", "description: A small", "description: A tiny", {"local"}),
    ("classroom.yaml", "admin_users: []", "admin_users: [dean]", set()),
])
def test_each_config_key_reaches_exactly_the_images_that_read_it(images_project, file_name, old, new, reached):
    assert _changed_inputs(images_project, lambda: _edit(images_project, file_name, old, new)) == reached


def test_a_build_arg_reaches_every_image_and_its_build(images_project):
    text = (images_project.config / "classroom.yaml").read_text()
    assert "args: {}" in text
    changed = _changed_inputs(images_project, lambda: _edit(images_project, "classroom.yaml", "args: {}",
                                                            "args: {PIP_INDEX_URL: https://pypi.example.org/simple}"))
    assert changed == {"base", "notebook", "local", "db"}
    config = load(images_project.config)
    specs = _specs(images_project)
    assert imagespec.build_args(config, specs["base"], None) == {
        "BASE_IMAGE": config.classroom["images"]["base_image"], "PIP_INDEX_URL": "https://pypi.example.org/simple"}
    assert imagespec.build_args(config, specs["notebook"], "reg/base:abc") == {
        "PARENT": "reg/base:abc", "PIP_INDEX_URL": "https://pypi.example.org/simple"}
    assert list(imagespec.build_args(config, specs["notebook"], "reg/base:abc")) == ["PARENT", "PIP_INDEX_URL"]


def test_who_sees_a_dataset_is_not_baked(images_project):
    """A dataset's courses decide the cluster's mounts only: the laptop image does not change."""
    changed = _changed_inputs(images_project, lambda: _edit(
        images_project, "data.yaml", "    description: A small", "    courses: [data-science-101]\n"
                                                                   "    description: A small"))
    assert changed == set()
    config = load(images_project.config)
    listing = json.loads(imagespec.generated_files(config, _specs(images_project)["local"])["classroom/datasets.json"])
    assert listing == [{"name": d["name"], "source": d["source"], "description": d["description"]}
                       for d in config.datasets]


def test_generated_files_hold_the_courses_and_datasets_as_the_image_reads_them(images_project):
    _edit(images_project, "courses.yaml", "packages: []", 'packages: ["pandas>=2", "altair>=5", "pandas>=2"]')
    config = load(images_project.config)
    specs = _specs(images_project)
    for name in ("base", "db"):
        assert imagespec.generated_files(config, specs[name]) == {}
    notebook = imagespec.generated_files(config, specs["notebook"])
    assert set(notebook) == {"classroom/courses.json", "classroom/requirements-courses.txt"}
    courses = json.loads(notebook["classroom/courses.json"])
    assert courses == [{key: course[key] for key in ("name", "title", "repo", "ref", "instructors", "students")}
                       for course in config.courses]
    assert notebook["classroom/courses.json"].endswith(b"}\n]\n"), "a text file, newline-terminated"
    assert notebook["classroom/requirements-courses.txt"] == b"altair>=5\npandas>=2\n"
    local = imagespec.generated_files(config, specs["local"])
    assert set(local) == set(notebook) | {"classroom/datasets.json"}
    assert local["classroom/courses.json"] == notebook["classroom/courses.json"]


@pytest.mark.parametrize("package", ["", "-e .", "--index-url=https://evil.example", " -r x.txt",
                                     "pandas\r--index-url=x", "pandas\n", "pandas\x85x"])
def test_a_requirements_file_refuses_anything_but_one_requirement_per_line(package):
    with pytest.raises(ValueError, match="not one pip requirement"):
        imagespec.requirements_file({"numpy", package})


def test_a_requirements_file_is_sorted_and_newline_terminated():
    assert imagespec.requirements_file(set()) == b""
    assert imagespec.requirements_file(["b>=1", "a"]) == b"a\nb>=1\n"


def test_repository_is_the_registry_path_or_a_local_name(images_project):
    config = load(images_project.config)
    base = _specs(images_project)["base"]
    assert imagespec.repository(config, base) == "classroom/base"
    _edit(images_project, "classroom.yaml", 'registry: ""', 'registry: "reg.example.org/course"')
    assert imagespec.repository(load(images_project.config), base) == "reg.example.org/course/base"


def test_a_files_digest_is_its_exec_bit_and_sha256_or_a_links_target(tmp_path):
    big = tmp_path / "big.bin"
    content = os.urandom(3 * (1 << 20) + 17)  # more than one read block
    big.write_bytes(content)
    big.chmod(0o644)
    assert imagespec.file_digest(big) == "-:" + hashlib.sha256(content).hexdigest()
    big.chmod(0o744)
    assert imagespec.file_digest(big) == "x:" + hashlib.sha256(content).hexdigest()
    big.chmod(0o654)  # group-executable only still runs for the group
    assert imagespec.file_digest(big).startswith("x:")
    (tmp_path / "link").symlink_to("big.bin")
    assert imagespec.file_digest(tmp_path / "link") == "link:big.bin"


def test_the_dockerfile_counts_normalized_and_other_files_by_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("# why\nFROM x\n")
    (tmp_path / "app.py").write_text("# why\nprint()\n")
    digests = imagespec.context_digests([("Dockerfile", str(tmp_path / "Dockerfile")),
                                         ("app.py", str(tmp_path / "app.py"))])
    assert digests["Dockerfile"] == "dockerfile:" + hashlib.sha256(b"FROM x\n").hexdigest()
    assert digests["app.py"] == imagespec.file_digest(tmp_path / "app.py")
    assert digests["app.py"].endswith(hashlib.sha256(b"# why\nprint()\n").hexdigest())
    nested = imagespec.context_digests([("sub/Dockerfile", str(tmp_path / "Dockerfile"))])
    assert nested["sub/Dockerfile"] == imagespec.file_digest(tmp_path / "Dockerfile"), \
        "only the context's own Dockerfile is read as one"


@pytest.mark.parametrize("text,expected", [
    ("# syntax=docker/dockerfile:1\n# escape=`\n#check=skip=all\nFROM x\n",
     "# syntax=docker/dockerfile:1\n# escape=`\n#check=skip=all\nFROM x\n"),
    ("# SYNTAX = docker/dockerfile:1\nFROM x\n", "# SYNTAX = docker/dockerfile:1\nFROM x\n"),
    ("# a note\n# syntax=docker/dockerfile:1\nFROM x\n", "FROM x\n"),      # after a comment: a comment
    ("FROM x\n# syntax=docker/dockerfile:1\n", "FROM x\n"),                 # after an instruction too
    ("# key=value is not a directive\nFROM x\n", "FROM x\n"),
    ("\n\nFROM x   \n\t\nRUN a\n", "FROM x\nRUN a\n"),
    ("FROM x\n  # indented\nRUN  a  \n", "FROM x\nRUN  a\n"),
])
def test_dockerfile_parser_directives_count_only_at_the_top(text, expected):
    assert imagespec.normalized_dockerfile(text) == expected


def _reference_tag(name, files, generated, args, platform, parent) -> str:
    """The tag's layout as documented: sha256 over length-prefixed parts, first 24 hex digits."""
    data = b""
    parts = [imagespec.TAG_VERSION, name, platform, parent]
    parts += [p for key in sorted(args) for p in ("arg", key, args[key])]
    parts += [p for rel in sorted(files) for p in ("file", rel, files[rel])]
    parts += [p for rel in sorted(generated) for p in ("generated", rel, generated[rel])]
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode()
        data += len(raw).to_bytes(8, "big") + raw
    return hashlib.sha256(data).hexdigest()[:24]


def test_the_tag_is_laid_out_as_documented(images_project):
    spec = _specs(images_project)["notebook"]
    inputs = ("notebook", {"b.txt": "x:2", "a.txt": "-:1"}, {"classroom/z.json": b"[]\n", "classroom/a.txt": b"a"},
              {"B": "2", "A": "1"}, "linux/amd64", "f" * 24)
    assert imagespec.content_tag(spec, *inputs[1:]) == _reference_tag(*inputs)
    # the parts are separated by their lengths: moving a character across a boundary moves the tag
    assert imagespec.content_tag(spec, {"ab": "c"}, {}, {}, "p", "") != imagespec.content_tag(spec, {"a": "bc"}, {},
                                                                                              {}, "p", "")
    other = _specs(images_project)["local"]
    assert imagespec.content_tag(other, *inputs[1:]) == _reference_tag("local", *inputs[1:])


def test_only_other_users_exec_bit_still_counts(tmp_path):
    path = tmp_path / "run.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o641)
    assert imagespec.file_digest(path).startswith("x:")
    path.chmod(0o640)
    assert imagespec.file_digest(path).startswith("-:")


def test_generated_json_is_sorted_and_indented(images_project):
    config = load(images_project.config)
    files = imagespec.generated_files(config, _specs(images_project)["local"])
    for name in ("classroom/courses.json", "classroom/datasets.json"):
        text = files[name].decode()
        keys = json.loads(text, object_pairs_hook=lambda pairs: [key for key, _ in pairs])
        assert all(item == sorted(item) for item in keys), f"{name}: keys sorted, whatever the code's order"
        assert text.startswith('[\n  {\n    "'), f"{name}: two-space indentation"


def test_the_hub_image_reads_its_own_base_image(images_project):
    hub = images_project.root / "images" / "hub"
    hub.mkdir()
    (hub / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    spec = _specs(images_project)["hub"]
    assert spec.source == hub and spec.parent is None
    changed = _changed_inputs(images_project, lambda: _edit(images_project, "classroom.yaml", "hub_base_image: ",
                                                            "hub_base_image: quay.io/jupyterhub/k8s-hub:4.4.1 #"))
    assert changed == {"hub"}


def _datasets(project, entries: str):
    (project.config / "data.yaml").write_text("datasets:\n" + entries)


def test_the_local_image_bakes_local_datasets_files_and_directories_only(images_project):
    data = images_project.root / "data"
    (data / "tables").mkdir(parents=True)
    (data / "tables" / "t.csv").write_text("a\n")
    (data / "one.parquet").write_bytes(b"PAR1")
    _datasets(images_project, "  - {name: tables, source: data/tables}\n"
                              "  - {name: single, source: data/one.parquet}\n"
                              "  - {name: remote, source: 'https://example.org/data.git'}\n"
                              "  - {name: bucket, source: 'gs://example-data/prefix'}\n")
    config = load(images_project.config)
    spec = _specs(images_project)["local"]
    sources = dict(imagespec.sources(config, spec))
    assert sources["classroom/datasets/tables/t.csv"] == str(data / "tables" / "t.csv")
    assert sources["classroom/datasets/single/one.parquet"] == str(data / "one.parquet")
    assert not [rel for rel in sources if rel.startswith(("classroom/datasets/remote", "classroom/datasets/bucket"))]
    images = images_project.root / "images"
    assert imagespec.context_roots(config, spec) == [
        ("", str(images / "local")), ("shared/", str(images / "shared")),
        ("classroom/datasets/tables/", str(data / "tables")), ("classroom/datasets/single/", str(data / "one.parquet"))]
    assert imagespec.context_roots(config, _specs(images_project)["base"]) == [("", str(images / "base"))]
    assert [d["name"] for d in imagespec.remote_datasets(config)] == ["remote", "bucket"]
    assert imagespec.local_dataset(config, config.datasets[2]) is None
    assert imagespec.local_dataset(config, config.datasets[0]) == data / "tables"
