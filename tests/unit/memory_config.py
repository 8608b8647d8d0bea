"""A normalized classroom config built in memory, for the unit tests of pure modules.

The classroom section is what the loader makes of a classroom.yaml that sets
nothing (every section's schema defaults); one course and one dataset are the
committed config's.  The config directory does not exist: a pure module that
opened a file would fail.
"""

from __future__ import annotations

import copy
from pathlib import Path

from tasks.config.model import Config
from tasks.config.schema import CLASSROOM

PROJECT = Path("/nonexistent/classroom")  # never read: a spec that opened a file would fail here
COURSE = {"name": "data-science-101", "title": "Foundations of Data Science",
          "repo": "https://github.com/data-8/textbook.git", "ref": "main",
          "instructors": ["instructor"], "students": [], "packages": []}
DATASET = {"name": "sample-flights", "source": "config/datasets/sample-flights",
           "description": "A small flights table for the first SQL exercises", "courses": []}


def schema_defaults(schema) -> dict:
    """What the loader makes of a classroom.yaml that sets nothing: every section's defaults."""
    return {key: schema_defaults(rule["schema"]) if rule.get("type") == "dict" and "schema" in rule
            else copy.deepcopy(rule.get("default")) for key, rule in schema.items()}


def classroom_config(datasets=(DATASET,)) -> Config:
    """The committed config's images, build, course and dataset, normalized, in memory."""
    return Config(directory=PROJECT / "config", classroom=schema_defaults(CLASSROOM),
                  courses=[copy.deepcopy(COURSE)], datasets=copy.deepcopy(list(datasets)))


def edited(config: Config, key: str, value) -> Config:
    """A copy of `config` with the value at a dotted key (as Config.value names it) replaced."""
    changed = copy.deepcopy(config)
    parent, _, last = key.rpartition(".")
    node = changed.value(parent)
    index = int(last) if isinstance(node, list) else last
    assert node[index] != value, f"{key} already holds {value!r}: the edit would change nothing"
    node[index] = value
    return changed
