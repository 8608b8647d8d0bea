#!/usr/bin/env python3
"""Mutation score of pure modules against the unit tests alone (mutmut 3).

For each module given, copies the project (the files git tracks or would
track: no .venv, .dev, .classroom, state) into a scratch directory, lets
mutmut mutate that one module, runs the unit tests that use it (the files of
tests/unit that import it: no integration test, no service; a test's doit
in a subprocess cannot see mutmut's mutants, so benchmarks/mutation_plugin.py
skips those), and prints
killed/total per module as a Markdown table.  The working tree is never
touched: mutmut writes its mutants/ in the scratch copy.

    .venv/bin/python benchmarks/mutation.py tasks/release/spec.py [tasks/chart/spec.py ...]
        [--max-children 2] [--keep]      # --keep: leave the scratch copy (its path is printed)

A mutant counts as killed when a test fails (or times out) with it; the
other states (survived, no tests, suspicious, ...) count against the score.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).with_name("mutation_plugin.py")
# one item a line: mutmut reads this setting as a list of lines, each one pytest argument
PYTEST_ARGS = ("-p", "no:cacheprovider", "-q", "-m", "not integration", "-p", PLUGIN.stem)
KILLED_EXIT_CODES = {1, 3}             # mutmut.stats: a failing test (3: pytest's internal error)
TIMEOUT_EXIT_CODES = {36, -24, 24, 152, 255}


def project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted({name for name in listed.split("\0") if name and (REPO / name).is_file()})


def scratch_copy(target: Path):
    for name in project_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    shutil.copy2(PLUGIN, target / PLUGIN.name)  # at the top, where pytest's `-p` finds it


def unit_tests_of(module: str) -> list[str]:
    """The unit test files that import the module."""
    package, stem = Path(module).parent.as_posix().replace("/", "."), re.escape(Path(module).stem)
    imports = re.compile(rf"^\s*(from {re.escape(package)} import [^\n]*\b{stem}\b"
                         rf"|import {re.escape(package)}\.{stem}\b|from {re.escape(package)}\.{stem} import)", re.M)
    found = sorted(str(path.relative_to(REPO)) for path in (REPO / "tests" / "unit").glob("test_*.py")
                   if imports.search(path.read_text(encoding="utf-8")))
    if not found:
        raise SystemExit(f"no unit test in tests/unit imports {module}")
    return found


def setup_cfg(module: str, top_level: list[str]) -> str:
    package = module.split("/", 1)[0]
    also_copy = "\n    ".join(sorted(p for p in top_level + [PLUGIN.name] if p not in (package, "tests", "setup.cfg")))
    tests = "\n    ".join(unit_tests_of(module))
    pytest_args = "\n    ".join(PYTEST_ARGS)
    return f"""[mutmut]
source_paths = {package}/
only_mutate = {module}
pytest_add_cli_args =
    {pytest_args}
pytest_add_cli_args_test_selection =
    {tests}
also_copy =
    {also_copy}
"""


def statuses(work: Path, module: str) -> Counter:
    meta = json.loads((work / "mutants" / f"{module}.meta").read_text())
    counts = Counter()
    for code in meta["exit_code_by_key"].values():
        if code in KILLED_EXIT_CODES:
            counts["killed"] += 1
        elif code in TIMEOUT_EXIT_CODES:
            counts["timeout"] += 1
        elif code == 0:
            counts["survived"] += 1
        else:
            counts[f"other ({code})"] += 1
    return counts


def measure(module: str, max_children: int, keep: bool) -> Counter:
    work = Path(tempfile.mkdtemp(prefix="classtools-mutation-"))
    try:
        scratch_copy(work)
        top_level = sorted({name.split("/", 1)[0] for name in project_files()})
        (work / "setup.cfg").write_text(setup_cfg(module, top_level))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSTOOLS_")}
        run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
                             cwd=work, env=env, capture_output=True, text=True)
        if not (work / "mutants" / f"{module}.meta").exists():
            raise SystemExit(f"mutmut produced no results for {module} (exit {run.returncode}):\n"
                             + "\n".join((run.stdout + run.stderr).splitlines()[-30:]))
        counts = statuses(work, module)
        if counts["survived"]:
            listed = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=work, env=env,
                                    capture_output=True, text=True).stdout
            print(f"survivors in {module}:\n{listed}", file=sys.stderr)
        return counts
    finally:
        if keep:
            print(f"scratch copy kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+", help="paths of pure modules, e.g. tasks/release/spec.py")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    rows = []
    for module in args.modules:
        if not (REPO / module).is_file():
            raise SystemExit(f"{module}: no such file in {REPO}")
        print(f"{module}: unit tests {', '.join(unit_tests_of(module))}", file=sys.stderr)
        counts = measure(module, args.max_children, args.keep)
        total = sum(counts.values())
        killed = counts["killed"] + counts["timeout"]
        rows.append((module, killed, total, ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)))
    print("| module | killed/total | score | states |\n|---|---|---|---|")
    for module, killed, total, states in rows:
        print(f"| {module} | {killed}/{total} | {100 * killed / total if total else 0:.1f} % | {states} |")


if __name__ == "__main__":
    main()
