"""A task's config inputs are the normalized values of the keys it reads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tasks.checks import config_inputs, digest
from tasks.config.loader import load
from tests.conftest import REPO

COURSES = """\
# The courses
courses:
  - name: intro
    repo: https://github.com/example/intro.git
    ref: main
    instructors: [alice, bob]
    packages: ["altair>=5"]
"""

SAME_COURSES_RESTYLED = """\
courses:   # comments, order, quoting, flow style and whitespace differ
- instructors:
    - bob
    - alice
    - bob
  packages:
    - 'altair>=5'
  ref: "main"
  repo: 'https://github.com/example/intro.git'
  name: "intro"
"""

CLASSROOM = "auth:\n  ldap:\n    port: 636\n"
CLASSROOM_QUOTED = "# LDAP\nauth: {ldap: {port: '636'}}\n"


def _digests(project, *keys):
    config = load(project.config)
    return {key: digest(config.value(key)) for key in keys}


def test_comments_order_quoting_and_whitespace_change_nothing(project):
    project.write("courses.yaml", COURSES)
    project.write("classroom.yaml", CLASSROOM)
    before = _digests(project, "courses", "classroom")
    project.write("courses.yaml", SAME_COURSES_RESTYLED)
    project.write("classroom.yaml", CLASSROOM_QUOTED)
    assert _digests(project, "courses", "classroom") == before


@pytest.mark.parametrize("edit,changed", [
    (("ref: main", "ref: fall-2026"), {"courses"}),
    (("[alice, bob]", "[alice, carol]"), {"courses"}),
    (('"altair>=5"', '"altair>=5.1"'), {"courses"}),
])
def test_a_real_value_change_changes_exactly_the_keys_that_hold_it(project, edit, changed):
    project.write("courses.yaml", COURSES)
    keys = ("courses", "classroom.auth.admin_users", "classroom.images", "datasets")
    before = _digests(project, *keys)
    project.write("courses.yaml", COURSES.replace(*edit))
    after = _digests(project, *keys)
    assert {k for k in keys if before[k] != after[k]} == changed


def test_admin_users_edit_touches_only_admin_users(project):
    keys = ("courses", "classroom.images", "classroom.build", "classroom.auth.admin_users")
    before = _digests(project, *keys)
    text = (project.config / "classroom.yaml").read_text()
    project.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    after = _digests(project, *keys)
    assert [k for k in keys if before[k] != after[k]] == ["classroom.auth.admin_users"]


NEW_KEYS_AT_DEFAULTS = """\
auth:
  dummy_trial: false
  ldap:
    port: 0
    user_search_base: ""
    user_attribute: uid
    lookup_dn_user_dn_attribute: ""
resources:
  memory_guarantee: 512M
  memory_limit: 2G
"""


def test_keys_written_at_their_defaults_change_no_digest(project):
    """A config that leaves the new keys out reads exactly like one that writes their defaults."""
    keys = ("classroom", "classroom.auth", "classroom.resources")
    project.write("classroom.yaml", "auth: {}\n")
    before = _digests(project, *keys)
    project.write("classroom.yaml", NEW_KEYS_AT_DEFAULTS)
    assert _digests(project, *keys) == before


def test_memory_in_bytes_reads_the_same_quoted_or_not(project):
    # JupyterHub takes an integer as bytes but fails on the same digits as text:
    # both spellings become the integer, so quoting changes neither the value nor a digest.
    project.write("classroom.yaml", "resources:\n  memory_limit: 2147483648\n")
    before = _digests(project, "classroom.resources.memory_limit")
    assert load(project.config).value("classroom.resources.memory_limit") == 2147483648
    project.write("classroom.yaml", "resources:\n  memory_limit: '2147483648'\n")
    assert _digests(project, "classroom.resources.memory_limit") == before


def test_memory_edit_touches_only_resources(project):
    keys = ("classroom.resources", "classroom.auth", "classroom.images", "classroom.chart", "courses")
    before = _digests(project, *keys)
    text = (project.config / "classroom.yaml").read_text()
    project.write("classroom.yaml", text.replace("memory_limit: 2G", "memory_limit: 3G"))
    after = _digests(project, *keys)
    assert [k for k in keys if before[k] != after[k]] == ["classroom.resources"]


DODO = textwrap.dedent('''
    import os
    from tasks.config.loader import load
    from tasks.checks import config_inputs

    CONFIG = load()
    DOIT_CONFIG = {"dep_file": os.environ["CLASSTOOLS_DEP_FILE"], "backend": "json"}

    def task_bake_courses():
        """Stands in for an image task that bakes courses.yaml."""
        return {"actions": ["echo baked"], "uptodate": [config_inputs(CONFIG, "courses")],
                "verbosity": 2}
''')


def test_doit_reruns_only_on_semantic_change(project, tmp_path):
    """The uptodate check with the real doit: restyling is a no-op, a value edit runs the task."""
    (project.root / "dodo.py").write_text(DODO)
    project.dep_file.parent.mkdir(parents=True)
    project.write("courses.yaml", COURSES)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "doit", "-f", str(project.root / "dodo.py"), *args],
                              cwd=project.root, env=project.env(PYTHONPATH=str(REPO)),
                              capture_output=True, text=True).stdout

    assert ".  bake_courses" in run()
    assert "-- bake_courses" in run()
    project.write("courses.yaml", SAME_COURSES_RESTYLED)
    assert "-- bake_courses" in run()
    project.write("courses.yaml", COURSES.replace("ref: main", "ref: v2"))
    assert ".  bake_courses" in run()

    state = json.loads(project.dep_file.read_text())
    saved = state["bake_courses"]["_values_:"]["_config_inputs"]
    assert set(saved) == {"courses"} and len(saved["courses"]) == 64, "only digests are stored"

    # `doit info` names the key that changed
    project.write("courses.yaml", COURSES.replace("ref: main", "ref: v3"))
    assert "config changed: courses" in run("info", "bake_courses")


def test_config_inputs_repr_lists_keys(project):
    check = config_inputs(load(project.config), "courses", "classroom.images.registry")
    assert repr(check) == "config inputs: courses, classroom.images.registry"
