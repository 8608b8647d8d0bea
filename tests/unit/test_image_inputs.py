"""What each image reads and bakes, and how its tag is laid out (tasks/images/spec.py).

Mutation testing left these unprotected: which config keys reach which image,
what the generated files hold, the Dockerfile's parser directives, and the
tag's byte layout (a silent change of that layout would rebuild every image on
every machine without TAG_VERSION saying so).

The spec is pure, so these tests read no file: the config is built in memory
as the loader normalizes it.  How a file's digest is made (exec bit, links, the
Dockerfile read without its comments) is the adapter's: test_image_context.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tasks.images import spec as imagespec
from tests.unit.memory_config import PROJECT, classroom_config, edited

ALL_IMAGES = {"base", "notebook", "local", "db"}





def _specs(config, has_hub_sources=False) -> dict:
    return {spec.name: spec for spec in imagespec.image_specs(config, has_hub_sources)}


def _changed_inputs(key, value, has_hub_sources=False) -> set[str]:
    """The images whose task inputs (config values) move when the value at `key` does."""
    before, after = classroom_config(), edited(classroom_config(), key, value)
    old = {name: imagespec.config_values(before, spec) for name, spec in _specs(before, has_hub_sources).items()}
    return {name for name, spec in _specs(after, has_hub_sources).items()
            if imagespec.config_values(after, spec) != old[name]}


def test_parents_upstreams_and_shared_directories():
    config = classroom_config()
    specs = _specs(config)
    images = config.classroom["images"]
    assert [name for name in specs] == ["base", "notebook", "local", "db"], "parents first"
    assert (specs["base"].parent, specs["base"].upstream) == (None, images["base_image"])
    assert (specs["db"].parent, specs["db"].upstream) == (None, images["db_base_image"])
    for child in ("notebook", "local"):
        assert (specs[child].parent, specs[child].upstream, specs[child].shared) == ("base", None, ("shared",))
    assert specs["base"].shared == specs["db"].shared == ()
    root = config.path(images["sources"])
    assert root == PROJECT / "images"
    assert {name: spec.source for name, spec in specs.items()} == {name: root / name for name in specs}
    assert {name: spec.task_name for name, spec in specs.items()} == {name: f"image:{name}" for name in specs}


@pytest.mark.parametrize("key,value,reached", [
    ("classroom.images.registry", "registry.example.org/classroom", ALL_IMAGES),
    ("classroom.build.platform", "linux/arm64", ALL_IMAGES),
    ("classroom.images.base_image", "docker.io/library/debian:trixie", {"base"}),
    ("classroom.images.db_base_image", "docker.io/library/mariadb:11.8", {"db"}),
    ("courses.0.ref", "v2", {"notebook", "local"}),
    ("datasets.0.description", "A tiny flights table for the first SQL exercises", {"local"}),
    ("classroom.auth.admin_users", ["dean"], set()),
])
def test_each_config_key_reaches_exactly_the_images_that_read_it(key, value, reached):
    assert _changed_inputs(key, value) == reached


def test_a_build_arg_reaches_every_image_and_its_build():
    assert classroom_config().classroom["build"]["args"] == {}
    args = {"PIP_INDEX_URL": "https://pypi.example.org/simple"}
    assert _changed_inputs("classroom.build.args", args) == ALL_IMAGES
    config = edited(classroom_config(), "classroom.build.args", args)
    specs = _specs(config)
    assert imagespec.build_args(config, specs["base"], None) == {
        "BASE_IMAGE": config.classroom["images"]["base_image"], "PIP_INDEX_URL": "https://pypi.example.org/simple"}
    assert imagespec.build_args(config, specs["notebook"], "reg/base:abc") == {
        "PARENT": "reg/base:abc", "PIP_INDEX_URL": "https://pypi.example.org/simple"}
    assert list(imagespec.build_args(config, specs["notebook"], "reg/base:abc")) == ["PARENT", "PIP_INDEX_URL"]


def test_who_sees_a_dataset_is_not_baked():
    """A dataset's courses decide the cluster's mounts only: the laptop image does not change."""
    assert _changed_inputs("datasets.0.courses", ["data-science-101"]) == set()
    config = edited(classroom_config(), "datasets.0.courses", ["data-science-101"])
    listing = json.loads(imagespec.generated_files(config, _specs(config)["local"])["classroom/datasets.json"])
    assert listing == [{"name": d["name"], "source": d["source"], "description": d["description"]}
                       for d in config.datasets]


def test_generated_files_hold_the_courses_and_datasets_as_the_image_reads_them():
    config = edited(classroom_config(), "courses.0.packages", ["pandas>=2", "altair>=5", "pandas>=2"])
    specs = _specs(config)
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


def test_repository_is_the_registry_path_or_a_local_name():
    config = classroom_config()
    base = _specs(config)["base"]
    assert imagespec.repository(config, base) == "classroom/base"
    with_registry = edited(config, "classroom.images.registry", "reg.example.org/course")
    assert imagespec.repository(with_registry, base) == "reg.example.org/course/base"


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


def test_the_tag_is_laid_out_as_documented():
    specs = _specs(classroom_config())
    spec = specs["notebook"]
    inputs = ("notebook", {"b.txt": "x:2", "a.txt": "-:1"}, {"classroom/z.json": b"[]\n", "classroom/a.txt": b"a"},
              {"B": "2", "A": "1"}, "linux/amd64", "f" * 24)
    assert imagespec.content_tag(spec, *inputs[1:]) == _reference_tag(*inputs)
    # the parts are separated by their lengths: moving a character across a boundary moves the tag
    assert imagespec.content_tag(spec, {"ab": "c"}, {}, {}, "p", "") != imagespec.content_tag(spec, {"a": "bc"}, {},
                                                                                              {}, "p", "")
    other = specs["local"]
    assert imagespec.content_tag(other, *inputs[1:]) == _reference_tag("local", *inputs[1:])


def test_generated_json_is_sorted_and_indented():
    config = classroom_config()
    files = imagespec.generated_files(config, _specs(config)["local"])
    for name in ("classroom/courses.json", "classroom/datasets.json"):
        text = files[name].decode()
        keys = json.loads(text, object_pairs_hook=lambda pairs: [key for key, _ in pairs])
        assert all(item == sorted(item) for item in keys), f"{name}: keys sorted, whatever the code's order"
        assert text.startswith('[\n  {\n    "'), f"{name}: two-space indentation"


def test_the_hub_image_reads_its_own_base_image():
    """Whether images/hub has a Dockerfile is the adapter's to find (test_image_context.py)."""
    spec = _specs(classroom_config(), has_hub_sources=True)["hub"]
    assert spec.source == PROJECT / "images" / "hub" and spec.parent is None
    changed = _changed_inputs("classroom.images.hub_base_image", "quay.io/jupyterhub/k8s-hub:4.4.1",
                              has_hub_sources=True)
    assert changed == {"hub"}


def test_the_local_image_bakes_local_datasets_files_and_directories_only():
    """Which files of a local dataset a build sends (a file, or a directory's) is the adapter's."""
    config = classroom_config(datasets=[
        {"name": "tables", "source": "data/tables", "description": "", "courses": []},
        {"name": "single", "source": "data/one.parquet", "description": "", "courses": []},
        {"name": "remote", "source": "https://example.org/data.git", "description": "", "courses": []},
        {"name": "bucket", "source": "gs://example-data/prefix", "description": "", "courses": []}])
    specs = _specs(config)
    images, data = PROJECT / "images", PROJECT / "data"
    assert imagespec.context_roots(config, specs["local"]) == [
        ("", str(images / "local")), ("shared/", str(images / "shared")),
        ("classroom/datasets/tables/", str(data / "tables")), ("classroom/datasets/single/", str(data / "one.parquet"))]
    assert imagespec.context_roots(config, specs["base"]) == [("", str(images / "base"))]
    assert [d["name"] for d in imagespec.remote_datasets(config)] == ["remote", "bucket"]
    assert imagespec.local_dataset(config, config.datasets[2]) is None
    assert imagespec.local_dataset(config, config.datasets[0]) == data / "tables"
