"""The schema's building blocks, as cerberus applies them (tasks.config.schema).

The rule builders run once, when the schema module is imported; here each is
called directly and its rule handed to the project's cerberus Validator, so what is
tested is what the rule does to a value: the default it fills in, what it
coerces (quoted numbers and booleans, ASCII digits only, no leading zero) and
what it refuses.  No file is read.
"""

from __future__ import annotations

import pytest

from tasks.config import schema
from tasks.config.validation import _Validator  # cerberus, knowing the formats' `check_with` names


def normalized(rule, document):
    """(normalized document or None, error rule names) of `document` under {"x": rule}."""
    validator = _Validator({"x": rule})
    if validator.validate(document):
        return validator.document, set()
    return None, set(_rules_broken(validator._errors))


def _rules_broken(errors):
    for error in errors:
        yield from _rules_broken(error.child_errors) if error.is_group_error else [error.rule]


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("7", 7), (" 42 ", 42), ("9" * 18, int("9" * 18)), ("9" * 19, "9" * 19), ("0123", "0123"),
    ("-1", "-1"), ("+1", "+1"), ("1.0", "1.0"), ("٣", "٣"), ("1_000", "1_000"), ("", ""), (7, 7), (None, None)])
def test_quoted_integers(text, expected):
    assert schema._to_int(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("2", 2), ("0.5", 0.5), (".5", 0.5), (" 1.25 ", 1.25), ("1." + "5" * 15, float("1." + "5" * 15)),
    ("1." + "5" * 16, "1." + "5" * 16), ("9" * 15, int("9" * 15)), ("9" * 16, "9" * 16), ("01.5", "01.5"),
    ("1.", "1."), ("-0.5", "-0.5"), ("1e3", "1e3"), ("500m", "500m"), (2.5, 2.5)])
def test_quoted_numbers(text, expected):
    result = schema._to_number(text)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value,expected", [
    ("true", True), ("True", True), (" yes ", True), ("YES", True), ("false", False), ("No", False),
    ("on", "on"), ("1", "1"), ("", ""), (True, True), (False, False), (1, 1)])
def test_quoted_booleans(value, expected):
    result = schema._to_bool(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value,expected", [
    (True, "true"), (False, "false"), ("1024", 1024), ("2G", "2G"), (512, 512), ("0x10", "0x10")])
def test_memory_sizes_read_digits_as_bytes_and_never_a_boolean(value, expected):
    result = schema._to_byte_size(value)
    assert result == expected and type(result) is type(expected)


def test_string_rule_defaults_and_emptiness():
    assert normalized(schema.string(default="main"), {}) == ({"x": "main"}, set())
    assert normalized(schema.string(default="main"), {"x": "dev"}) == ({"x": "dev"}, set())
    assert normalized(schema.string(default="main"), {"x": ""})[1] == {"empty"}
    assert normalized(schema.string(default="main"), {"x": 3})[1] == {"type"}
    assert normalized(schema.string(required=True), {})[1] == {"required"}
    assert normalized(schema.string(required=True, default="x"), {})[1] == {"required"}  # required wins
    assert normalized(schema.string(), {}) == ({}, set())  # neither: may be left out, nothing filled in
    assert normalized(schema.string(empty=True), {"x": ""}) == ({"x": ""}, set())
    allowed = schema.string(default="a", allowed=("a", "b"))
    assert normalized(allowed, {"x": "b"}) == ({"x": "b"}, set())
    assert normalized(allowed, {"x": "c"})[1] == {"allowed"}


def test_string_rule_names_its_format():
    assert schema.string("dns_label")["check_with"] == "dns_label"
    assert "check_with" not in schema.string()


def test_optional_is_an_empty_string_when_left_out():
    assert normalized(schema.optional(), {}) == ({"x": ""}, set())
    assert normalized(schema.optional(), {"x": ""}) == ({"x": ""}, set())
    assert schema.optional("hostname")["check_with"] == "hostname"


