"""Property: a mutation of the valid configs is refused with ConfigError, or accepted as what it says.

Derandomized (Hypothesis derives its examples from the test itself): the same
300 configs every run, so a failure replays as it is.  An accepted config is
compared with what the generator wrote, read by `expected_config` below: the
values as written, quoted numbers and booleans as the schema's coercions
document them, login lists as sorted sets, every key left out at its schema
default.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tasks.config.loader import Config, ConfigError, load
from tasks.config.schema import FILES as SCHEMAS

REPO = Path(__file__).resolve().parents[2]
FILES = ("classroom.yaml", "courses.yaml", "data.yaml")
ORIGINAL = {name: yaml.safe_load((REPO / "config" / name).read_text()) for name in FILES}

scalars = (st.none() | st.booleans() | st.integers(min_value=-10**12, max_value=10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["", "gke", "ldap", "a" * 70, "gs://", "file://", "{username}", "2Gi",
                              "https://x.org/r.git", "localhost:5000/x", "../../etc/passwd",
                              # values the cross-key rules read: units, LDAP ports and strategies
                              "2G", "0M", "500m", "1.5G", 389, 636, "before_bind", "insecure",
                              "ingress", "dummy", "cn=reader,dc=x", "ou=people,dc=x", "uid"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=10)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutated(draw):
    docs = {name: yaml.safe_load(yaml.safe_dump(doc)) for name, doc in ORIGINAL.items()}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(st.sampled_from(FILES))
        path = draw(st.sampled_from(list(_paths(docs[name]))))
        operation = draw(st.sampled_from(["replace", "delete", "add_key", "rename_key"]))
        if not path:
            docs[name] = draw(values)
            continue
        parent = docs[name]
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if operation == "replace":
            parent[last] = draw(values)
        elif operation == "delete":
            del parent[last]
        elif operation == "add_key" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(values)
        elif operation == "rename_key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = parent.pop(last)
    texts = {name: yaml.safe_dump(doc, allow_unicode=True) for name, doc in docs.items()}
    damaged = False
    # and, sometimes, damage the YAML text itself
    if draw(st.booleans()):
        name = draw(st.sampled_from(FILES))
        text = texts[name]
        at = draw(st.integers(min_value=0, max_value=len(text)))
        texts[name] = text[:at] + draw(st.sampled_from([":", "- ", "\t", "{", "'", "&a", "*a", "\n  x"])) + text[at:]
        damaged = True
    return texts, damaged


# ---- what an accepted config must hold: the reading of the schema's docstring, written out ----

_USER_LISTS = ("admin_users", "instructors", "students")  # login lists are sets


def _as_text(value):
    """A scalar where text is expected: kept only if it reads back as written (schema.py's docstring)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return yaml.safe_dump(value).removesuffix("\n...\n").strip()  # as the generator wrote it
    return value


def _coerced(value, kinds):
    """Quoted numbers and booleans as the schema says it reads them."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kinds == {"boolean"} and text.lower() in ("true", "false", "yes", "no"):
        return text.lower() in ("true", "yes")
    if "integer" in kinds and text.isdigit():
        return int(text)
    if kinds == {"number"} and text.replace(".", "", 1).isdigit():
        return float(text) if "." in text else int(text)
    return value


def expected_value(value, rule, key=None):
    kinds = rule.get("type")
    kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
    if kinds == {"dict"} and isinstance(rule.get("schema"), dict):
        given = value if isinstance(value, dict) else {}
        # a key written as null is read as left out: cerberus fills in the default of a non-nullable key
        return {name: (expected_value(given[name], sub, name) if given.get(name) is not None else _default(sub))
                for name, sub in rule["schema"].items()}
    if kinds == {"dict"} and "valuesrules" in rule:
        return {k: expected_value(v, rule["valuesrules"]) for k, v in value.items()}
    if kinds == {"list"}:
        items = [expected_value(item, rule["schema"]) for item in value]
        return sorted(set(items)) if key in _USER_LISTS else items
    if kinds == {"string"}:
        return _as_text(value)
    return _coerced(value, kinds)


def _default(rule):
    if rule.get("type") == "dict" and isinstance(rule.get("schema"), dict):
        return expected_value({}, rule)
    return rule["default"]  # the list defaults are all empty: no login list to sort


def expected_config(texts) -> dict:
    docs = {name: yaml.safe_load(texts[name]) for name in FILES}
    whole = {name: expected_value(docs[name], {"type": "dict", "schema": SCHEMAS[name]}) for name in FILES}
    return {"classroom": whole["classroom.yaml"], "courses": whole["courses.yaml"]["courses"],
            "datasets": whole["data.yaml"]["datasets"]}


def test_the_committed_config_is_read_as_written(tmp_path):
    """The comparison itself, on the one config known to be accepted."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    texts = {name: (REPO / "config" / name).read_text() for name in FILES}
    config = load(tmp_path / "config")
    expected = expected_config(texts)
    assert {"classroom": config.classroom, "courses": config.courses, "datasets": config.datasets} == expected
    # spot checks of the reading: a value as written, a default, a login list
    assert config.value("classroom.hub.tls.mode") == ORIGINAL["classroom.yaml"]["hub"]["tls"]["mode"]
    assert config.value("classroom.resources.cpu_limit") == 2  # left out of the file: schema default
    assert config.courses[0]["instructors"] == sorted(set(ORIGINAL["courses.yaml"]["courses"][0]["instructors"]))


def test_a_left_out_section_and_quoted_values_are_read_as_the_schema_says(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    text = "profile: local\nculling: {enabled: 'no', timeout: ' 7200 '}\nresources: {cpu_limit: '1.5'}\n"
    (tmp_path / "config" / "classroom.yaml").write_text(text)
    config = load(tmp_path / "config")
    assert config.value("classroom.culling") == {"enabled": False, "timeout": 7200, "every": 600}
    assert config.value("classroom.resources.cpu_limit") == 1.5
    assert config.classroom == expected_config({**{n: (REPO / "config" / n).read_text() for n in FILES},
                                                "classroom.yaml": text})["classroom"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_are_refused_cleanly_or_accepted_as_written(generated):
    texts, damaged = generated
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp) / "config"
        shutil.copytree(REPO / "config", config_dir)
        for name, text in texts.items():
            (config_dir / name).write_text(text, encoding="utf-8")
        try:
            result = load(config_dir)
        except ConfigError as exc:
            event("refused")
            assert exc.messages, "a ConfigError must say what is wrong"
            for line in exc.messages:
                assert isinstance(line, str) and line.strip()
                assert "\n" not in line, line
                assert line.startswith(str(config_dir) + "/") or line.startswith("environment "), line
                assert "Traceback" not in line
        else:
            assert isinstance(result, Config)
            event("accepted, damaged text" if damaged else "accepted, compared with what was written")
            note(f"accepted: {texts}")
            if not damaged:  # a damaged text says nothing this test can read back
                seen = {"classroom": result.classroom, "courses": result.courses, "datasets": result.datasets}
                assert seen == expected_config(texts)
