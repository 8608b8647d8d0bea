"""One file's check against its schema (tasks.config.validation), from YAML text: no file is read.

The lines are the contract with a course's staff (`FILE:LINE: KEY.PATH: found
X; expected Y`), so they are written out here in full.
"""

from __future__ import annotations

import datetime

import pytest

from tasks.config import validation
from tasks.config.validation import MAX_PROBLEMS_PER_FILE, Problems, check_file, expectation, found, suggest
from tasks.config.yamldoc import load_text

COURSE = "courses:\n  - name: intro\n    repo: https://h.example/intro.git\n    instructors: [alice]\n"


def lines_of(file_name, text):
    problems = Problems("config")
    check_file(file_name, load_text(text), problems)
    return problems.lines


@pytest.mark.parametrize("value,shown", [
    (None, "nothing (null)"), (True, "true (a boolean)"), (False, "false (a boolean)"), ("", "an empty string"),
    ("abc", "'abc' (text)"), ("a" * 60, f"'{'a' * 60}' (text)"), ("a" * 61, f"'{'a' * 57}...' (text)"),
    (3, "3 (an integer)"), (2.5, "2.5 (a number)"), ([], "an empty list"), ([1], "a list of 1 item"),
    ([1, 2], "a list of 2 items"), ({}, "an empty mapping"), ({"a": 1}, "a mapping"),
    (b"x", "binary data (!!binary)"), (datetime.date(2026, 1, 2), "a date"),
    (datetime.datetime(2026, 1, 2, 3, 4), "a date and time"), ({1, 2}, "set")])
def test_found_says_what_was_written(value, shown):
    assert found(value) == shown


@pytest.mark.parametrize("rule,words", [
    ({"type": "string", "check_with": "email"}, "an email address such as staff@example.edu"),
    ({"type": "string", "allowed": ["a", "b"]}, "one of: a, b"),
    ({"type": "list", "schema": {"type": "string", "check_with": "email"}},
     "a list of items, each an email address such as staff@example.edu"),
    ({"type": "list", "schema": {"type": "string"}}, "a list of text"),
    ({"type": "dict", "schema": {"a": {}, "b": {}}}, "a mapping with the keys: a, b"),
    ({"type": "integer", "min": 1, "max": 9}, "an integer >= 1 and <= 9"),
    ({"type": "number", "min": 0}, "a number >= 0"), ({"type": "integer", "max": 5}, "an integer <= 5"),
    ({"type": "boolean"}, "true or false"), ({"type": "dict"}, "a mapping"), ({"type": "list"}, "a list"),
    ({"type": "string"}, "text"), ({"type": "binary"}, "binary"), ({}, "None")])
def test_expectation_in_words(rule, words):
    assert expectation(rule) == words


def test_suggestions():
    assert suggest("profle", ["profile", "release"]) == "; did you mean 'profile'?"
    assert suggest("zzz", ["profile", "release"]) == ""
    assert suggest(3, ["profile"]) == ""
    assert suggest("gk", ["local", "gke"]) == "; did you mean 'gke'?"


def test_problems_are_sorted_by_file_then_line_and_the_environment_first():
    problems = Problems("cfg")
    problems.add_file_problem("data.yaml", "bad data", 2)
    problems.add_file_problem("classroom.yaml", "late", 9)
    problems.add_file_problem("classroom.yaml", "early", 3)
    problems.add_file_problem("courses.yaml", "no line")
    problems.add_environment_problem("environment X: found y; expected z")
    assert problems.count == 5
    assert problems.lines == ["environment X: found y; expected z", "cfg/classroom.yaml:3: early",
                              "cfg/classroom.yaml:9: late", "cfg/courses.yaml: no line", "cfg/data.yaml:2: bad data"]


def test_problems_with_the_same_line_keep_their_order_and_unknown_files_go_last():
    problems = Problems("cfg")
    problems.add_file_problem("other.yaml", "other")
    problems.add_file_problem("courses.yaml", "second", 4)
    problems.add_file_problem("courses.yaml", "first", 4)
    problems.add("courses.yaml", None, ("courses", 0, "name"), "'x' (text)", lambda: "made late")
    assert problems.lines == ["cfg/courses.yaml: courses[0].name: found 'x' (text); expected made late",
                              "cfg/courses.yaml:4: second", "cfg/courses.yaml:4: first", "cfg/other.yaml: other"]


