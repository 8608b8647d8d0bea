"""Checking the config files: cerberus for each file, then the rules across fields.

Every problem becomes one line, `FILE:LINE: KEY.PATH: found X; expected Y`, so
that a course's staff can fix all of them in one pass.  Validation is linear
in the size of the file and in the number of problems (cerberus sorts its
whole error list on every error, so `_Validator` keeps them unsorted and
`Problems` sorts once), and at most `MAX_PROBLEMS_PER_FILE` lines per file are
shown, then a count of the rest.

Before cerberus sees a document, one walk along the schema refuses unknown
keys and the scalars YAML 1.1 typed differently from what was written
(`ref: 1.10` read as 1.1, `on` read as true, `0123` read as 83): where text
is expected such a value is kept only if it reads back exactly as written,
otherwise the line says "quote it".
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from typing import Callable, Union

import cerberus
from cerberus import errors

from tasks.config.formats import FORMATS, HINTS, control_characters
from tasks.config.schema import FILES
from tasks.config.yamldoc import Unreadable, YamlDoc, key_path

FORMAT_MISMATCH = errors.ErrorDefinition(0x4E, "check_with")
MAX_PROBLEMS_PER_FILE = 25


def _format_checker(name, fmt):
    def check(self, field, value):
        if isinstance(value, str) and not fmt.check(value):
            self._error(field, FORMAT_MISMATCH, name)
    return check


def _add_errors(self, *args):
    """cerberus's `_error`, minus the bookkeeping that made it quadratic in the number of errors.

    On every new error cerberus re-sorts the validator's whole error list and
    a node of its schema error tree, and files the error (and again every
    error inside a group error) into its document error tree: 8,000 unknown
    keys took 268 s.  Here errors are only appended, and `Problems` sorts the
    lines once.  Nothing this module uses reads those trees (cerberus 1.3
    consults the document tree only to stop a *list* of coercers, and every
    `coerce` in tasks.config.schema is a single function)."""
    if len(args) == 1:
        self._errors.extend(args[0])
    else:
        cerberus.Validator._error(self, *args)  # builds the error, then calls back with [error]


# Cerberus learns the names usable in `check_with` when the class is created,
# so the format checkers must be in the class body, not added afterwards.
_Validator = type("_Validator", (cerberus.Validator,), {
    "_error": _add_errors,
    **{f"_check_with_{name}": _format_checker(name, fmt) for name, fmt in FORMATS.items()}})

_VALIDATORS = {}  # file name -> validator; schemas are checked once per process


def _validator(file_name):
    if file_name not in _VALIDATORS:
        _VALIDATORS[file_name] = _Validator(FILES[file_name], allow_unknown=False)
    return _VALIDATORS[file_name]


Text = Union[str, Callable[[], str]]  # a line's text, or how to make it (only shown lines are made)


class Problems:
    """Collects the error lines of all files: by file, then by line number; at most
    MAX_PROBLEMS_PER_FILE lines per file, then one line counting the rest."""

    def __init__(self, display_dir: str):
        self.display_dir = display_dir
        self._found: list[tuple] = []  # (file order, line, sequence, file name, where, text)

    @property
    def count(self) -> int:
        """Every problem found, shown or not."""
        return len(self._found)

    @property
    def lines(self) -> list[str]:
        shown, hidden, per_file = [], {}, {}
        for order, line, _, file_name, where, text in sorted(self._found, key=lambda p: p[:3]):
            per_file[file_name] = per_file.get(file_name, 0) + 1
            if file_name is None or per_file[file_name] <= MAX_PROBLEMS_PER_FILE:
                text = text() if callable(text) else text
                shown.append((order, line, f"{where}: {text}" if where else text))
            else:
                hidden[file_name] = (order, hidden.get(file_name, (0, 0))[1] + 1)
        for file_name, (order, count) in hidden.items():
            shown.append((order, math.inf, f"{self.display_dir}/{file_name}: found {count:,} more "
                          f"problem{'s' if count != 1 else ''} in this file; expected none (the first "
                          f"{MAX_PROBLEMS_PER_FILE} are shown: fix them and run again)"))
        return [text for *_, text in sorted(shown, key=lambda p: p[:2])]

    def add(self, file_name: str, doc: YamlDoc | None, path: tuple, found: str, expected: Text):
        line = doc.line_of(path) if doc is not None else None

        def text():  # made only for the lines shown: a file may have thousands of problems
            key = key_path(path)
            return f"{key + ': ' if key else ''}found {found}; expected {expected() if callable(expected) else expected}"
        self._add(file_name, line, text)

    def add_file_problem(self, file_name: str, problem: str, line: int | None = None):
        self._add(file_name, line, problem)

    def add_environment_problem(self, text: str):
        self._found.append((-1, 0, len(self._found), None, "", text))

    def _add(self, file_name, line, text):
        where = f"{self.display_dir}/{file_name}" + (f":{line}" if line else "")
        order = list(FILES).index(file_name) if file_name in FILES else len(FILES)
        self._found.append((order, line or 0, len(self._found), file_name, where, text))


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
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    if isinstance(value, datetime.datetime):
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
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
        elif rule.get("type") == "dict" and "valuesrules" in rule:
            rule = rule["valuesrules"]
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
    walk = _SchemaWalk(file_name, doc, problems)
    data = walk.value(data, {"type": "dict", "schema": schema}, ())
    validator = _validator(file_name)
    validator.validate(data)
    # in document order, as cerberus (which sorted on every error) gave them; sorted once here
    for error in sorted(_leaves(validator._errors), key=lambda e: _path_order(e.document_path)):
        path = tuple(error.document_path)
        if not any(path[:end] in walk.refused for end in range(len(path) + 1)):
            _report(file_name, doc, schema, error, problems)
    return validator.document


def _path_order(path) -> tuple:
    """A sort key for key paths that mix list indices and names."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in path)


