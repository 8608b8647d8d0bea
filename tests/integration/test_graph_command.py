"""`doit graph` against a real run: what it draws as the next run is what the next run does.

The project is built for real (stand-in images in the engine and registry, the chart
published to the GCS emulator), so the states come from doit's own checks on a real
state; then an edit is drawn and run.
"""

from __future__ import annotations

import re
import shutil
import uuid

import pytest

from tests.conftest import REPO
from tests.integration.test_chart import _classroom, _ran

pytestmark = pytest.mark.integration
NODE = re.compile(r'^\s*"(?P<id>[^"]+)" \[label="(?P<task>[^\n"]+)\n\((?P<state>[^)]+)\)(?P<why>[^"]*)"', re.M)


def _drawn(project, out="graph.dot") -> dict[str, tuple[str, str]]:
    result = project.doit("graph", "--out", out, check=True)
    assert f"graph: {out}:" in result.stdout
    text = (project.root / out).read_text()
    return {m["task"]: (m["state"], " ".join(m["why"].split())) for m in NODE.finditer(text)}


@pytest.fixture
def built(project, registry, bucket, jupyterhub_chart):
    _classroom(project, registry, bucket, jupyterhub_chart, f"g{uuid.uuid4().hex[:8]}")
    shutil.copy(REPO / "doit.cfg", project.root / "doit.cfg")  # doit reads its commands from the cwd
    project.doit(check=True)
    return project


def test_the_drawing_is_what_the_next_run_does(built):
    drawn = _drawn(built)
    assert {"image:base", "image:notebook", "image:db", "image:local", "chart:package", "chart:publish"} <= set(drawn)
    assert {state for state, _ in drawn.values()} == {"up to date"}, drawn

    text = (built.config / "courses.yaml").read_text()
    built.write("courses.yaml", text.replace("students: []", "students: [newcomer]", 1))
    drawn = _drawn(built)
    will = {task for task, (state, _) in drawn.items() if state == "will run"}
    may = {task for task, (state, _) in drawn.items() if state == "may run"}
    # the notebook image holds the course list, the chart one grader per course
    assert will == {"image:notebook", "image:local", "chart:package"}, drawn
    assert all("config changed: courses" in drawn[task][1] for task in will)
    assert "chart:publish" in may
    assert drawn["image:base"][0] == drawn["image:db"][0] == "up to date"
    # drawing ran nothing and wrote no state
    assert _drawn(built) == drawn

    ran = _ran(built.doit(check=True))
    assert will <= ran <= will | may | {"secrets"}


def test_svg_and_refusals(built):
    built.doit("graph", "--out", "chain.svg", check=True)
    svg = (built.root / "chain.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "image:notebook" in svg
    refused = built.doit("graph", "--out", "chain.gif")
    assert refused.returncode != 0 and "expected one of svg, png, dot" in refused.stdout + refused.stderr
    assert not (built.root / "chain.gif").exists()
    unknown = built.doit("graph", "image:nothing", "--out", "x.dot")
    assert unknown.returncode != 0 and "found no task image:nothing" in unknown.stdout + unknown.stderr
    assert "Traceback" not in refused.stderr + unknown.stderr
