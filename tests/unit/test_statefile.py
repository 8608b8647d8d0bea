"""doit's state file: replaced atomically, readable after any crash, unreadable files recovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from doit.dependency import Dependency, JSONCodec, JsonDB

from tasks.run import runlock, statefile
from tasks.run.statefile import CrashSafeJsonDB


def _db(path) -> CrashSafeJsonDB:
    return CrashSafeJsonDB(str(path), codec=JSONCodec())


def test_a_saved_state_reads_back_and_in_doits_own_backend(tmp_path):
    path = tmp_path / "state" / "deps.json"
    db = _db(path)
    db.set("image:base", "_values_:", {"tag": "abc"})
    db.dump()
    assert _db(path).get("image:base", "_values_:") == {"tag": "abc"}
    assert JsonDB(str(path), codec=JSONCodec()).get("image:base", "_values_:") == {"tag": "abc"}
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_state_directory_is_made_only_when_something_is_saved(tmp_path):
    path = tmp_path / "not-yet" / "deps.json"
    db = _db(path)
    assert not path.parent.exists()
    db.set("secrets", "deps:", [])
    db.dump()
    assert json.loads(path.read_text()) == {"secrets": {"deps:": []}}


def test_a_first_save_writes_a_file_even_when_empty_as_doit_does(tmp_path):
    path = tmp_path / "deps.json"
    _db(path).dump()
    assert json.loads(path.read_text()) == {}


def test_a_dump_that_changes_nothing_does_not_touch_the_file(tmp_path):
    path = tmp_path / "deps.json"
    db = _db(path)
    db.set("a", "k", 1)
    db.dump()
    before = os.stat(path).st_ino
    again = _db(path)
    again.dump()
    assert os.stat(path).st_ino == before  # a rewrite would have replaced the inode


def test_each_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deps.json"
    db = _db(path)
    inodes = []
    for value in range(3):
        db.set("a", "k", value)
        db.dump()
        inodes.append(os.stat(path).st_ino)
    # a new file each time (an in-place write keeps the inode; a freed one may come back later)
    assert inodes[0] != inodes[1] != inodes[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deps.json"]


@pytest.mark.parametrize("content", [b"", b'{"image:base": {"_values_:', b"\xff\xfe", b"[1, 2]", b'{"a": 3}', b"null"])
def test_an_unreadable_state_is_a_cold_start_said_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "deps.json"
    path.write_bytes(content)
    db = _db(path)
    assert not db.in_("image:base") and not db.in_("a")
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"doit's state file {path} was unreadable" in err and "starting from an empty state" in err
    assert (tmp_path / "deps.json.unreadable").read_bytes() == content  # kept for a post-mortem
    db.set("a", "k", 1)
    db.dump()
    assert _db(path).get("a", "k") == 1


def test_a_state_path_that_is_a_directory_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "deps.json").mkdir()
    with pytest.raises(SystemExit) as stopped:
        _db(tmp_path / "deps.json")
    assert stopped.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a directory" in err and "state.dep_file" in err


def test_a_state_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    db = _db(blocker / "deps.json")  # "inside a file": nothing to read, nothing can be written
    db.set("a", "k", 1)
    with pytest.raises(SystemExit) as stopped:
        db.dump()
    assert stopped.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err


@pytest.mark.parametrize("point", ["state:written", "state:synced", "state:renamed"])
def test_a_kill_at_any_point_of_a_write_leaves_the_old_state_or_the_new(tmp_path, point):
    path = tmp_path / "deps.json"
    old = _db(path)
    old.set("a", "k", "old")
    old.dump()
    script = (f"from doit.dependency import JSONCodec\nfrom tasks.run.statefile import CrashSafeJsonDB\n"
              f"db = CrashSafeJsonDB({str(path)!r}, codec=JSONCodec())\n"
              "db.set('a', 'k', 'new' * 10000)\ndb.dump()\n")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, runlock.CRASH_ENV: f"point:{point}"},
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            start_new_session=True, capture_output=True)
    assert result.returncode == -9
    value = _db(path).get("a", "k")
    assert value == ("new" * 10000 if point == "state:renamed" else "old")
    temps = runlock.stale_temps(tmp_path)
    assert bool(temps) == (point != "state:renamed")
    assert runlock.remove_stale_temps(tmp_path) == len(temps)
    assert runlock.stale_temps(tmp_path) == []


def test_install_makes_doit_build_the_crash_safe_backend_and_leaves_the_others(tmp_path):
    from doit import cmd_base
    from doit.dependency import SqliteDB

    original = cmd_base.Dependency
    try:
        statefile.install()
        statefile.install()  # twice: still one wrapper
        assert cmd_base.Dependency.__mro__[1] is original
        json_state = cmd_base.Dependency(JsonDB, str(tmp_path / "a" / "deps.json"))
        assert isinstance(json_state.backend, CrashSafeJsonDB)
        sqlite_state = cmd_base.Dependency(SqliteDB, str(tmp_path / "b" / "deps.sqlite"))
        assert type(sqlite_state.backend) is SqliteDB  # its directory made when it opens
        sqlite_state.close()
    finally:
        cmd_base.Dependency = original
    assert Dependency is original
