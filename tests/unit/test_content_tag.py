"""The inputs of an image's tag that mutation testing found unprotected: a context file other
than the Dockerfile, a course's packages, a file's exec bit, a link's target, a shared file."""

from __future__ import annotations

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


def _tag(project, image="notebook"):
    config = load(project.config)
    spec = next(s for s in imagespec.image_specs(config) if s.name == image)
    return imagespec.content_tag(spec, imagespec.context_digests(imagespec.sources(config, spec)),
                                 imagespec.generated_files(config, spec), imagespec.build_args(config, spec, None),
                                 "linux/amd64", "0" * 24)


def _context_file(project, image="base") -> str:
    """A file of the image's context other than the Dockerfile and .dockerignore."""
    root = project.root / "images" / image
    rels = [rel for rel, _ in imagespec.sources(load(project.config), next(
        s for s in imagespec.image_specs(load(project.config)) if s.name == image))]
    rel = next(r for r in rels if r not in ("Dockerfile", ".dockerignore") and not os.path.islink(root / r))
    return str(root / rel)


def test_editing_any_context_file_changes_the_tag(images_project):
    before = _tag(images_project, "base")
    path = _context_file(images_project)
    with open(path, "ab") as handle:
        handle.write(b"\n# one more line\n")
    assert _tag(images_project, "base") != before


def test_the_exec_bit_changes_the_tag_and_other_mode_bits_do_not(images_project):
    path = _context_file(images_project)
    os.chmod(path, 0o644)
    before = _tag(images_project, "base")
    os.chmod(path, 0o600)  # not what a build sees: BuildKit keeps the exec bit, not the rest
    assert _tag(images_project, "base") == before
    os.chmod(path, 0o755)
    assert _tag(images_project, "base") != before


def test_a_link_target_changes_the_tag(images_project):
    base = images_project.root / "images" / "base"
    (base / "pointer").symlink_to("Dockerfile")
    before = _tag(images_project, "base")
    (base / "pointer").unlink()
    (base / "pointer").symlink_to("requirements.txt")
    assert _tag(images_project, "base") != before


def test_a_shared_file_changes_the_childrens_tags(images_project):
    before = {image: _tag(images_project, image) for image in ("notebook", "local", "base")}
    start = images_project.root / "images" / "shared" / "classroom-start"
    start.write_text(start.read_text() + "\n# edited\n")
    after = {image: _tag(images_project, image) for image in ("notebook", "local", "base")}
    assert after["notebook"] != before["notebook"] and after["local"] != before["local"]
    assert after["base"] == before["base"], "base does not stage shared/"


def test_a_courses_packages_change_the_tag_in_the_order_they_are_installed(images_project):
    courses = images_project.config / "courses.yaml"
    text = courses.read_text()
    before = _tag(images_project)
    courses.write_text(text.replace("packages: []", 'packages: ["altair>=5"]', 1))
    with_altair = _tag(images_project)
    assert with_altair != before
    config = load(images_project.config)
    spec = next(s for s in imagespec.image_specs(config) if s.name == "notebook")
    assert imagespec.generated_files(config, spec)["classroom/requirements-courses.txt"] == b"altair>=5\n"
    courses.write_text(text.replace("packages: []", 'packages: ["altair>=5.1"]', 1))
    assert _tag(images_project) not in (before, with_altair)
