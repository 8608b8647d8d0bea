"""nbgrader's whole round trip between real servers sharing one exchange volume, with the real hub.

- the grader service of course intro: the pod the chart's grader Deployment makes
  (notebook image, CLASSROOM_GRADER_COURSE=intro, the service's API token from
  z2jh's hub Secret), its home on its own claim;
- students' servers: KubeSpawner's pods for alice (intro) and carol (stats);
- every pod mounts the same exchange claim, and the chart's global nbgrader config
  (JupyterHubAuthPlugin): each nbgrader command asks the real hub, with the
  server's own token, which courses its user is in.

Classroom (runtime/fixtures.py): intro = prof + alice, bob; stats = prof2 + carol.
"""

from __future__ import annotations

import pytest

from tasks import contract
from tests.integration.runtime import nbgrader as nbg

pytestmark = pytest.mark.integration

COURSE = "intro"


@pytest.fixture(scope="module")
def grader(pods):
    return pods.grader(COURSE)


@pytest.fixture(scope="module")
def course_dir(grader) -> str:
    config = nbg.effective_config(grader)
    assert config["CourseDirectory.course_id"] == COURSE
    return config["CourseDirectory.root"]


def test_the_grader_service_is_the_course_directory_with_formgrader(grader, course_dir):
    assert course_dir == f"{contract.HOME_PATH}/{COURSE}"
    # the course repository is pulled into the course directory
    code, out = grader.exec(["cat", f"{course_dir}/lab1.md"])
    assert code == 0 and "# Lab 1" in out, out + grader.pod.logs(grader.container, 100)
    assert nbg.server_extensions(grader) == {"assignment_list": False, "course_list": False,
                                             "formgrader": True}
    env = grader.server_env()
    assert env["JUPYTERHUB_USER"] == contract.grader_user(COURSE)
    assert env["JUPYTERHUB_SERVICE_NAME"] == contract.grader_service(COURSE)


@pytest.fixture(scope="module")
def released(pods, grader):
    return nbg.release(pods, COURSE)


def test_only_the_courses_instructors_reach_its_grader(pods, grader):
    """formgrade-<course> grants access to the service; another course's instructor and the
    course's students are refused by the hub."""
    assert grader.get("api/status", pods.token("prof")).status == 200
    for outsider in ("prof2", "alice"):
        assert grader.get("api/status", pods.token(outsider), expect_error=True).status == 403, outsider


def test_round_trip_release_fetch_submit_collect_autograde(pods, grader, course_dir, released):
    """alice answers, bob hands in the stub: the grades tell them apart."""
    for student, answers in (("alice", True), ("bob", False)):
        server = pods.server(student)
        home = nbg.student_home(server)
        listing = nbg.listed(server)
        assert f"{COURSE} {released}" in listing, listing
        nbg.must(server.exec(["nbgrader", "fetch_assignment", released, "--course", COURSE], workdir=home),
                 f"{student}'s nbgrader fetch_assignment")
        if answers:
            nbg.answer(server, COURSE)
        nbg.must(server.exec(["nbgrader", "submit", released, "--course", COURSE], workdir=home),
                 f"{student}'s nbgrader submit")

    nbg.must(grader.exec(["nbgrader", "collect", released], workdir=course_dir), "nbgrader collect")
    nbg.must(grader.exec(["nbgrader", "autograde", released], workdir=course_dir), "nbgrader autograde")
    assert nbg.score(grader, course_dir, COURSE, "alice") == {"score": nbg.POINTS, "max_score": nbg.POINTS}
    assert nbg.score(grader, course_dir, COURSE, "bob") == {"score": 0, "max_score": nbg.POINTS}


def test_a_student_of_another_course_sees_nothing_to_fetch(pods, released):
    """Defect 6: every student saw every course."""
    carol = pods.server("carol")
    home = nbg.student_home(carol)
    listing = nbg.listed(carol)
    assert COURSE not in listing, listing
    code, out = carol.exec(["nbgrader", "fetch_assignment", released, "--course", COURSE], workdir=home)
    assert code != 0, out
    assert "You do not have access to this course" in out, out
    code, _ = carol.exec(["test", "-e", f"{home}/{COURSE}/{released}"])
    assert code != 0
