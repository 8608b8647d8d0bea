"""Semantic task inputs: the normalized values of just the config keys a task reads.

A task that bakes `courses` into an image declares `config_inputs(config,
"courses")`.  Its up-to-date check compares a digest of the normalized value,
so comments, key order, quoting and whitespace in the YAML never make work,
and a key the task does not read can change freely.  Only digests reach
doit's state file, never the values (some are close to secrets).
"""

from __future__ import annotations

import hashlib
import json


def digest(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class value_inputs:  # lower case, like doit's own uptodate helpers
    """doit `uptodate` entry: true while the named values keep their digests."""

    STATE_KEY = "_config_inputs"

    def __init__(self, named_values: dict):
        self.keys = tuple(named_values)
        self.digests = {key: digest(value) for key, value in named_values.items()}
        self.changed: list[str] = []
        self.first_run = False

    def configure_task(self, task):
        task.value_savers.append(lambda: {self.STATE_KEY: self.digests})

    def __call__(self, task, values):
        last = values.get(self.STATE_KEY) or {}
        self.first_run = not last
        self.changed = [key for key in self.keys if last.get(key) != self.digests[key]]
        return not self.changed

    def __repr__(self):
        # `doit info TASK` prints this when the check fails: name the keys.
        if self.changed and self.first_run:
            return "config inputs not recorded yet (the task never succeeded): " + ", ".join(self.keys)
        if self.changed:
            return "config changed: " + ", ".join(self.changed)
        return "config inputs: " + ", ".join(self.keys)


class config_inputs(value_inputs):
    """doit `uptodate` entry: true while the listed config keys keep their values."""

    def __init__(self, config, *keys: str):
        super().__init__({key: config.value(key) for key in keys})
