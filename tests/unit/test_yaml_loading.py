"""The strict YAML loader and the validator's walk: bounded work, no silent retyping."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from cerberus import errors

from tasks.config import yamldoc
from tasks.config.validation import Problems, check_file
from tasks.config.yamldoc import YamlError, load_text, read_limited
from tasks.data.sources import DatasetError, fetch_into, identity


def test_anchors_and_merge_keys_still_work_within_the_budget():
    doc = load_text("defaults: &defaults {ref: main, instructors: [alice]}\n"
                    "courses:\n"
                    "  - <<: *defaults\n"
                    "    name: intro\n"
                    "    ref: v2\n"
                    "  - <<: [*defaults, {ref: other, title: T}]\n"
                    "    name: advanced\n")

    assert doc.data["courses"] == [
        {"ref": "v2", "instructors": ["alice"], "name": "intro"},           # a key written here wins
        {"ref": "main", "instructors": ["alice"], "title": "T", "name": "advanced"},  # the first merged wins
    ]
    assert doc.line_of(("courses", 0, "ref")) == 5
    assert doc.line_of(("courses", 1, "ref")) == 1  # a merged value is written at its anchor


def test_an_overridden_merged_value_leaves_no_trace():
    # the merged 1.10 would be refused ("quote it"); the key written in the mapping replaces it
    doc = load_text("d: &d {ref: 1.10}\nc: {<<: *d, ref: main}\n")
    assert doc.data["c"] == {"ref": "main"}
    assert ("c", "ref") not in doc.unquoted


@pytest.mark.parametrize("text,problem", [
    ("a: &a [x]\nb: [" + ", ".join(["*a"] * (yamldoc.MAX_ALIASES + 1)) + "]\n",
     f"found more than {yamldoc.MAX_ALIASES} aliases"),
    ("a: &a [" + ", ".join(["x"] * 999) + "]\nb: [*a, *a, *a, *a, *a, *a]\n",
     f"found aliases that expand to more than {yamldoc.MAX_ALIAS_VALUES:,} values"),
    ("a: &a {k: v}\nb: &b [" + ", ".join(["*a"] * 10) + "]\nc: &c [" + ", ".join(["*b"] * 10) + "]\n"
     "d: [" + ", ".join(["*c"] * 10) + "]\n",
     f"found aliases that expand to more than {yamldoc.MAX_MAPPINGS:,} mappings"),
    ("a: &a [*a]\n", "a[0]: found an alias to a value that contains it"),
    ("a: [" + ", ".join(["x"] * yamldoc.MAX_VALUES) + "]\n", f"found more than {yamldoc.MAX_VALUES:,} values"),
    ("a:\n" + "".join("  " * i + "- \n" for i in range(1, yamldoc.MAX_DEPTH + 3)), "found nesting deeper than"),
    ("a: 1\n" + "#" * yamldoc.MAX_BYTES, "found a file of"),
    ("*a : 1\n", "found undefined alias"),
])
def test_budgets(text, problem):
    with pytest.raises(YamlError) as refused:
        load_text(text)
    assert problem in refused.value.problem


def test_plain_scalars_that_are_not_text_keep_their_written_form():
    doc = load_text("a: 1.10\nb: [on, no, 0123, '0123']\nc: text\nd: 2026-13-01\ne: " + "9" * 100 + "\n")
    assert doc.unquoted[("a",)] == ("1.10", 1.1)
    assert doc.unquoted[("b", 0)] == ("on", True)
    assert doc.unquoted[("b", 2)] == ("0123", 83)
    assert ("b", 3) not in doc.unquoted and ("c",) not in doc.unquoted
    assert doc.data["d"] == "2026-13-01" and isinstance(doc.unquoted[("d",)][1], yamldoc.Unreadable)
    assert isinstance(doc.unquoted[("e",)][1], yamldoc.Unreadable)


def _problems(file_name, text):
    problems = Problems("config")
    document = check_file(file_name, load_text(text), problems)
    return problems.lines, document


def test_text_that_reads_back_as_written_is_kept_as_text():
    lines, document = _problems("courses.yaml", "courses:\n  - {name: intro, repo: 'https://h.example/r', "
                                                "instructors: [alice, 2024], ref: 2024}\n")
    assert lines == []
    assert document["courses"][0]["ref"] == "2024"
    assert document["courses"][0]["instructors"] == ["alice", "2024"]


def test_quoted_numbers_are_read_exactly():
    lines, document = _problems("classroom.yaml", "local: {port: '8889'}\nresources: {cpu_limit: '0.5'}\n")
    assert lines == []
    assert document["local"]["port"] == 8889 and document["resources"]["cpu_limit"] == 0.5
    lines, _ = _problems("classroom.yaml", "local: {port: '０８８８９'}\nculling: {timeout: '0123'}\n")
    assert [line.split(": found")[0] for line in lines] == ["config/classroom.yaml:1: local.port",
                                                             "config/classroom.yaml:2: culling.timeout"]


def test_validation_does_not_sort_per_error(monkeypatch):
    # cerberus re-sorted its error list on every error: n errors cost n²/2 comparisons (8,000
    # unknown keys took 268 s).  Counted, not timed: comparisons of cerberus errors stay at zero.
    comparisons = [0]
    original = errors.ValidationError.__lt__

    def counting(self, other):
        comparisons[0] += 1
        return original(self, other)

    monkeypatch.setattr(errors.ValidationError, "__lt__", counting)
    text = ("courses:\n  - name: intro\n    repo: https://h.example/r\n    instructors: [alice]\n"
            "    students: [" + ", ".join(f"S{i}" for i in range(2000)) + "]\n")

    lines, _ = _problems("courses.yaml", text)

    assert len(lines) == 26 and lines[-1].startswith("config/courses.yaml: found 1,975 more problems")
    assert comparisons[0] == 0


def test_read_limited_never_blocks_on_a_fifo(tmp_path):
    fifo = tmp_path / "classroom.yaml"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_refusal(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # unblock the reader so the test run can go on, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert outcome == ["found a FIFO (named pipe); expected a regular YAML file"]


def _refusal(path):
    try:
        read_limited(path)
    except YamlError as exc:
        return exc.problem
    return None


@pytest.mark.parametrize("operation", ["identity", "stage"])
def test_git_never_reads_a_source_as_an_option(tmp_path, operation):
    # validation refuses such a source; the adapter must be safe on its own as well
    marker = tmp_path / "owned"
    source = f"--upload-pack=touch {marker};"
    with pytest.raises(DatasetError):
        if operation == "identity":
            identity(source)
        else:
            fetch_into(source, tmp_path / "data", "git:0")
    assert not marker.exists()


def test_git_sources_still_work(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "flights.csv").write_text("a,b\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"],
                   check=True)
    source = f"file://{repo}"

    commit = identity(source)
    fetch_into(source, tmp_path / "data", commit)

    assert (tmp_path / "data" / "flights.csv").read_text() == "a,b\n"