@pytest.mark.parametrize("extra", [1, 2])
def test_at_most_so_many_lines_per_file_then_a_count(extra):
    problems = Problems("cfg")
    for i in range(MAX_PROBLEMS_PER_FILE + extra):
        problems.add_file_problem("courses.yaml", f"problem {i}", i + 1)
    problems.add_file_problem("data.yaml", "shown", 1)
    lines = problems.lines
    assert problems.count == MAX_PROBLEMS_PER_FILE + extra + 1
    assert lines[:MAX_PROBLEMS_PER_FILE] == [f"cfg/courses.yaml:{i + 1}: problem {i}"
                                             for i in range(MAX_PROBLEMS_PER_FILE)]
    assert lines[MAX_PROBLEMS_PER_FILE:] == [
        f"cfg/courses.yaml: found {extra} more problem{'s' if extra > 1 else ''} in this file; expected none (the "
        f"first {MAX_PROBLEMS_PER_FILE} are shown: fix them and run again)", "cfg/data.yaml:1: shown"]


def test_not_a_mapping():
    assert lines_of("data.yaml", "") == ["config/data.yaml: found an empty file; expected a mapping with the keys: "
                                         "datasets"]
    assert lines_of("data.yaml", "- a\n") == ["config/data.yaml: found a list of 1 item; expected a mapping with the "
                                              "keys: datasets"]


def test_unknown_keys_are_named_with_the_closest_known_one():
    assert lines_of("courses.yaml", COURSE + "    instructor: [bob]\n") == [
        "config/courses.yaml:5: courses[0].instructor: found unknown key 'instructor'; expected one of: name, title, "
        "repo, ref, instructors, students, packages; did you mean 'instructors'?"]


def test_values_yaml_retypes_are_kept_as_written_or_refused():
    assert lines_of("courses.yaml", COURSE + "    ref: 2024\n") == []
    assert lines_of("courses.yaml", COURSE + "    ref: 1.10\n") == [
        "config/courses.yaml:5: courses[0].ref: found 1.10 (unquoted, so YAML 1.1 reads the number 1.1); expected "
        "a git branch, tag or commit such as main or v1.2: quote it to keep it as written, '1.10'"]
    assert lines_of("courses.yaml", COURSE + "    ref: 2026-01-02\n") == []
    assert lines_of("courses.yaml", COURSE + "    title: on\n") == [
        "config/courses.yaml:5: courses[0].title: found on (unquoted, so YAML 1.1 reads the boolean true); expected "
        "a single line of text (at most 1024 characters): quote it to keep it as written, 'on'"]


@pytest.mark.parametrize("written,line", [
    ("0x1F", "found 0x1F (unquoted, so YAML 1.1 reads the number 31); expected an integer >= 60 and <= 3600 written "
             "in decimal digits"),
    ("0123", "found 0123 (unquoted, so YAML 1.1 reads the number 83); expected an integer >= 60 and <= 3600 "
             "written in decimal digits"),
    ("on", "found on (unquoted, so YAML 1.1 reads the boolean true); expected an integer >= 60 and <= 3600"),
    (".inf", "found .inf (YAML reads the number inf); expected an integer >= 60 and <= 3600, a finite number"),
    ("2026-01-02", "found a date; expected an integer >= 60 and <= 3600"),
    ("59", "found 59 (an integer); expected an integer >= 60 and <= 3600"),
    ("'abc'", "found 'abc' (text); expected an integer >= 60 and <= 3600")])
def test_numbers_must_be_written_as_decimal_numbers(written, line):
    assert lines_of("classroom.yaml", f"cluster:\n  helm_timeout: {written}\n") == [
        f"config/classroom.yaml:2: cluster.helm_timeout: {line}"]


@pytest.mark.parametrize("written", ["600", "'600'", "6e2", "600.0", "+600"])
def test_decimal_forms_of_a_number_pass_the_walk(written):
    problems = Problems("config")
    doc = check_file("classroom.yaml", load_text(f"cluster:\n  helm_timeout: {written}\n"), problems)
    assert [line for line in problems.lines if "decimal digits" in line] == []
    if not problems.lines:
        assert doc["cluster"]["helm_timeout"] == 600


