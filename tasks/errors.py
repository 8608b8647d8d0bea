"""The project's expected failures: one base class, turned into doit's TaskFailed in one place.

Every adapter raises a `ClassroomError` subclass for what can go wrong in a
working setup (a registry that refuses, a bucket that cannot be reached, a
cluster without nodes).  A task's action is wrapped by `action()`, which ends
the task with one line naming it (`chart:publish: ...`), never a traceback;
so does an OSError (a full disk, a permission).  Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class ClassroomError(Exception):
    """An expected failure, said in one line by whatever task or command meets it."""


def action(function, *args) -> tuple:
    """doit's (callable, args) for `function(*args, **getargs and options)`, whose
    ClassroomError ends the task as one line naming the task."""
    return (run_reporting_failure, [function, *args])


def run_reporting_failure(function, *args, task, **kwargs):
    import inspect  # here: a no-op run imports this module, and never needs inspect

    # doit passes every option and getargs value through **kwargs: hand on those the function takes
    accepted = inspect.signature(function).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        kwargs = {key: value for key, value in kwargs.items() if key in accepted}
    from doit.exceptions import TaskFailed
    try:
        return function(*args, **kwargs)
    except ClassroomError as exc:
        return TaskFailed(f"{task.name}: {exc}")
    except OSError as exc:  # this machine's: a full disk, a permission, a file gone
        return TaskFailed(f"{task.name}: {describe_os_error(exc)}")


def describe_os_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
