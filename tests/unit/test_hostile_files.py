"""Config files and paths that are not what they claim: refused by `doit` in one line each.

A config file that is a symlink to /dev/zero once ran out of memory, a FIFO hung
`doit` for ever, a state file inside a file gave a traceback.  Each case runs the
real `doit list` in a fresh project and checks the whole contract: exit 3, one
line per problem naming the file (and the key), no traceback, nothing written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A FIFO nobody writes to would block a plain read for ever: if the loader regresses,
# doit is stopped after this long without output instead of hanging the test run.
HANG_GUARD = 60


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _refused(project, *, env=None) -> list[str]:
    before = _tree(project.root)
    result = project.doit("list", env=env, quiet_limit=HANG_GUARD, overall_limit=HANG_GUARD)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Traceback" not in output and "Error" not in output.split("\n", 1)[0], output
    assert result.stdout == ""
    assert _tree(project.root) == before, "a refused config must not write anything"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("classroom config is invalid (") and lines[0].endswith("; nothing was run:")
    return lines[1:]


@pytest.mark.parametrize("make,kind", [
    (lambda path: path.symlink_to("/dev/zero"), "a character device"),
    (lambda path: os.mkfifo(path), "a FIFO (named pipe)"),
])
def test_config_file_that_is_not_a_regular_file(project, make, kind):
    path = project.config / "classroom.yaml"
    path.unlink()
    make(path)

    assert _refused(project) == [f"config/classroom.yaml: found {kind}; expected a regular YAML file"]


def test_config_file_that_is_a_directory(project):
    (project.config / "data.yaml").unlink()
    (project.config / "data.yaml").mkdir()

    assert _refused(project) == ["config/data.yaml: is a directory, expected a YAML file"]


def test_config_file_that_grows_past_the_cap_is_not_read_whole(project):
    with open(project.config / "courses.yaml", "ab") as handle:
        handle.truncate(64 * 2**20)  # sparse: 64 MiB of NULs that must never be read

    assert _refused(project) == ["config/courses.yaml: found a file of 67,108,864 bytes; expected a YAML file "
                                 "of at most 262,144 bytes"]


def test_dataset_source_that_is_a_fifo(project):
    os.mkfifo(project.root / "pipe")
    project.write("data.yaml", "datasets:\n  - name: x\n    source: pipe\n")

    assert _refused(project) == ["config/data.yaml:3: datasets[0].source: found 'pipe' (text), which is a "
                                 "FIFO (named pipe); expected a regular file or a directory"]


@pytest.mark.parametrize("value,problem", [
    ("config", "'config' (text), which is a directory"),
    ("config/data.yaml/state.json", "'config/data.yaml/state.json' (text): {root}/config/data.yaml is a regular "
                                    "file, not a directory"),
    ("x" * 256, "'" + "x" * 57 + "...' (text)"),
])
def test_dep_file_from_the_environment(project, value, problem):
    # doit_settings takes CLASSTOOLS_DEP_FILE over state.dep_file: it is validated the same way
    lines = _refused(project, env=project.env(CLASSTOOLS_DEP_FILE=value))

    expected = ("a file path (not starting with '-', each part at most 255 bytes, at most 4095 bytes in all), "
                "naming a file" if len(value) > 255 else
                f"a file path whose directory exists or can be made (relative paths start at {project.root})")
    assert lines == [f"environment CLASSTOOLS_DEP_FILE: found {problem.replace('{root}', str(project.root))}; "
                     f"expected {expected}"]


def test_thousands_of_problems_are_shown_bounded_with_a_count(project):
    project.write("classroom.yaml", "".join(f"key{i}: 1\n" for i in range(8000)))

    lines = _refused(project)

    assert len(lines) == 26
    assert lines[0].startswith("config/classroom.yaml:1: key0: found unknown key 'key0'; expected one of: ")
    assert lines[-1] == ("config/classroom.yaml: found 7,975 more problems in this file; expected none (the "
                         "first 25 are shown: fix them and run again)")