def test_each_kind_of_schema_error_gets_its_line():
    assert lines_of("classroom.yaml", "profile: gk\nhub: {tls: {mode: auto}}\nresources: {cpu_limit: 250m}\n"
                                      "culling: {every: 3}\nbuild: {platform: \"linux/amd64\\r\"}\n") == [
        "config/classroom.yaml:1: profile: found 'gk' (text); expected one of: local, gke; did you mean 'gke'?",
        "config/classroom.yaml:2: hub.tls.mode: found 'auto' (text); expected one of: autohttps, ingress, none; "
        "did you mean 'autohttps'?",
        "config/classroom.yaml:3: resources.cpu_limit: found '250m' (text); expected a number >= 0 and <= 4096; "
        "write 0.25 instead (JupyterHub counts CPUs, not Kubernetes millicores)",
        "config/classroom.yaml:4: culling.every: found 3 (an integer); expected an integer >= 30 and <= 2147483647",
        "config/classroom.yaml:5: build.platform: found 'linux/amd64\\r' (text); expected a build platform such as "
        "linux/amd64 or linux/arm64; it contains the non-printable character U+000D"]
    assert lines_of("courses.yaml", "courses:\n  - name: intro\n    instructors: []\n") == [
        "config/courses.yaml:2: courses[0].repo: found nothing (the key is missing); expected a git URL "
        "(https://HOST/PATH, ssh://HOST/PATH, git://HOST/PATH, file:///PATH or USER@HOST:PATH)",
        "config/courses.yaml:3: courses[0].instructors: found an empty list; expected at least 1 item(s)"]
    assert lines_of("classroom.yaml", "resources: {memory_limit: 2Gi}\n") == [
        "config/classroom.yaml:1: resources.memory_limit: found '2Gi' (text); expected a memory size JupyterHub reads: "
        "a number above 0 with K, M, G or T (powers of 1024) such as 512M or 2G, or a whole number of bytes; write "
        "'2G' instead (JupyterHub's K, M, G, T are Kubernetes' Ki, Mi, Gi, Ti)"]
    assert lines_of("classroom.yaml", "hub: 3\n") == [
        "config/classroom.yaml:1: hub: found 3 (an integer); expected a mapping with the keys: domain, static_ip_name, "
        "node_label, start_timeout, tls"]
    assert lines_of("classroom.yaml", "release: {name: null}\n") == []  # null: the default


def test_a_value_map_is_walked_too():
    assert lines_of("classroom.yaml", "build:\n  args: {PIP_INDEX: 1.10, OK: x}\n") == [
        "config/classroom.yaml:2: build.args.PIP_INDEX: found 1.10 (unquoted, so YAML 1.1 reads the number 1.1); "
        "expected a single line of text (at most 1024 characters): quote it to keep it as written, '1.10'"]


def test_the_normalized_document_has_every_default():
    problems = Problems("config")
    doc = check_file("courses.yaml", load_text(COURSE), problems)
    assert problems.lines == []
    assert doc == {"courses": [{"name": "intro", "repo": "https://h.example/intro.git", "instructors": ["alice"],
                                "title": "", "ref": "main", "students": [], "packages": []}]}


def test_rule_lookup_along_a_path():
    schema = {"a": {"type": "list", "schema": {"type": "dict", "schema": {"b": {"type": "string"}}}},
              "m": {"type": "dict", "valuesrules": {"type": "integer"}}, "s": {"type": "string"}}
    assert validation._rule_at(schema, ("a", 0, "b")) == {"type": "string"}
    assert validation._rule_at(schema, ("m", "any")) == {"type": "integer"}
    assert validation._rule_at(schema, ("s", "x")) is None
    assert validation._rule_at(schema, ("s", 0)) is None
    assert validation._rule_at(schema, ("nope",)) is None


@pytest.mark.parametrize("written,kept", [("true", "true"), ("false", "false"), ("1.5", "1.5"), ("2024", "2024")])
def test_an_unquoted_scalar_that_reads_back_as_written_is_kept_as_text(written, kept):
    problems = Problems("config")
    doc = check_file("courses.yaml", load_text(COURSE + f"    title: {written}\n"), problems)
    assert problems.lines == [] and doc["courses"][0]["title"] == kept


@pytest.mark.parametrize("written,reading", [
    ("yes", "the boolean true"), ("off", "the boolean false"), ("1.50", "the number 1.5"),
    ("2001-12-14 21:59:43", "the date and time 2001-12-14 21:59:43")])
def test_an_unquoted_scalar_that_reads_otherwise_is_refused(written, reading):
    assert lines_of("courses.yaml", COURSE + f"    title: {written}\n") == [
        f"config/courses.yaml:5: courses[0].title: found {written} (unquoted, so YAML 1.1 reads {reading}); expected "
        f"a single line of text (at most 1024 characters): quote it to keep it as written, '{written}'"]


