#!/usr/bin/env python3
"""No-op cost of the classroom graph against doit's own start-up.

Runs, interleaved so that machine noise hits both alike, `doit list` and a
no-op `doit` (everything up to date) on this project and on a bare dodo.py
with one task, and prints the medians as a Markdown table.

    .venv/bin/python benchmarks/noop.py [--runs 21] [--against REV]

`--against REV` adds the same two commands on the project as it was at git
revision REV (its tracked files, unpacked in a scratch directory, with a state
of its own): a change's cost, measured in the same interleaved run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE_DODO = '''
def task_hello():
    """The one task."""
    return {"actions": ["true"], "uptodate": [True]}
'''


def timed(cmd, cwd, env) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--against", metavar="REV", help="also time the project at this git revision")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bare").mkdir()
        (tmp / "bare" / "dodo.py").write_text(BARE_DODO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSTOOLS_")}
        env.update(CLASSTOOLS_DEP_FILE=str(tmp / "state.json"),
                   CLASSTOOLS_SECRETS_FILE=str(tmp / "secrets.yaml"))
        doit = [sys.executable, "-m", "doit"]
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], tmp, {}),
            "bare dodo.py: doit list": (doit + ["list"], tmp / "bare", {}),
            "classroom: doit list": (doit + ["-f", str(REPO / "dodo.py"), "list"], REPO, {}),
            "bare dodo.py: doit (no-op)": (doit + ["--db-file", str(tmp / "bare.db")], tmp / "bare", {}),
            "classroom: doit (no-op)": (doit + ["-f", str(REPO / "dodo.py")], REPO, {}),
        }
        if args.against:
            old = _unpack(args.against, tmp / "against")
            own = {"CLASSTOOLS_DEP_FILE": str(tmp / "against-state.json")}
            cases[f"classroom at {args.against}: doit list"] = (doit + ["-f", str(old / "dodo.py"), "list"], old, own)
            cases[f"classroom at {args.against}: doit (no-op)"] = (doit + ["-f", str(old / "dodo.py")], old, own)
        times = measure(cases, env, args.runs)
    print_table(times)


def measure(cases: dict, env: dict, runs: int) -> dict:
    """Warm up (and bring every task up to date), then time the cases interleaved.

    Python writes and reuses its bytecode caches, as on a user's machine: a
    PYTHONDONTWRITEBYTECODE inherited from the shell would make every run
    compile the project's modules (but not doit's, installed with theirs)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # a case is (command, directory) or (command, directory, its own environment variables)
    cases = {name: (case[0], case[1], {**env, **(case[2] if len(case) > 2 else {})}) for name, case in cases.items()}
    for cmd, cwd, case_env in cases.values():
        subprocess.run(cmd, cwd=cwd, env=case_env, check=True, capture_output=True)
    times = {name: [] for name in cases}
    for _ in range(runs):
        for name, (cmd, cwd, case_env) in cases.items():
            times[name].append(timed(cmd, cwd, case_env))
    return times


def _unpack(rev: str, target: Path) -> Path:
    """The files git tracks at REV, written into TARGET."""
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def print_table(times: dict):
    print("| command | median (ms) | min (ms) | runs |\n|---|---:|---:|---:|")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples) * 1000:.0f} | {min(samples) * 1000:.0f} | {len(samples)} |")


if __name__ == "__main__":
    main()
