"""Named up-to-date checks shared by the stages (as doit/tools.py has its own).

Each is a small class: doit calls it with the task and its last values, and
`doit info TASK` prints its repr, which says what changed.  The checks that
ask one stage's systems (the cluster, the bucket) live with that stage.

Semantic task inputs: the normalized values of just the config keys a task reads.

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


class retry_once_present:  # lower case, like doit's own uptodate helpers
    """doit `uptodate` entry of a task that may skip for want of a file (`{"skipped": why}`):
    not up to date once the file is there, so the task tries again then, and not on every
    run before (a no-op must not wait on an unreachable repository).  Otherwise no opinion."""

    def __init__(self, path):
        self.path = path
        self.waiting = False

    def __call__(self, task, values):
        self.waiting = bool(values.get("skipped"))
        return False if self.waiting and self.path.exists() else None

    def __repr__(self):
        if self.waiting:
            return f"skipped for want of {self.path}: tries again once it exists"
        return f"retry once {self.path} exists (after a skip)"
