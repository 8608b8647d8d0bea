"""The named up-to-date checks (tasks.checks), driven the way doit drives them.

doit calls `configure_task` once, keeps what the value savers return after a
successful run, and on the next run calls the check with those values; `doit
info` prints the check's repr.  Here a stand-in task carries the savers.  Only
`retry_once_present` looks at the file system (whether a path exists): its test
uses tmp_path.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from tasks.checks import config_inputs, digest, retry_once_present, value_inputs
from tasks.config.model import Config


def saved_values(check) -> dict:
    """What doit records for the task after a successful run."""
    task = SimpleNamespace(value_savers=[])
    check.configure_task(task)
    values = {}
    for saver in task.value_savers:
        values.update(saver())
    return values


def test_digest_is_sha256_of_canonical_json():
    # sorted keys, no spaces, UTF-8 as is: the digests recorded in doit's state stay valid across runs
    canonical = '{"a":"é","b":[1,2.5,null,true],"c":{"x":"y"}}'
    assert digest({"c": {"x": "y"}, "b": [1, 2.5, None, True], "a": "é"}) == \
        hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert digest("x") == hashlib.sha256(b'"x"').hexdigest()
    assert digest({"a": 1}) != digest({"a": "1"})


def test_values_are_recorded_as_digests_only():
    check = value_inputs({"courses": [{"name": "intro"}], "secretish": "hunter2"})
    saved = saved_values(check)
    assert saved == {"_config_inputs": {"courses": digest([{"name": "intro"}]), "secretish": digest("hunter2")}}
    assert "hunter2" not in repr(saved)


def test_up_to_date_while_every_value_keeps_its_digest():
    before = value_inputs({"a": 1, "b": [1, 2]})
    last = saved_values(before)
    same = value_inputs({"b": [1, 2], "a": 1})
    assert same(None, last) is True
    assert same.changed == [] and repr(same) == "config inputs: b, a"


def test_a_changed_value_is_named():
    last = saved_values(value_inputs({"a": 1, "b": 2, "c": 3}))
    check = value_inputs({"a": 1, "b": 20, "c": 30})
    assert check(None, last) is False
    assert check.changed == ["b", "c"] and not check.first_run
    assert repr(check) == "config changed: b, c"


def test_a_new_key_counts_as_changed():
    last = saved_values(value_inputs({"a": 1}))
    check = value_inputs({"a": 1, "new": 2})
    assert check(None, last) is False and repr(check) == "config changed: new"


def test_first_run_says_nothing_was_recorded():
    check = value_inputs({"a": 1, "b": 2})
    assert repr(check) == "config inputs: a, b"  # before doit asked
    assert check(None, {}) is False
    assert check.first_run and check.changed == ["a", "b"]
    assert repr(check) == "config inputs not recorded yet (the task never succeeded): a, b"
    other_values = {"some_other_saver": 1}
    assert check(None, other_values) is False and check.first_run


def test_config_inputs_reads_the_named_keys():
    config = Config(directory=None, classroom={"images": {"registry": "r.example.edu/x"}, "hub": {"domain": "h"}},
                    courses=[{"name": "intro"}], datasets=[])
    check = config_inputs(config, "courses", "classroom.images.registry")
    assert check.keys == ("courses", "classroom.images.registry")
    assert saved_values(check) == {"_config_inputs": {"courses": digest([{"name": "intro"}]),
                                                      "classroom.images.registry": digest("r.example.edu/x")}}
    edited = Config(directory=None, classroom={"images": {"registry": "r.example.edu/x"}, "hub": {"domain": "other"}},
                    courses=[{"name": "intro"}], datasets=[])
    assert config_inputs(edited, "courses", "classroom.images.registry")(None, saved_values(check)) is True


def test_retry_once_present(tmp_path):
    wanted = tmp_path / "jupyterhub-4.4.0.tgz"
    check = retry_once_present(wanted)
    assert repr(check) == f"retry once {wanted} exists (after a skip)"
    assert check(None, {}) is None  # never skipped: no opinion
    assert check(None, {"skipped": "no chart"}) is None  # skipped, file still missing: no rerun every time
    assert repr(check) == f"skipped for want of {wanted}: tries again once it exists"
    wanted.write_bytes(b"tgz")
    assert check(None, {"skipped": "no chart"}) is False  # now it is there: try again
    assert check(None, {"skipped": ""}) is None
    assert check(None, {}) is None and repr(check) == f"retry once {wanted} exists (after a skip)"