def test_integer_rule():
    rule = schema.integer(600, minimum=60, maximum=3600)
    assert normalized(rule, {}) == ({"x": 600}, set())
    assert normalized(rule, {"x": "60"}) == ({"x": 60}, set())
    assert normalized(rule, {"x": 3600}) == ({"x": 3600}, set())
    assert normalized(rule, {"x": 59})[1] == {"min"}
    assert normalized(rule, {"x": 3601})[1] == {"max"}
    assert normalized(rule, {"x": 1.5})[1] == {"type"}
    unbounded_below = schema.integer(0)
    assert normalized(unbounded_below, {"x": -5}) == ({"x": -5}, set())
    assert normalized(unbounded_below, {"x": 2**31 - 1}) == ({"x": 2**31 - 1}, set())
    assert normalized(unbounded_below, {"x": 2**31})[1] == {"max"}  # what every consumer can hold


def test_number_rule():
    rule = schema.number(0.25, maximum=4096, hint="cpu")
    assert normalized(rule, {}) == ({"x": 0.25}, set())
    assert normalized(rule, {"x": "0.5"}) == ({"x": 0.5}, set())
    assert normalized(rule, {"x": 0}) == ({"x": 0}, set())
    assert normalized(rule, {"x": -0.5})[1] == {"min"}
    assert normalized(rule, {"x": 4097})[1] == {"max"}
    assert rule["meta"] == {"hint": "cpu"}
    plain = schema.number(1)
    assert "meta" not in plain and normalized(plain, {"x": 10**9}) == ({"x": 10**9}, set())
    assert normalized(schema.number(1, minimum=1), {"x": 0.5})[1] == {"min"}


def test_memory_size_rule():
    rule = schema.memory_size("2G")
    assert normalized(rule, {}) == ({"x": "2G"}, set())
    assert normalized(rule, {"x": "1610612736"}) == ({"x": 1610612736}, set())
    assert normalized(rule, {"x": 0})[1] == {"min"}
    assert normalized(rule, {"x": 1}) == ({"x": 1}, set())  # one byte: silly, but what JupyterHub reads
    assert normalized(rule, {"x": 2**63})[1] == {"max"}
    assert normalized(rule, {"x": 2**63 - 1}) == ({"x": 2**63 - 1}, set())
    assert normalized(rule, {"x": True})[1] == {"check_with"}  # read as the text "true", no size
    assert rule["check_with"] == "jupyterhub_bytes" and rule["meta"] == {"hint": "jupyterhub_bytes"}


def test_boolean_rule():
    assert normalized(schema.boolean(True), {}) == ({"x": True}, set())
    assert normalized(schema.boolean(False), {"x": "yes"}) == ({"x": True}, set())
    assert normalized(schema.boolean(False), {"x": "maybe"})[1] == {"type"}


def test_string_list_rule():
    rule = schema.string_list("username", default=("a",))
    assert normalized(rule, {}) == ({"x": ["a"]}, set())
    assert normalized(schema.string_list("username"), {}) == ({"x": []}, set())
    required = schema.string_list("username", required=True, minlength=1)
    assert normalized(required, {})[1] == {"required"}
    assert normalized(required, {"x": []})[1] == {"minlength"}
    assert normalized(required, {"x": ["a"]}) == ({"x": ["a"]}, set())
    assert normalized(schema.string_list(None), {"x": [3]})[1] == {"type"}
    assert normalized(schema.string_list(None), {"x": [""]})[1] == {"empty"}
    assert rule["schema"]["check_with"] == "username" and "minlength" not in rule


def test_a_section_may_be_left_out_and_is_filled_in():
    rule = schema.section({"a": schema.integer(1), "b": schema.optional()})
    assert normalized(rule, {}) == ({"x": {"a": 1, "b": ""}}, set())
    assert normalized(rule, {"x": {"a": "2"}}) == ({"x": {"a": 2, "b": ""}}, set())
    assert normalized(rule, {"x": {"c": 1}})[1] == {None}  # cerberus: an unknown key breaks no named rule


def test_every_classroom_key_has_a_default():
    # the whole of classroom.yaml may be left out: `{}` is a complete local classroom
    validator = _Validator(schema.CLASSROOM)
    assert validator.validate({}), validator.errors
    assert validator.document["profile"] == "local" and validator.document["auth"]["type"] == "dummy"
