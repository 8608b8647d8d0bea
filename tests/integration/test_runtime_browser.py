"""A real browser in the classroom: Debian's Chromium opens JupyterLab in the real servers.

The servers are the pods of runtime/podrun.py (KubeSpawner's manifests for
alice and prof, the chart's grader Deployment for intro) with the real hub
behind them; each person's browser carries that person's own hub token
(runtime/browser.py says why).  Screenshots: <basetemp>/screenshots and
$CLASSTOOLS_ARTIFACTS (default .artifacts/ in the checkout).

Classroom (runtime/fixtures.py): intro = prof + alice, bob; stats = prof2 + carol.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.integration.runtime import browser
from tests.integration.runtime import nbgrader as nbg

pytestmark = pytest.mark.integration

COURSE = "intro"


@pytest.fixture(scope="module")
def released(pods):
    return nbg.release(pods, COURSE)


@pytest.fixture(scope="module")
def driver():
    with browser.playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "screenshots"


@contextlib.contextmanager
def lab_of(driver, token: str, url: str, shots, name: str):
    """JupyterLab at `url` in a fresh browser; its screenshot is saved whatever happens."""
    with browser.browser_as(driver, token) as context:
        page = None
        try:
            page = browser.open_lab(context, url)
            yield page
        finally:
            page = page or (context.pages[0] if context.pages else None)
            if page is not None:
                browser.screenshot(page, shots, name)


def _assignment_list(page) -> str:
    """The Assignment List panel's text once it lists the assignment (released, downloaded or
    submitted: the other tests may have fetched it already)."""
    browser.open_from_nbgrader_menu(page, "Assignment List")
    listing = page.locator("#nbgrader-assignment-list")
    listing.locator("#released_assignments_list, #fetched_assignments_list, #submitted_assignments_list") \
        .get_by_text(nbg.ASSIGNMENT).first.wait_for()
    return listing.inner_text()


def test_student_sees_her_course_and_its_assignment_and_no_grading_tools(pods, released, driver, shots):
    alice = pods.server("alice")
    with lab_of(driver, pods.token("alice"), alice.url + "lab", shots, "student-alice-assignment-list") as page:
        names = browser.file_names(page)
        assert COURSE in names and "stats" not in names, names
        menu = browser.nbgrader_menu_items(page)
        assert "Assignment List" in menu, menu
        assert "Formgrader" not in menu and "Course List" not in menu, menu
        listing = _assignment_list(page)
        assert COURSE in listing and released in listing, listing


def test_instructor_lists_the_course_and_is_offered_its_formgrader(pods, released, driver, shots):
    prof = pods.server("prof")
    with lab_of(driver, pods.token("prof"), prof.url + "lab", shots, "instructor-prof-course-list") as page:
        assert COURSE in browser.file_names(page)
        menu = browser.nbgrader_menu_items(page)
        # grading happens in the course's grader service, not in the instructor's own server
        assert "Course List" in menu and "Assignment List" in menu and "Formgrader" not in menu, menu
        listing = _assignment_list(page)
        assert COURSE in listing and released in listing, listing
        browser.open_from_nbgrader_menu(page, "Course List")
        courses = page.locator("#formgrader_list")
        courses.get_by_text(COURSE).first.wait_for()
        link = courses.locator("a", has_text=COURSE).first.get_attribute("href")
        assert link and f"/services/{COURSE}/" in link, link


def test_the_grader_service_offers_the_formgrader_with_the_assignment(pods, released, driver, shots):
    grader = pods.grader(COURSE)
    with lab_of(driver, pods.token("prof"), grader.url + "lab", shots, "grader-intro-formgrader") as page:
        assert COURSE in browser.file_names(page)
        menu = browser.nbgrader_menu_items(page)
        assert "Formgrader" in menu, menu
        seen = []
        page.on("response", lambda r: seen.append(
            (r.url, r.status, r.headers.get("content-security-policy"))) if "/formgrader" in r.url else None)
        browser.open_from_nbgrader_menu(page, "Formgrader")
        formgrader = page.frame_locator("#formgrader-iframe iframe")
        try:
            formgrader.get_by_text(released).first.wait_for()
        except Exception as error:
            raise AssertionError(f"the formgrader did not show {released}; its responses: {seen}") from error
