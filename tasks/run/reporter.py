"""doit's console output, plus what each task did or why it had nothing to do.

doit prints `.  image:base` for a task it executed and `-- image:base` for
one it found up to date; at `-v 0`/`-v 1` the task's own words are hidden.
So `.  image:base` looked the same for a rebuild and for a check that found
the image already pushed.  This reporter adds one line at every verbosity:

- after an executed task, its `OUTCOME` value ("built …", "nothing built:
  … is already in the registry");
- after an up-to-date task, the `note` of its up-to-date check when it has
  one ("already deployed: …", said by the release check after a cold state).

The lines start with three spaces: doit's own `.  ` and `-- ` lines, which
scripts and tests read, stay as they are.
"""

from __future__ import annotations

from doit.reporter import ConsoleReporter

OUTCOME = "outcome"  # the value a task's action returns to say what it did


def outcome_of(task) -> str:
    return str((task.values or {}).get(OUTCOME) or "")


def note_of(task) -> str:
    for check, _args, _kwargs in task.uptodate:
        note = getattr(check, "note", "")
        if note:
            return str(note)
    return ""


class ClassroomReporter(ConsoleReporter):
    desc = "doit's console output, plus one line on what each task did"

    def add_success(self, task):
        super().add_success(task)
        outcome = outcome_of(task)
        if outcome and task.name[0] != "_":
            self.write(f"   {task.name}: {outcome}\n")

    def skip_uptodate(self, task):
        super().skip_uptodate(task)
        note = note_of(task)
        if note and task.name[0] != "_":
            self.write(f"   {task.name}: {note}\n")


def result_without_outcome(task) -> dict:
    """A task's last action when an earlier one returned an OUTCOME: the task's result
    without it.  doit's `result_dep` (the early cut-off of the image chain) compares
    results, and "built" against "already there" must not count as a change."""
    return {key: value for key, value in task.values.items() if key != OUTCOME}
