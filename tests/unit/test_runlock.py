"""One doit per project, the leftovers of killed runs, crash points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tasks import kube
from tasks.run import runlock
from tests.conftest import DOIT

REPO = Path(__file__).resolve().parent.parent.parent


def _python(code: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_the_identity_of_a_process_tells_a_reused_pid_apart(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    ident = runlock.identity(child.pid)
    assert runlock.alive(ident) and ident.startswith(f"{child.pid}.")
    pid, _, started = ident.partition(".")
    assert not runlock.alive(f"{pid}.{int(started) + 1}")  # same pid, another start: someone else
    child.kill()
    child.wait()
    assert not runlock.alive(ident)


def test_a_second_run_waits_for_the_first_and_says_so_once(tmp_path):
    dep_file = tmp_path / "state" / "deps.json"
    finished = tmp_path / "finished"
    holder = _python(f"from tasks.run import runlock\nrunlock.acquire({str(dep_file)!r})\n"
                     "print('held', flush=True)\nimport time\ntime.sleep(2)\n"
                     f"open({str(finished)!r}, 'w').close()\n")
    assert holder.stdout.readline().strip() == "held"
    lines = []
    fd = runlock.acquire(dep_file, say=lines.append)
    holder.wait()
    try:
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "waiting" in lines[0]
        assert holder.returncode == 0 and finished.exists()  # it got the lock once the holder was done
        assert runlock.lock_path(dep_file).read_text() == runlock.identity()
    finally:
        os.close(fd)


def test_without_waiting_a_held_lock_is_reported_and_nothing_kept(tmp_path):
    dep_file = tmp_path / "deps.json"
    fd = runlock.acquire(dep_file)
    child = _python(f"from tasks.run import runlock\nprint(runlock.acquire({str(dep_file)!r}, wait=False))")
    out, _ = child.communicate(timeout=30)
    os.close(fd)
    assert out.strip() == "None"


def test_a_killed_holder_releases_the_lock(tmp_path):
    dep_file = tmp_path / "deps.json"
    holder = _python(f"from tasks.run import runlock\nrunlock.acquire({str(dep_file)!r})\n"
                     "print('held', flush=True)\nimport time\ntime.sleep(60)\n")
    assert holder.stdout.readline().strip() == "held"
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    fd = runlock.acquire(dep_file, wait=False)
    assert fd is not None
    os.close(fd)


def test_a_lock_beside_a_file_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as stopped:
        runlock.acquire(tmp_path / "a-file" / "deps.json")
    assert stopped.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot make the lock" in err


@pytest.mark.parametrize("command, waits", [("list", False), ("info", False), ("help", False),
                                            ("run", True), ("forget", True), ("clean", True)])
def test_only_commands_that_may_change_something_take_the_lock(tmp_path, command, waits):
    dep_file = tmp_path / "deps.json"
    code = (f"import tempfile\nfrom tasks.run import runlock\n"
            f"print(runlock.start_run({str(dep_file)!r}, {command!r}), tempfile.gettempdir())")
    child = _python(code, TMPDIR=str(tmp_path))
    out, err = child.communicate(timeout=30)
    took, tmp = out.split()
    assert took == str(waits)
    assert runlock.lock_path(dep_file).exists() == waits
    assert Path(tmp).name.startswith(runlock.RUN_PREFIX) == waits
    assert not any(p.name.startswith(runlock.RUN_PREFIX) for p in tmp_path.iterdir())  # removed at exit


def test_the_next_run_removes_a_killed_runs_scratch_and_stops_its_build_processes(tmp_path):
    code = ("import subprocess, tempfile\nfrom pathlib import Path\nfrom tasks.run import runlock\n"
            "scratch = runlock.use_scratch(Path(tempfile.gettempdir()))\n"
            "(Path(tempfile.mkdtemp(prefix='classtools-chart-')) / 'x').write_text('staged')\n"
            "build = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"  # outlives a kill of the run
            "runlock.record_process(build.pid)\n"
            "print(scratch, build.pid, flush=True)\nimport time\ntime.sleep(60)\n")
    run = _python(code, TMPDIR=str(tmp_path))
    scratch, build_pid = run.stdout.readline().split()
    os.kill(run.pid, signal.SIGKILL)  # the run alone: its build goes on
    run.wait()
    build_ident = next((Path(scratch) / "processes").iterdir()).name
    assert runlock.alive(build_ident)
    said = []
    mine = tmp_path / f"{runlock.RUN_PREFIX}{runlock.identity()}"
    mine.mkdir()
    removed = runlock.clean_dead_runs(tmp_path, say=said.append)
    assert removed == [Path(scratch).name] and not Path(scratch).exists() and mine.exists()
    assert _ends(lambda: not runlock.alive(build_ident))
    assert len(said) == 1 and "1 build process" in said[0] and f"pid {run.pid}" in said[0]
    assert runlock.clean_dead_runs(tmp_path, say=said.append) == []


def test_values_files_live_in_memory_and_reach_the_tool_whole(tmp_path):
    documents = [{"hub": {"password": "s3cret"}}, {"big": "x" * 200_000}]  # more than a pipe holds
    with kube.private_values(*documents) as paths:
        assert all(p.startswith("/dev/fd/") for p in paths)
        assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in paths)
        code = "import sys, json\nprint(json.dumps([json.load(open(p)) for p in sys.argv[1:] for _ in (1, 2)]))"
        result = subprocess.run([sys.executable, "-c", code, *paths], pass_fds=kube.inherited_fds(paths),
                                capture_output=True, text=True, check=True)
        assert json.loads(result.stdout) == [documents[0], documents[0], documents[1], documents[1]]
        fds = kube.inherited_fds(["-f", paths[0], "--x", "/dev/fd/", "/dev/fd/a", paths[1]])
        assert fds == tuple(int(p.rsplit("/", 1)[1]) for p in paths)
    assert not any(os.path.exists(p) and os.readlink(p).startswith("/memfd:classtools") for p in paths)
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("classtools-values-*")]
    assert leftovers == []


@pytest.mark.parametrize("wanted, code", [
    ("point:here", "runlock.crash_point('here')"),
    ("open:*/target.json", "open(sys.argv[1] + '/target.json', 'w')"),
    ("rename:*/final", "open(sys.argv[1] + '/t', 'w').close(); os.replace(sys.argv[1] + '/t', sys.argv[1] + '/final')"),
    ("exec:*true --crash-here*", "subprocess.run(['true', '--crash-here'])"),
])
def test_a_crash_point_kills_the_whole_process_group_where_named(tmp_path, wanted, code):
    script = ("import os, subprocess, sys\nfrom tasks.run import runlock\nrunlock.install_crash_hook()\n"
              "child = subprocess.Popen(['sleep', '300'])\nprint(child.pid, flush=True)\n"
              "open(sys.argv[1] + '/other.json', 'w').close()\n"
              f"{code}\nprint('survived', flush=True)\n")
    run = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                           text=True, start_new_session=True, env={**os.environ, runlock.CRASH_ENV: wanted})
    out, _ = run.communicate(timeout=30)
    assert run.returncode == -signal.SIGKILL and "survived" not in out
    child_pid = int(out.split()[0])
    assert _ends(lambda: runlock.start_time(child_pid) is None)  # the group died with it


def test_without_a_matching_point_nothing_happens(tmp_path):
    script = ("import sys\nfrom tasks.run import runlock\nrunlock.install_crash_hook()\n"
              "runlock.crash_point('elsewhere')\nopen(sys.argv[1] + '/x', 'w').close()\nprint('survived')\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, runlock.CRASH_ENV: "point:here"})
    assert result.returncode == 0 and result.stdout.strip() == "survived"


def _ends(condition) -> bool:
    """condition() became true within a few seconds: SIGKILL is delivered asynchronously."""
    for _ in range(50):
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_only_the_temp_files_of_writers_that_are_gone_are_stale(tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead, mine = tmp_path / f".state.json.{ended.pid}.tmp", tmp_path / f".secrets.env.{os.getpid()}.tmp"
    others = [tmp_path / "state.json", tmp_path / f"state.json.{ended.pid}.tmp", tmp_path / ".x.tmp",
              tmp_path / f".chart.tgz.{ended.pid}.tmpx"]
    for path in [dead, mine, *others]:
        path.write_text("")
    assert runlock.stale_temps(tmp_path) == [dead]
    assert runlock.remove_stale_temps(tmp_path, tmp_path / "missing") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [mine, *others])


def test_the_real_doit_waits_for_a_run_of_the_same_project_but_list_does_not(project):
    """`doit list` and `doit info` read without the lock and create nothing; `doit secrets` waits."""
    assert project.doit("list", check=True).stdout
    info = project.doit("info", "secrets")  # exit 1: the task would run
    assert "status     : run" in info.stdout and "Traceback" not in info.stderr
    assert not project.dep_file.parent.exists(), "a read-only command created doit's state directory"
    holder = _python(f"from tasks.run import runlock\nrunlock.acquire({str(project.dep_file)!r})\n"
                     "print('held', flush=True)\nimport time\ntime.sleep(120)\n")
    assert holder.stdout.readline().strip() == "held"
    try:
        listed = project.doit("list")  # returns while the lock is held: it never asks for it
        assert listed.returncode == 0 and "waiting" not in listed.stderr
        waiting = subprocess.Popen([*DOIT, "-d", str(project.root), "secrets"], cwd=project.root, env=project.env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = waiting.stderr.readline()
        assert "another doit of this project is running" in line and f"pid {holder.pid}" in line
        assert waiting.poll() is None  # still waiting
    finally:
        holder.kill()
        holder.wait()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    assert "secrets: generated" in out
