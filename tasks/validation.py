"""Checking the config files: cerberus for each file, then the rules across fields.

Every problem becomes one line, `FILE:LINE: KEY.PATH: found X; expected Y`, so
that a course's staff can fix all of them in one pass.
"""

from __future__ import annotations

import difflib

import cerberus
from cerberus import errors

from tasks.formats import FORMATS, HINTS
from tasks.schema import FILES
from tasks.yamldoc import YamlDoc

FORMAT_MISMATCH = errors.ErrorDefinition(0x4E, "check_with")


def _format_checker(name, fmt):
    def check(self, field, value):
        if isinstance(value, str) and not fmt.check(value):
            self._error(field, FORMAT_MISMATCH, name)
    return check


# Cerberus learns the names usable in `check_with` when the class is created,
# so the format checkers must be in the class body, not added afterwards.
_Validator = type("_Validator", (cerberus.Validator,), {
    f"_check_with_{name}": _format_checker(name, fmt) for name, fmt in FORMATS.items()})

_VALIDATORS = {}  # file name -> validator; schemas are checked once per process


def _validator(file_name):
    if file_name not in _VALIDATORS:
        _VALIDATORS[file_name] = _Validator(FILES[file_name], allow_unknown=False)
    return _VALIDATORS[file_name]


class Problems:
    """Collects the error lines of all files: by file, then by line number."""

    def __init__(self, display_dir: str):
        self.display_dir = display_dir
        self._found: list[tuple[int, int, int, str]] = []

    @property
    def lines(self) -> list[str]:
        return [text for *_, text in sorted(self._found, key=lambda p: p[:3])]

    def add(self, file_name: str, doc: YamlDoc | None, path: tuple, found: str, expected: str):
        line = doc.line_of(path) if doc is not None else None
        key = key_path(path)
        self._add(file_name, line, f"{key + ': ' if key else ''}found {found}; expected {expected}")

    def add_file_problem(self, file_name: str, problem: str, line: int | None = None):
        self._add(file_name, line, problem)

    def add_environment_problem(self, text: str):
        self._found.append((-1, 0, len(self._found), text))

    def _add(self, file_name, line, text):
        where = f"{self.display_dir}/{file_name}" + (f":{line}" if line else "")
        order = list(FILES).index(file_name) if file_name in FILES else len(FILES)
        self._found.append((order, line or 0, len(self._found), f"{where}: {text}"))


def key_path(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _type_name(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def found(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (text)" if value else "an empty string"
    if isinstance(value, (int, float)):
        return f"{value} ({_type_name(value)})"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return _type_name(value)


_TYPE_WORDS = {"string": "text", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "list": "a list", "dict": "a mapping"}


def expectation(rule: dict) -> str:
    """What a schema rule accepts, in words."""
    if "check_with" in rule:
        return FORMATS[rule["check_with"]].expected
    if "allowed" in rule:
        return "one of: " + ", ".join(map(str, rule["allowed"]))
    kind = rule.get("type")
    if kind == "list" and "schema" in rule:
        return f"a list of {_plural(expectation(rule['schema']))}"
    if kind == "dict" and "schema" in rule:
        return "a mapping with the keys: " + ", ".join(rule["schema"])
    words = _TYPE_WORDS.get(kind, str(kind))
    bounds = []
    if "min" in rule:
        bounds.append(f">= {rule['min']}")
    if "max" in rule:
        bounds.append(f"<= {rule['max']}")
    return words + (" " + " and ".join(bounds) if bounds else "")


def _plural(text: str) -> str:
    for article in ("a ", "an "):
        if text.startswith(article):
            return "items, each " + text
    return text


def _rule_at(schema: dict, path: tuple) -> dict | None:
    """The rule of the key at `path` (list indices skipped), or None."""
    rule = {"type": "dict", "schema": schema}
    for part in path:
        if isinstance(part, int):
            rule = rule.get("schema") if rule.get("type") == "list" else None
        elif rule.get("type") == "dict" and isinstance(rule.get("schema"), dict):
            rule = rule["schema"].get(part)
        else:
            rule = None
        if not isinstance(rule, dict):
            return None
    return rule


def suggest(word, choices) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _leaves(error_list):
    for error in error_list:
        if error.is_group_error:
            yield from _leaves(error.child_errors)
        else:
            yield error


def check_file(file_name: str, doc: YamlDoc, problems: Problems):
    """Validate one file's data; return the normalized document (possibly partial)."""
    schema = FILES[file_name]
    data = doc.data
    if not isinstance(data, dict):
        shown = "an empty file" if data is None else found(data)
        problems.add(file_name, doc, (), shown, "a mapping with the keys: " + ", ".join(schema))
        return None
    validator = _validator(file_name)
    validator.validate(data)
    for error in _leaves(validator._errors):
        _report(file_name, doc, schema, error, problems)
    return validator.document


def _hint(rule: dict, value) -> str:
    """The rule's own advice for this value ("; write '2G' instead ..."), or ""."""
    meta = rule.get("meta")
    name = meta.get("hint") if isinstance(meta, dict) else None
    return HINTS[name](value) if name in HINTS else ""


def _report(file_name, doc, schema, error, problems: Problems):
    path = tuple(error.document_path)
    rule = _rule_at(schema, path) or {}
    value = error.value
    hint = _hint(rule, value)
    if error.code == errors.UNKNOWN_FIELD.code:
        parent = _rule_at(schema, path[:-1]) or {}
        keys = list(parent.get("schema", {}))
        problems.add(file_name, doc, path, f"unknown key {path[-1]!r}",
                     "one of: " + ", ".join(keys) + suggest(path[-1], keys))
    elif error.code == errors.REQUIRED_FIELD.code:
        problems.add(file_name, doc, path, "nothing (the key is missing)", expectation(rule))
    elif error.code in (errors.UNALLOWED_VALUE.code,):
        problems.add(file_name, doc, path, found(value),
                     expectation(rule) + suggest(value, rule.get("allowed", ())))
    elif error.code == FORMAT_MISMATCH.code:
        problems.add(file_name, doc, path, found(value), FORMATS[error.info[0]].expected + hint)
    elif error.code == errors.MIN_LENGTH.code:
        problems.add(file_name, doc, path, found(value), f"at least {error.constraint} item(s)")
    elif error.code in (errors.MIN_VALUE.code, errors.MAX_VALUE.code):
        problems.add(file_name, doc, path, found(value), expectation(rule) + hint)
    elif error.code in (errors.BAD_TYPE.code, errors.NOT_NULLABLE.code,
                        errors.EMPTY_NOT_ALLOWED.code, errors.BAD_TYPE_FOR_SCHEMA.code):
        problems.add(file_name, doc, path, found(value), expectation(rule) + hint)
    else:  # a rule this module has no wording for yet: still one clean line
        problems.add(file_name, doc, path, found(value),
                     f"{expectation(rule)} (failed rule {error.rule or error.code})")