class _SchemaWalk:
    """One pass over a document along its schema, before cerberus.

    Unknown keys are reported and dropped (cerberus is never given thousands
    of them); a scalar YAML 1.1 typed as something other than what was
    written is kept, refused or turned back into its text (see module doc).
    `refused`: the key paths already reported, so cerberus' errors there are
    not shown twice."""

    def __init__(self, file_name: str, doc: YamlDoc, problems: Problems):
        self.file_name, self.doc, self.problems = file_name, doc, problems
        self.refused: set[tuple] = set()

    def value(self, value, rule, path):
        kind = rule.get("type")
        if isinstance(value, dict) and kind == "dict":
            if isinstance(rule.get("schema"), dict):
                return self._mapping(value, rule["schema"], path)
            if "valuesrules" in rule:
                return {key: self.value(item, rule["valuesrules"], path + (key,)) for key, item in value.items()}
            return value
        if isinstance(value, list) and kind == "list" and isinstance(rule.get("schema"), dict):
            return [self.value(item, rule["schema"], path + (i,)) for i, item in enumerate(value)]
        if path in self.doc.unquoted:
            return self._unquoted(value, rule, path)
        return value

    def _mapping(self, mapping, schema, path):
        kept = {}
        for key, item in mapping.items():
            if key in schema:
                kept[key] = self.value(item, schema[key], path + (key,))
                continue
            keys = list(schema)
            self.refused.add(path + (key,))
            self.problems.add(self.file_name, self.doc, path + (key,), f"unknown key {key!r}",
                              lambda key=key, keys=keys: "one of: " + ", ".join(keys) + suggest(key, keys))
        return kept

    def _unquoted(self, value, rule, path):
        text, read = self.doc.unquoted[path]
        kinds = rule.get("type")
        kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
        text_expected = "string" in kinds and not kinds & {"integer", "number"}
        shown = _written(text)
        if isinstance(read, Unreadable):
            self._refuse(path, f"{shown} (unquoted: YAML 1.1 reads {read.kind}, and cannot: {read.reason})",
                         expectation(rule) + (f": quote it to keep it as written, '{text}'" if text_expected else ""))
            return text
        if read is None or not kinds:
            return value  # null, or a key of a list/mapping: cerberus says what was expected
        if text_expected:
            if _as_written(read) == text:
                return text  # `ref: 2024`, `value: true`: the text that was written, unchanged
            self._refuse(path, f"{shown} (unquoted, so YAML 1.1 reads {_reading(read)})",
                         f"{expectation(rule)}: quote it to keep it as written, '{text}'")
            return text
        if kinds & {"integer", "number"} and not isinstance(read, (str, bytes, datetime.date)):
            if isinstance(read, bool) and "boolean" not in kinds:  # cerberus counts booleans as integers
                self._refuse(path, f"{shown} (unquoted, so YAML 1.1 reads {_reading(read)})", expectation(rule))
            elif isinstance(read, float) and not math.isfinite(read):
                self._refuse(path, f"{shown} (YAML reads {_reading(read)})", f"{expectation(rule)}, a finite number")
            elif isinstance(read, (int, float)) and not _DECIMAL.fullmatch(text):
                self._refuse(path, f"{shown} (unquoted, so YAML 1.1 reads {_reading(read)})",
                             f"{expectation(rule)} written in decimal digits")
        return value

    def _refuse(self, path, found_text, expected):
        self.refused.add(path)
        self.problems.add(self.file_name, self.doc, path, found_text, expected)


# what reads as the same number in YAML 1.1 and 1.2 and to a person: no octal 0123, no 0x1F,
# no 1_000, no sexagesimal 1:30, no .inf
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*|(?=\.?[0-9])[0-9]*\.[0-9]*(?:[eE][-+]?[0-9]+)?)")


def _as_written(value) -> str | None:
    """The text a scalar YAML typed would be if written back; None for what has no such text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime.datetime):
        return None
    if isinstance(value, datetime.date):
        return value.isoformat()
    return None


def _reading(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, datetime.datetime):
        return f"the date and time {value.isoformat(sep=' ')}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    return _type_name(value)


def _written(text: str) -> str:
    return text if len(text) <= 60 and text.isprintable() else repr(text[:57] + "...")


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
    if error.code == errors.UNKNOWN_FIELD.code:  # _SchemaWalk drops unknown keys; kept as a guard
        parent = _rule_at(schema, path[:-1]) or {}
        keys = list(parent.get("schema", {}))
        problems.add(file_name, doc, path, f"unknown key {path[-1]!r}",
                     lambda: "one of: " + ", ".join(keys) + suggest(path[-1], keys))
    elif error.code == errors.REQUIRED_FIELD.code:
        problems.add(file_name, doc, path, "nothing (the key is missing)", expectation(rule))
    elif error.code in (errors.UNALLOWED_VALUE.code,):
        problems.add(file_name, doc, path, found(value),
                     lambda: expectation(rule) + suggest(value, rule.get("allowed", ())))
    elif error.code == FORMAT_MISMATCH.code:
        controls = control_characters(value) if isinstance(value, str) else ""
        problems.add(file_name, doc, path, found(value), FORMATS[error.info[0]].expected + hint + controls)
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