def test_a_long_unquoted_scalar_is_shortened():
    written = "1." + "0" * 60  # over 60 characters: shortened (YAML reads numbers of at most 64)
    assert lines_of("courses.yaml", COURSE + f"    title: {written}\n") == [
        f"config/courses.yaml:5: courses[0].title: found '{written[:57]}...' (unquoted, so YAML 1.1 reads the "
        f"number 1.0); expected a single line of text (at most 1024 characters): quote it to keep it as written, "
        f"'{written}'"]


def test_a_scalar_yaml_cannot_read():
    lines = lines_of("courses.yaml", COURSE + "    ref: 2026-13-01\n")
    assert len(lines) == 1
    assert lines[0].startswith("config/courses.yaml:5: courses[0].ref: found 2026-13-01 (unquoted: YAML 1.1 reads a "
                               "date, and cannot: ")
    assert lines[0].endswith("; expected a git branch, tag or commit such as main or v1.2: quote it to keep it as "
                             "written, '2026-13-01'")
    number = lines_of("classroom.yaml", "cluster: {helm_timeout: 2026-13-01}\n")
    assert len(number) == 1 and number[0].endswith("; expected an integer >= 60 and <= 3600")  # no quoting advice


@pytest.mark.parametrize("key,expected", [
    ("cpu_limit", "a number >= 0 and <= 4096"),
    ("memory_limit", "a memory size JupyterHub reads: a number above 0 with K, M, G or T (powers of 1024) such as "
                     "512M or 2G, or a whole number of bytes")])
def test_hexadecimal_where_a_number_or_size_belongs(key, expected):
    assert lines_of("classroom.yaml", f"resources:\n  {key}: 0x10\n") == [
        f"config/classroom.yaml:2: resources.{key}: found 0x10 (unquoted, so YAML 1.1 reads the number 16); expected "
        f"{expected} written in decimal digits"]


def test_a_list_where_a_word_belongs():
    assert lines_of("classroom.yaml", "profile: [local, gke]\n") == [
        "config/classroom.yaml:1: profile: found a list of 2 items; expected one of: local, gke"]


def test_not_a_mapping_names_every_key():
    assert lines_of("classroom.yaml", "- a\n") == [
        "config/classroom.yaml: found a list of 1 item; expected a mapping with the keys: profile, release, images, "
        "build, buckets, chart, cluster, gcp, hub, auth, exchange, culling, resources, local, state"]


def test_errors_on_one_line_come_in_key_order():
    assert lines_of("classroom.yaml", "hub: {static_ip_name: Bad_Name, node_label: '='}\n") == [
        "config/classroom.yaml:1: hub.node_label: found '=' (text); expected a Kubernetes node label KEY=VALUE such "
        "as hub-node=true",
        "config/classroom.yaml:1: hub.static_ip_name: found 'Bad_Name' (text); expected a Google Cloud resource name "
        "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)"]


def test_a_problem_without_a_line_comes_before_the_first_line():
    problems = Problems("cfg")
    problems.add_file_problem("courses.yaml", "on line 1", 1)
    problems.add_file_problem("courses.yaml", "about the file")
    assert problems.lines == ["cfg/courses.yaml: about the file", "cfg/courses.yaml:1: on line 1"]


def test_expectation_of_a_list_of_labels():
    rule = {"type": "list", "schema": {"type": "string", "check_with": "dns_label"}}
    assert expectation(rule).startswith("a list of items, each a DNS-1123 label (")


def test_rule_lookup_does_not_index_a_mapping_or_guess():
    schema = {"d": {"type": "dict", "schema": {"k": {"type": "string"}}}, "plain": {"type": "dict"}}
    assert validation._rule_at(schema, ("d", 0)) is None
    assert validation._rule_at(schema, ("plain", "k")) is None


def test_errors_on_one_line_come_in_index_order_past_ten():
    logins = ", ".join(f"A{i}" for i in range(12))
    lines = lines_of("courses.yaml", f"courses:\n  - {{name: intro, repo: 'https://h.example/r.git', "
                                     f"instructors: [{logins}]}}\n")
    assert [line.split(": found")[0] for line in lines] == [
        f"config/courses.yaml:2: courses[0].instructors[{i}]" for i in range(12)]


@pytest.mark.parametrize("length,shortened", [(60, False), (61, True)])
def test_unquoted_text_is_shown_as_written_up_to_sixty_characters(length, shortened):
    written = "1." + "0" * (length - 2)
    line = lines_of("courses.yaml", COURSE + f"    title: {written}\n")[0]
    shown = f"'{written[:57]}...'" if shortened else written
    assert line.startswith(f"config/courses.yaml:5: courses[0].title: found {shown} (unquoted, so YAML 1.1 reads")
