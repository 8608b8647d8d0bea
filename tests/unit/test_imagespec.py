"""Pure parts of the image stage: what a build is sent, and the tag computed from it."""

from __future__ import annotations

import shutil

import pytest

from tasks import imagespec
from tasks.config import load
from tasks.dockerignore import Matcher, context_files


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.md"], "README.md", True),
    (["*.md"], "docs/README.md", False),          # `*` stays within one segment
    (["**/*.md"], "docs/deep/README.md", True),
    (["**/*.md"], "README.md", True),             # `**/` may be no directory at all
    (["notes"], "notes/a/b.txt", True),           # a directory excludes what is under it
    (["/notes/"], "notes/x", True),               # leading and trailing slashes are cleaned
    (["*", "!keep.txt"], "keep.txt", False),      # the last matching pattern wins
    (["*", "!keep.txt", "keep*"], "keep.txt", True),
    (["data/*", "!data/small"], "data/small/x.csv", False),
    (["data/*", "!data/small"], "data/big/x.csv", True),
    (["file?.txt"], "file1.txt", True),
    (["file?.txt"], "file10.txt", False),
    (["[ab].txt"], "a.txt", True),
    (["[!ab].txt"], "a.txt", False),
    (["# a comment", ""], "# a comment", False),
    (["__pycache__", "**/__pycache__"], "pkg/__pycache__/m.pyc", True),
])
def test_dockerignore_rules(patterns, path, excluded):
    assert Matcher(patterns).excluded(path) is excluded


def test_context_files_always_send_dockerfile_and_skip_ignored(tmp_path):
    (tmp_path / ".dockerignore").write_text("*\n!app.py\n")
    for name in ("Dockerfile", "app.py", "secret.env"):
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_text("x")
    assert context_files(tmp_path) == [".dockerignore", "Dockerfile", "app.py"]


def test_dockerfile_normalization_keeps_directives_and_drops_comments():
    text = "# syntax=docker/dockerfile:1\n# why we do this\nFROM x   \n\n  # indented comment\nRUN a \\\n  b\n"
    assert imagespec.normalized_dockerfile(text) == "# syntax=docker/dockerfile:1\nFROM x\nRUN a \\\n  b\n"


def _tag(project, **changes):
    config = load(project.config)
    spec = next(s for s in imagespec.image_specs(config) if s.name == "notebook")
    files = imagespec.context_digests(imagespec.sources(config, spec))
    inputs = dict(files=files, generated=imagespec.generated_files(config, spec),
                  args={"X": "1"}, platform="linux/amd64", parent="0" * 24)
    inputs.update(changes)
    return imagespec.content_tag(spec, inputs["files"], inputs["generated"], inputs["args"],
                                 inputs["platform"], inputs["parent"])


@pytest.fixture
def images_project(project):
    from tests.conftest import REPO
    shutil.copytree(REPO / "images", project.root / "images")
    return project


def test_tag_is_stable_and_moves_with_every_input(images_project):
    tag = _tag(images_project)
    assert tag == _tag(images_project) and len(tag) == 24
    assert _tag(images_project, parent="1" * 24) != tag
    assert _tag(images_project, platform="linux/arm64") != tag
    assert _tag(images_project, args={"X": "2"}) != tag
    assert _tag(images_project, generated={}) != tag


def test_tag_ignores_dockerfile_comments_and_mtime_but_not_instructions(images_project):
    tag = _tag(images_project)
    dockerfile = images_project.root / "images" / "notebook" / "Dockerfile"
    dockerfile.write_text("# reviewed in 2026\n" + dockerfile.read_text() + "\n# more notes\n")
    assert _tag(images_project) == tag
    dockerfile.write_text(dockerfile.read_text() + "ENV X=1\n")
    assert _tag(images_project) != tag


def test_courses_are_baked_but_admin_users_are_not(images_project):
    tag = _tag(images_project)
    text = (images_project.config / "classroom.yaml").read_text()
    images_project.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    assert _tag(images_project) == tag
    courses = images_project.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: v2"))
    assert _tag(images_project) != tag


def test_local_image_context_carries_local_datasets(images_project):
    config = load(images_project.config)
    spec = next(s for s in imagespec.image_specs(config) if s.name == "local")
    rels = [rel for rel, _ in imagespec.sources(config, spec)]
    assert "classroom/datasets/sample-flights/flights.csv" in rels
    assert "shared/classroom-start" in rels


def test_hub_image_only_when_its_directory_exists(images_project):
    names = [s.name for s in imagespec.image_specs(load(images_project.config))]
    assert names == ["base", "notebook", "local", "db"]
    hub = images_project.root / "images" / "hub"
    hub.mkdir()
    (hub / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    config = load(images_project.config)
    specs = {s.name: s for s in imagespec.image_specs(config)}
    assert specs["hub"].upstream == config.classroom["images"]["hub_base_image"]
