"""An image's build context as one input: listing digest first, content digest when it changed."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tasks.filetree.ignore import context_files
from tasks.filetree.state import SideFile, content_digest, context_unchanged, listing_digest
from tasks.images import context as imagecontext
from tasks.images import spec as imagespec


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "base"
    (root / "sub").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.txt").write_text("b\n")
    (root / ".dockerignore").write_text("ignored/\n")
    return root


def _digests(root):
    return lambda: imagecontext.context_digests([(rel, os.path.join(root, rel)) for rel in context_files(str(root))])


class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self):
        self.calls += 1
        return self.inner()


def _touch(path, offset=10):
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + offset * 10**9))


def _same_size_edit(target):
    """Same size, mtime put back: only ctime tells."""
    info = target.stat()
    target.write_text(target.read_text().upper())
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


CHANGES = {  # each kind of change, to the context of the `context` fixture
    "touch": lambda c: _touch(c / "sub" / "b.txt"),
    "edit": lambda c: (c / "sub" / "b.txt").write_text("B, longer\n"),
    "same-size": lambda c: _same_size_edit(c / "sub" / "b.txt"),
    "chmod": lambda c: (c / "sub" / "b.txt").chmod(0o755),
    "add": lambda c: (c / "sub" / "new.txt").write_text("n"),
    "remove": lambda c: (c / "sub" / "b.txt").unlink(),
    "rename": lambda c: (c / "sub" / "b.txt").rename(c / "sub" / "c.txt"),
    "symlink": lambda c: (c / "link").symlink_to("a.txt"),
    "mkdir": lambda c: (c / "empty").mkdir(),
    "deep": lambda c: (c / "sub" / "deeper" / "still" / "d.txt").write_text("e\n"),
    "dockerfile": lambda c: (c / "Dockerfile").write_text("FROM scratch\nCOPY . /srv/\n"),
}


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
@pytest.mark.parametrize("change", ["touch", "edit", "same-size", "chmod", "add", "remove", "rename", "symlink",
                                    "mkdir"])
def test_every_kind_of_change_changes_the_listing(context, change, use_find):
    before = listing_digest([("", str(context))], use_find)
    assert listing_digest([("", str(context))], use_find) == before
    CHANGES[change](context)
    assert listing_digest([("", str(context))], use_find) != before


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
def test_prefixes_and_single_file_roots_count(context, tmp_path, use_find):
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    one = listing_digest([("", str(context)), ("classroom/datasets/d/", str(data))], use_find)
    other = listing_digest([("", str(context)), ("classroom/datasets/e/", str(data))], use_find)
    assert one != other
    missing = listing_digest([("", str(context)), ("shared/", str(tmp_path / "absent"))], use_find)
    assert missing != listing_digest([("", str(context))], use_find)
    before = listing_digest([("", str(context)), ("d/", str(data))], use_find)
    data.write_text("y, longer\n")
    assert listing_digest([("", str(context)), ("d/", str(data))], use_find) != before


def test_gnu_find_is_used_here():
    from tasks.filetree.state import _gnu_find
    assert _gnu_find(), "Debian's find has -printf: the fast path must be the one these tests measure"


def test_content_digest_orders_and_separates_entries():
    assert content_digest({"a": "x:1", "b": "x:2"}) == content_digest({"b": "x:2", "a": "x:1"})
    assert content_digest({"a": "x:1"}) != content_digest({"a": "-:1"})
    assert content_digest({"ab": "c"}) != content_digest({"a": "bc"})


def _run(check, values):
    """As doit does: the check, then (when the task ran) the saved values become the state."""
    up_to_date = check(None, values)
    return up_to_date, ({} if up_to_date else check._save())


def test_unchanged_context_is_up_to_date_without_reading_content(context, tmp_path):
    digests = Counting(_digests(context))
    check = context_unchanged("base", [("", str(context))], digests, SideFile(tmp_path / "side.json"))
    up_to_date, saved = _run(check, {})
    assert not up_to_date and "not recorded" in repr(check) and saved[check.STATE_KEY]["content"]
    calls = digests.calls
    assert check(None, saved) is True
    assert digests.calls == calls, "an unchanged listing reads no content"


def test_a_touch_or_an_ignored_file_changes_nothing_and_is_remembered(context, tmp_path):
    digests = Counting(_digests(context))
    side = SideFile(tmp_path / "side.json")
    check = context_unchanged("base", [("", str(context))], digests, side)
    _, state = _run(check, {})
    _touch(context / "a.txt")
    (context / "ignored").mkdir()
    (context / "ignored" / "big.bin").write_bytes(b"\0" * 100)
    calls = digests.calls
    assert check(None, state) is True
    assert digests.calls == calls + 1, "a changed listing reads the content once"
    assert side.read()["base"]["content"] == state[check.STATE_KEY]["content"]
    assert check(None, state) is True
    assert digests.calls == calls + 1, "the remembered listing makes the next no-op fast again"


@pytest.mark.parametrize("change", ["edit", "exec", "add", "dockerfile", "undo"])
def test_a_content_change_runs_the_task(context, tmp_path, change):
    check = context_unchanged("base", [("", str(context))], _digests(context), SideFile(tmp_path / "side.json"))
    _, state = _run(check, {})
    if change == "edit":
        (context / "sub" / "b.txt").write_text("b2\n")
    elif change == "exec":
        (context / "a.txt").chmod(0o755)
    elif change == "add":
        (context / "sub" / "c.txt").write_text("c\n")
    elif change == "dockerfile":
        (context / "Dockerfile").write_text("FROM scratch\nCOPY . /srv/\n")
    elif change == "undo":  # an edit undone is no change
        (context / "a.txt").write_text("changed\n")
        (context / "a.txt").write_text("a\n")
        assert check(None, state) is True
        return
    assert check(None, state) is False and repr(check) == "build context changed"
    _, state = _run(check, state)
    assert check(None, state) is True


def test_a_damaged_side_file_only_costs_a_content_digest(context, tmp_path):
    side = SideFile(tmp_path / "side.json")
    side.path.write_text("{not json")
    check = context_unchanged("base", [("", str(context))], _digests(context), side)
    _, state = _run(check, {})
    _touch(context / "a.txt")
    assert check(None, state) is True
    assert side.read()["base"]["listing"] != state[check.STATE_KEY]["listing"]


def test_a_fifo_or_socket_in_a_context_is_never_sent(context):
    import socket
    os.mkfifo(context / "sub" / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(context / "sock"))
    try:
        files = context_files(str(context))
    finally:
        server.close()
    assert "sub/pipe" not in files and "sock" not in files
    assert {"Dockerfile", ".dockerignore", "a.txt", "sub/b.txt"} == set(files)
    assert _digests(context)()  # and digesting the context does not block on them


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
def test_a_root_that_is_a_link_is_followed(context, tmp_path, use_find):
    (tmp_path / "data").symlink_to(context)
    before = listing_digest([("d/", str(tmp_path / "data"))], use_find)
    (context / "sub" / "b.txt").write_text("b, edited through the link\n")
    assert listing_digest([("d/", str(tmp_path / "data"))], use_find) != before


# The probe: after a quiet listing, a no-op takes no listing at all, and every kind of change
# is still seen.  QUIET_SECONDS is shortened so that files made by the test count as settled;
# the pause puts the change in a later clock tick than the listing's newest entry.
SETTLE = 0.05


@pytest.fixture
def settled(monkeypatch):
    from tasks.filetree import state as contextstate
    monkeypatch.setattr(contextstate, "QUIET_SECONDS", SETTLE)

    def wait():
        time.sleep(3 * SETTLE)
    return wait


class CountingListings:
    def __init__(self, monkeypatch):
        from tasks.filetree import state as contextstate
        self.calls, real = 0, contextstate.take_listing

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(contextstate, "take_listing", counted)


def _fresh_check(context, side_path, use_find=True):
    """A new check and side file per run, as each `doit` process makes them."""
    side = SideFile(side_path, use_find)
    return context_unchanged("base", [("", str(context))], _digests(context), side), side


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
def test_a_quiet_context_is_probed_not_listed_and_nothing_is_written(context, tmp_path, settled, monkeypatch,
                                                                      use_find):
    settled()
    check, _ = _fresh_check(context, tmp_path / "side.json", use_find)
    _, state = _run(check, {})
    record = json.loads((tmp_path / "side.json").read_text())["base"]
    assert record["since"] and record["listing"] == state[check.STATE_KEY]["listing"]
    written = (tmp_path / "side.json").stat()
    listings = CountingListings(monkeypatch)
    for _ in range(2):
        check, _ = _fresh_check(context, tmp_path / "side.json", use_find)
        assert check(None, state) is True
    assert listings.calls == 0, "a quiet context is answered by the probe alone"
    after = (tmp_path / "side.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), "a no-op writes nothing"


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
@pytest.mark.parametrize("change", ["edit", "same-size", "chmod", "add", "remove", "rename", "symlink", "deep",
                                    "dockerfile"])
def test_every_change_after_a_quiet_listing_is_seen(context, tmp_path, settled, change, use_find):
    (context / "sub" / "deeper" / "still").mkdir(parents=True)
    (context / "sub" / "deeper" / "still" / "d.txt").write_text("d\n")
    settled()
    check, _ = _fresh_check(context, tmp_path / "side.json", use_find)
    _, state = _run(check, {})
    settled()
    CHANGES[change](context)
    check, _ = _fresh_check(context, tmp_path / "side.json", use_find)
    assert check(None, state) is False and repr(check) == "build context changed"


def test_a_listing_with_a_change_in_its_last_seconds_is_not_trusted_to_the_probe(context, tmp_path, monkeypatch):
    from tasks.filetree import state as contextstate
    monkeypatch.setattr(contextstate, "QUIET_SECONDS", 3600)  # the fixture's files are that recent, however slow
    check, side = _fresh_check(context, tmp_path / "side.json")
    _, state = _run(check, {})
    assert side.read()["base"]["since"] is None
    check, _ = _fresh_check(context, tmp_path / "side.json")
    assert check(None, state) is True


def test_a_root_link_pointed_elsewhere_is_seen_without_a_change_under_either(context, tmp_path, settled):
    other = tmp_path / "other"
    shutil.copytree(context, other)
    (other / "a.txt").write_text("another context\n")
    link = tmp_path / "images-base"
    link.symlink_to(context)
    settled()
    side = SideFile(tmp_path / "side.json")
    check = context_unchanged("base", [("", str(link))], _digests(link), side)
    _, state = _run(check, {})
    settled()
    link.unlink()
    link.symlink_to(other)
    check = context_unchanged("base", [("", str(link))], _digests(link), SideFile(tmp_path / "side.json"))
    assert check(None, state) is False


def test_a_root_that_appears_is_seen(context, tmp_path, settled):
    roots = [("", str(context)), ("shared/", str(tmp_path / "shared"))]
    settled()
    check = context_unchanged("base", roots, _digests(context), SideFile(tmp_path / "side.json"))
    _, state = _run(check, {})
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "start").write_text("#!/bin/sh\n")
    check = context_unchanged("base", roots, _digests(context), SideFile(tmp_path / "side.json"))
    check(None, state)
    assert check.current["listing"] != state[check.STATE_KEY]["listing"]


def test_all_images_are_probed_at_once(context, tmp_path, settled, monkeypatch):
    other = tmp_path / "db"
    shutil.copytree(context, other)
    settled()
    side = SideFile(tmp_path / "side.json")
    checks = [context_unchanged(name, [("", str(root))], _digests(root), side)
              for name, root in (("base", context), ("db", other))]
    states = [_run(check, {})[1] for check in checks]
    from tasks.filetree import state as contextstate
    events = []
    real_init, real_changed = contextstate.Probe.__init__, contextstate.Probe.changed

    def starting(self, roots, since, use_find=True):
        events.append(("start", roots[0][1]))
        real_init(self, roots, since, use_find)

    def reading(self):
        events.append(("read", self.roots[0]))
        return real_changed(self)
    monkeypatch.setattr(contextstate.Probe, "__init__", starting)
    monkeypatch.setattr(contextstate.Probe, "changed", reading)

    def run_both():
        side = SideFile(tmp_path / "side.json")
        checks = [context_unchanged(name, [("", str(root))], _digests(root), side)
                  for name, root in (("base", context), ("db", other))]
        return [check(None, state) for check, state in zip(checks, states)]
    assert run_both() == [True, True]
    assert events == [("start", str(context)), ("start", str(other)), ("read", str(context)), ("read", str(other))], \
        "the first check starts every image's probe before reading any"
    (other / "a.txt").write_text("db's own change\n")
    assert run_both() == [True, False], "each image answers for its own roots"


@pytest.mark.parametrize("use_find", [True, False], ids=["gnu-find", "python-walk"])
def test_a_root_whose_name_is_a_shell_pattern_is_probed_as_written(tmp_path, settled, monkeypatch, use_find):
    roots = {}
    for name in ("ctx[1]", "ctx1", "ctx*?"):
        root = tmp_path / name
        root.mkdir()
        (root / "Dockerfile").write_text("FROM scratch\n")
        roots[name] = root
    settled()
    side_path = tmp_path / "side.json"

    def run(states=None):
        side = SideFile(side_path, use_find)
        checks = {name: context_unchanged(name, [("", str(root))], _digests(root), side)
                  for name, root in roots.items()}
        if states is None:
            return {name: _run(check, {})[1] for name, check in checks.items()}
        return {name: check(None, states[name]) for name, check in checks.items()}
    states = run()
    settled()
    listings = CountingListings(monkeypatch)
    assert run(states) == {"ctx[1]": True, "ctx1": True, "ctx*?": True}
    assert listings.calls == 0
    (roots["ctx1"] / "Dockerfile").write_text("FROM scratch\nRUN true\n")
    assert run(states) == {"ctx[1]": True, "ctx1": False, "ctx*?": True}
    assert listings.calls == 1, "a change under ctx1 is not one under ctx[1] or ctx*?, whose patterns match it"
