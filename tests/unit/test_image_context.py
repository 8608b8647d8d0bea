"""The image stage's adapter on real files (tasks/images/context.py): which files a build is
sent, their digests (content, exec bit, link target; the Dockerfile without its comments),
and whether the hub image has sources.

The tag is computed from these digests by the pure spec: that every digest and
every other input moves the tag is tested without files (test_imagespec.py,
test_content_tag.py, test_image_inputs.py).  So here a change that must move
an image's tag must move the digests its context reports, and one that must
not move the tag must leave them as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from tasks.config.loader import load
from tasks.filetree.ignore import context_files
from tasks.images import context as imagecontext


@pytest.fixture
def images_project(project):
    from tests.conftest import REPO
    shutil.copytree(REPO / "images", project.root / "images")
    return project


def _specs(project) -> dict:
    return {spec.name: spec for spec in imagecontext.image_specs(load(project.config))}


def _digests(project, image) -> dict[str, str]:
    """What the image task hands to the tag: the digests of every file its build is sent."""
    config = load(project.config)
    return imagecontext.context_digests(imagecontext.sources(config, imagecontext.image_spec(config, image)))


def _context_file(project, image="base") -> str:
    """A file of the image's context other than the Dockerfile and .dockerignore."""
    root = project.root / "images" / image
    config = load(project.config)
    rels = [rel for rel, _ in imagecontext.sources(config, imagecontext.image_spec(config, image))]
    rel = next(r for r in rels if r not in ("Dockerfile", ".dockerignore") and not os.path.islink(root / r))
    return str(root / rel)


# ---- which files a build is sent --------------------------------------------------------

def test_context_files_always_send_dockerfile_and_skip_ignored(tmp_path):
    (tmp_path / ".dockerignore").write_text("*\n!app.py\n")
    for name in ("Dockerfile", "app.py", "secret.env"):
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_text("x")
    assert context_files(tmp_path) == [".dockerignore", "Dockerfile", "app.py"]


def test_local_image_context_carries_local_datasets(images_project):
    config = load(images_project.config)
    rels = [rel for rel, _ in imagecontext.sources(config, imagecontext.image_spec(config, "local"))]
    assert "classroom/datasets/sample-flights/flights.csv" in rels
    assert "shared/classroom-start" in rels


def test_the_local_image_bakes_local_datasets_files_and_directories_only(images_project):
    data = images_project.root / "data"
    (data / "tables").mkdir(parents=True)
    (data / "tables" / "t.csv").write_text("a\n")
    (data / "one.parquet").write_bytes(b"PAR1")
    (images_project.config / "data.yaml").write_text(
        "datasets:\n"
        "  - {name: tables, source: data/tables}\n"
        "  - {name: single, source: data/one.parquet}\n"
        "  - {name: remote, source: 'https://example.org/data.git'}\n"
        "  - {name: bucket, source: 'gs://example-data/prefix'}\n")
    config = load(images_project.config)
    sources = dict(imagecontext.sources(config, imagecontext.image_spec(config, "local")))
    assert sources["classroom/datasets/tables/t.csv"] == str(data / "tables" / "t.csv")
    assert sources["classroom/datasets/single/one.parquet"] == str(data / "one.parquet")
    assert not [rel for rel in sources if rel.startswith(("classroom/datasets/remote", "classroom/datasets/bucket"))]


