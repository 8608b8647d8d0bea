"""The reporter's one line per task, and progress that a CI log can hold."""

from __future__ import annotations

import io

from doit.task import Task

from tasks.run import reporter
from tasks.run.progress import Progress, human_bytes


class Note:
    def __init__(self, note):
        self.note = note

    def __call__(self, task, values):
        return True


def _reporter():
    stream = io.StringIO()
    return reporter.ClassroomReporter(stream, {}), stream


def test_an_executed_task_says_what_it_did_after_doits_own_line():
    report, stream = _reporter()
    task = Task("image:base", [lambda: True])
    task.values = {"tag": "abc", reporter.OUTCOME: "nothing built: already in the registry"}
    report.execute_task(task)
    report.add_success(task)
    assert stream.getvalue() == ".  image:base\n   image:base: nothing built: already in the registry\n"


def test_an_up_to_date_task_says_the_note_of_its_check():
    report, stream = _reporter()
    task = Task("release:jupyterhub", [lambda: True], uptodate=[Note(""), Note("already deployed: chart 1.0")])
    report.skip_uptodate(task)
    assert stream.getvalue() == "-- release:jupyterhub\n   release:jupyterhub: already deployed: chart 1.0\n"


def test_silent_tasks_stay_silent():
    report, stream = _reporter()
    plain = Task("chart:package", [lambda: True])
    report.add_success(plain)
    hidden = Task("_helper", [lambda: True])
    hidden.values = {reporter.OUTCOME: "x"}
    report.add_success(hidden)
    assert stream.getvalue() == ""


def test_the_result_leaves_the_outcome_out():
    task = Task("image:base", [lambda: True])
    task.values = {"tag": "t", "ref": "r", reporter.OUTCOME: "built"}
    assert reporter.result_without_outcome(task) == {"tag": "t", "ref": "r"}


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == \
        ["0 B", "1023 B", "1.5 KB", "5.0 MB", "3.0 GB"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_says_each_quarter_and_after_a_quiet_interval_not_each_chunk():
    lines, clock = [], Clock()
    progress = Progress("push image:base", lines.append, every=10, clock=clock)
    for done in range(0, 1001, 10):  # 100 chunks of one layer, quickly
        progress.update("layer1", done, 1000)
    assert lines == ["push image:base: 250 B of 1000 B (25%)", "push image:base: 500 B of 1000 B (50%)",
                     "push image:base: 750 B of 1000 B (75%)", "push image:base: 1000 B of 1000 B (100%)"]
    lines.clear()
    slow = Progress("upload", lines.append, every=10, clock=clock)
    slow.update("f", 1, 1000)
    clock.now += 11
    slow.update("f", 2, 1000)
    slow.update("f", 3, 1000)  # within the interval, under a quarter more: quiet
    assert lines == ["upload: 2 B of 1000 B (0%)"]
    clock.now += 1.5
    assert slow.finish() == "upload: done, 3 B in 12.5 s"


def test_progress_adds_parts_and_ignores_no_progress():
    lines, clock = [], Clock()
    progress = Progress("push", lines.append, clock=clock)
    progress.update("a", 0, 100)
    progress.update("b", 0, 100)
    progress.update("a", 0, 100)
    assert lines == []
    progress.update("a", 100, 100)
    assert lines == ["push: 100 B of 200 B (50%)"]


def test_human_bytes_at_the_unit_boundaries():
    assert human_bytes(1024) == "1.0 KB"          # 1024 is a KB, not 1024 B
    assert human_bytes(1024 ** 2) == "1.0 MB"
    assert human_bytes(2 * 1024 ** 5) == "2048.0 TB"  # the largest unit stays
    assert human_bytes(1023 * 1024 + 1023) == "1024.0 KB"  # rounding, not a 1025 divisor
    assert human_bytes(10 * 1024 ** 3) == "10.0 GB"


def test_a_transfer_of_unknown_size_says_bytes_only_after_the_interval():
    lines, clock = [], Clock()
    progress = Progress("copy gs://b/x", lines.append, every=10, clock=clock)
    clock.now = 5.0
    progress.update("a", 1, 0)  # no total known: no fraction, so no quarter line
    assert lines == []
    clock.now = 10.0  # exactly the interval since the start: a line
    progress.update("a", 2, 0)
    assert lines == ["copy gs://b/x: 2 B"]
    clock.now = 19.5
    progress.update("a", 3, 0)
    assert lines == ["copy gs://b/x: 2 B"]


def test_the_first_byte_counts_and_quarters_are_counted_from_where_a_line_was_said():
    lines, clock = [], Clock()
    progress = Progress("push", lines.append, every=10, clock=clock)
    clock.now = 10.0
    progress.update("a", 1, 400)  # the very first byte, after the interval
    assert lines == ["push: 1 B of 400 B (0%)"]
    progress.update("a", 150, 400)  # 37%: more than a quarter since 0
    progress.update("a", 190, 400)  # 47%: under the next quarter (50%)
    assert lines[-1] == "push: 150 B of 400 B (38%)" and len(lines) == 2
    progress.update("a", 200, 400)  # 50%
    assert lines[-1] == "push: 200 B of 400 B (50%)"


def test_finish_says_the_bytes_and_the_elapsed_seconds():
    lines, clock = [], Clock()
    clock.now = 100.0
    progress = Progress("upload", lines.append, clock=clock)
    progress.update("a", 2048, 2048)
    clock.now = 104.0
    assert progress.finish() == "upload: done, 2.0 KB in 4.0 s" == lines[-1]


def test_checks_without_a_note_and_hidden_tasks_add_no_line():
    report, stream = _reporter()
    plain = Task("chart:publish", [lambda: True], uptodate=[lambda: True])
    report.skip_uptodate(plain)
    hidden = Task("_private", [lambda: True], uptodate=[Note("already there")])
    report.skip_uptodate(hidden)
    assert stream.getvalue() == "-- chart:publish\n"
    assert reporter.note_of(plain) == ""
