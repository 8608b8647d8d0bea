"""The inputs of an image's tag that mutation testing found unprotected: a context file other
than the Dockerfile, a course's packages, a file's exec bit, a link's target, a shared file.

The tag (tasks/images/spec.py) is computed from the file digests the adapter
reports, so these tests give it digests directly and read no file; that an
edit, a chmod or a new link target changes those digests, and a mode bit that
a build does not see does not, is tested on real files in test_image_context.py.
"""

from __future__ import annotations

import hashlib

import pytest

from tasks.images import spec as imagespec
from tests.unit.memory_config import PROJECT, classroom_config, edited


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# what the adapter reports for images/base (tasks/images/context.py's digest format)
BASE_FILES = {".dockerignore": "-:" + _sha("*.md\n"), "Dockerfile": "dockerfile:" + _sha("FROM x\n"),
              "lab-overrides.json": "-:" + _sha("{}\n"), "requirements-platform.txt": "-:" + _sha("jupyterlab\n"),
              "requirements.txt": "-:" + _sha("numpy\n")}
NOTEBOOK_FILES = {"Dockerfile": "dockerfile:" + _sha("ARG PARENT\nFROM ${PARENT}\n"),
                  "shared/classroom-start": "x:" + _sha("#!/bin/sh\n")}





def _spec(config, image):
    return next(s for s in imagespec.image_specs(config) if s.name == image)


def _tag(files, image="notebook", config=None):
    """The tag as the image task computes it, from the digests the adapter would report."""
    config = config or classroom_config()
    spec = _spec(config, image)
    return imagespec.content_tag(spec, files, imagespec.generated_files(config, spec),
                                 imagespec.build_args(config, spec, None), "linux/amd64", "0" * 24)


@pytest.mark.parametrize("rel", sorted(set(BASE_FILES) - {"Dockerfile", ".dockerignore"}))
def test_editing_any_context_file_changes_the_tag(rel):
    before = _tag(BASE_FILES, "base")
    edited_file = "-:" + _sha("numpy\n\n# one more line\n")
    assert _tag({**BASE_FILES, rel: edited_file}, "base") != before


def test_the_exec_bit_changes_the_tag():
    content = BASE_FILES["requirements.txt"].split(":", 1)[1]
    before = _tag({**BASE_FILES, "requirements.txt": "-:" + content}, "base")
    assert _tag({**BASE_FILES, "requirements.txt": "x:" + content}, "base") != before


def test_a_link_target_changes_the_tag():
    before = _tag({**BASE_FILES, "pointer": "link:Dockerfile"}, "base")
    assert _tag({**BASE_FILES, "pointer": "link:requirements.txt"}, "base") != before


def test_a_shared_file_changes_the_childrens_tags():
    """Only the children stage shared/ (so only their contexts hold its files), and its files count."""
    config = classroom_config()
    shared = ("shared/", str(PROJECT / "images" / "shared"))
    for child in ("notebook", "local"):
        assert shared in imagespec.context_roots(config, _spec(config, child))
    assert shared not in imagespec.context_roots(config, _spec(config, "base")), "base does not stage shared/"
    before = {child: _tag(NOTEBOOK_FILES, child) for child in ("notebook", "local")}
    start = {**NOTEBOOK_FILES, "shared/classroom-start": "x:" + _sha("#!/bin/sh\n\n# edited\n")}
    assert all(_tag(start, child) != before[child] for child in before)


def test_a_courses_packages_change_the_tag_in_the_order_they_are_installed():
    before = _tag(NOTEBOOK_FILES)
    config = edited(classroom_config(), "courses.0.packages", ["altair>=5"])
    with_altair = _tag(NOTEBOOK_FILES, config=config)
    assert with_altair != before
    spec = _spec(config, "notebook")
    assert imagespec.generated_files(config, spec)["classroom/requirements-courses.txt"] == b"altair>=5\n"
    newer = _tag(NOTEBOOK_FILES, config=edited(classroom_config(), "courses.0.packages", ["altair>=5.1"]))
    assert newer not in (before, with_altair)