def test_hub_image_only_when_its_directory_exists(images_project):
    assert list(_specs(images_project)) == ["base", "notebook", "local", "db"]
    hub = images_project.root / "images" / "hub"
    hub.mkdir()
    (hub / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    config = load(images_project.config)
    specs = _specs(images_project)
    assert specs["hub"].upstream == config.classroom["images"]["hub_base_image"]
    assert specs["hub"].source == hub and specs["hub"].parent is None


# ---- a file's digest ----------------------------------------------------------------------

def test_a_files_digest_is_its_exec_bit_and_sha256_or_a_links_target(tmp_path):
    big = tmp_path / "big.bin"
    content = os.urandom(3 * (1 << 20) + 17)  # more than one read block
    big.write_bytes(content)
    big.chmod(0o644)
    assert imagecontext.file_digest(big) == "-:" + hashlib.sha256(content).hexdigest()
    big.chmod(0o744)
    assert imagecontext.file_digest(big) == "x:" + hashlib.sha256(content).hexdigest()
    big.chmod(0o654)  # group-executable only still runs for the group
    assert imagecontext.file_digest(big).startswith("x:")
    (tmp_path / "link").symlink_to("big.bin")
    assert imagecontext.file_digest(tmp_path / "link") == "link:big.bin"


def test_only_other_users_exec_bit_still_counts(tmp_path):
    path = tmp_path / "run.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o641)
    assert imagecontext.file_digest(path).startswith("x:")
    path.chmod(0o640)
    assert imagecontext.file_digest(path).startswith("-:")


def test_the_dockerfile_counts_normalized_and_other_files_by_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("# why\nFROM x\n")
    (tmp_path / "app.py").write_text("# why\nprint()\n")
    digests = imagecontext.context_digests([("Dockerfile", str(tmp_path / "Dockerfile")),
                                            ("app.py", str(tmp_path / "app.py"))])
    assert digests["Dockerfile"] == "dockerfile:" + hashlib.sha256(b"FROM x\n").hexdigest()
    assert digests["app.py"] == imagecontext.file_digest(tmp_path / "app.py")
    assert digests["app.py"].endswith(hashlib.sha256(b"# why\nprint()\n").hexdigest())
    nested = imagecontext.context_digests([("sub/Dockerfile", str(tmp_path / "Dockerfile"))])
    assert nested["sub/Dockerfile"] == imagecontext.file_digest(tmp_path / "Dockerfile"), \
        "only the context's own Dockerfile is read as one"


# ---- what moves an image's tag: its context's digests ---------------------------------------

def test_tag_ignores_dockerfile_comments_and_mtime_but_not_instructions(images_project):
    digests = _digests(images_project, "notebook")
    dockerfile = images_project.root / "images" / "notebook" / "Dockerfile"
    dockerfile.write_text("# reviewed in 2026\n" + dockerfile.read_text() + "\n# more notes\n")
    assert _digests(images_project, "notebook") == digests
    dockerfile.write_text(dockerfile.read_text() + "ENV X=1\n")
    assert _digests(images_project, "notebook") != digests


def test_editing_any_context_file_changes_the_tag(images_project):
    before = _digests(images_project, "base")
    path = _context_file(images_project)
    with open(path, "ab") as handle:
        handle.write(b"\n# one more line\n")
    assert _digests(images_project, "base") != before


def test_the_exec_bit_changes_the_tag_and_other_mode_bits_do_not(images_project):
    path = _context_file(images_project)
    os.chmod(path, 0o644)
    before = _digests(images_project, "base")
    os.chmod(path, 0o600)  # not what a build sees: BuildKit keeps the exec bit, not the rest
    assert _digests(images_project, "base") == before
    os.chmod(path, 0o755)
    assert _digests(images_project, "base") != before


def test_a_link_target_changes_the_tag(images_project):
    base = images_project.root / "images" / "base"
    (base / "pointer").symlink_to("Dockerfile")
    before = _digests(images_project, "base")
    (base / "pointer").unlink()
    (base / "pointer").symlink_to("requirements.txt")
    assert _digests(images_project, "base") != before


def test_a_shared_file_changes_the_childrens_tags(images_project):
    before = {image: _digests(images_project, image) for image in ("notebook", "local", "base")}
    start = images_project.root / "images" / "shared" / "classroom-start"
    start.write_text(start.read_text() + "\n# edited\n")
    after = {image: _digests(images_project, image) for image in ("notebook", "local", "base")}
    assert after["notebook"] != before["notebook"] and after["local"] != before["local"]
    assert after["base"] == before["base"], "base does not stage shared/"
