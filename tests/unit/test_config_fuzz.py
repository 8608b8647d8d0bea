"""Property: no mutation of the valid configs makes loading fail in any way but ConfigError."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import Config, ConfigError, load

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
    # and, sometimes, damage the YAML text itself
    if draw(st.booleans()):
        name = draw(st.sampled_from(FILES))
        text = texts[name]
        at = draw(st.integers(min_value=0, max_value=len(text)))
        texts[name] = text[:at] + draw(st.sampled_from([":", "- ", "\t", "{", "'", "&a", "*a", "\n  x"])) + text[at:]
    return texts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_only_ever_give_clean_validation_errors(texts):
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp) / "config"
        shutil.copytree(REPO / "config", config_dir)
        for name, text in texts.items():
            (config_dir / name).write_text(text, encoding="utf-8")
        try:
            result = load(config_dir)
        except ConfigError as exc:
            assert exc.messages, "a ConfigError must say what is wrong"
            for line in exc.messages:
                assert isinstance(line, str) and line.strip()
                assert "\n" not in line, line
                assert line.startswith(str(config_dir) + "/") or line.startswith("environment "), line
                assert "Traceback" not in line
        else:
            assert isinstance(result, Config)
