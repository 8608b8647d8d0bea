"""Pure parts of the image stage: which files a build ignores, the Dockerfile as it counts, and
the tag computed from the build's inputs.

They read no file: the config is built in memory and the tag is given the
context's file digests directly.  What the adapter reads from disk (the files
a build sends, their digests, whether images/hub exists) is tested in
test_image_context.py.
"""

from __future__ import annotations

import hashlib

import pytest

from tasks.filetree.ignore import Matcher
from tasks.images import spec as imagespec
from tests.unit.memory_config import classroom_config, edited

# the digests the adapter reports for a notebook context (tasks/images/context.py's format)
FILES = {"Dockerfile": "dockerfile:" + hashlib.sha256(b"ARG PARENT\nFROM ${PARENT}\n").hexdigest(),
         "shared/classroom-start": "x:" + hashlib.sha256(b"#!/bin/sh\n").hexdigest()}





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


def test_dockerfile_normalization_keeps_directives_and_drops_comments():
    text = "# syntax=docker/dockerfile:1\n# why we do this\nFROM x   \n\n  # indented comment\nRUN a \\\n  b\n"
    assert imagespec.normalized_dockerfile(text) == "# syntax=docker/dockerfile:1\nFROM x\nRUN a \\\n  b\n"


def _tag(config=None, **changes):
    config = config or classroom_config()
    spec = next(s for s in imagespec.image_specs(config) if s.name == "notebook")
    inputs = dict(files=FILES, generated=imagespec.generated_files(config, spec),
                  args={"X": "1"}, platform="linux/amd64", parent="0" * 24)
    inputs.update(changes)
    return imagespec.content_tag(spec, inputs["files"], inputs["generated"], inputs["args"],
                                 inputs["platform"], inputs["parent"])


def test_tag_is_stable_and_moves_with_every_input():
    tag = _tag()
    assert tag == _tag() and len(tag) == 24
    assert _tag(parent="1" * 24) != tag
    assert _tag(platform="linux/arm64") != tag
    assert _tag(args={"X": "2"}) != tag
    assert _tag(generated={}) != tag
    assert _tag(files={**FILES, "Dockerfile": "dockerfile:" + "0" * 64}) != tag


def test_courses_are_baked_but_admin_users_are_not():
    tag = _tag()
    assert _tag(edited(classroom_config(), "classroom.auth.admin_users", ["dean"])) == tag
    assert _tag(edited(classroom_config(), "courses.0.ref", "v2")) != tag


def test_hub_image_only_when_its_sources_exist():
    """Whether images/hub has a Dockerfile is the adapter's to find (test_image_context.py)."""
    config = classroom_config()
    assert [s.name for s in imagespec.image_specs(config)] == ["base", "notebook", "local", "db"]
    specs = {s.name: s for s in imagespec.image_specs(config, has_hub_sources=True)}
    assert list(specs) == ["base", "notebook", "local", "db", "hub"]
    assert specs["hub"].upstream == config.classroom["images"]["hub_base_image"]
