#!/usr/bin/env python3
"""Image-stage benchmarks (figures go to BENCHMARKS.md; no test depends on them).

    .venv/bin/python benchmarks/images.py noop   [--runs 15]   # synthetic classroom vs bare dodo.py
    .venv/bin/python benchmarks/images.py rebuild                # real images/: cold vs after a courses edit
    .venv/bin/python benchmarks/images.py parallel               # real images/: doit -n 2 vs -n 1, cold

`noop` uses the stand-in images of the tests plus 5,000 generated context
files and 50 courses, built into the local engine once, then times a no-op
`doit` against a bare one-task dodo.py, interleaved, medians of the same run.
`rebuild` and `parallel` remove the local `classroom/*` images and empty BuildKit's cache to
make a build cold: run them on a machine where that is acceptable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from noop import measure, print_table
from noop import timed as run  # benchmarks/ is on sys.path (the script's dir)

REPO = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]
BARE_DODO = 'def task_hello():\n    return {"actions": ["true"], "uptodate": [True]}\n'


def make_project(root: Path, images: Path, courses: int = 1, extra_files: int = 0) -> dict:
    shutil.copytree(REPO / "config", root / "config")
    shutil.copytree(images, root / "images", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "helm", root / "helm")
    if courses > 1:
        doc = {"courses": [{"name": f"course-{i:03d}", "repo": f"https://git.example.edu/c/{i}.git",
                            "instructors": [f"prof{i}"], "students": [f"s{i}a", f"s{i}b"]}
                           for i in range(courses)]}
        (root / "config" / "courses.yaml").write_text(yaml.safe_dump(doc))
    for i in range(extra_files):
        path = root / "images" / "base" / "material" / f"d{i // 100:02d}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSTOOLS_")}
    env.update(CLASSTOOLS_CONFIG=str(root / "config"), CLASSTOOLS_DEP_FILE=str(root / ".doit" / "s.json"),
               CLASSTOOLS_SECRETS_FILE=str(root / ".classroom" / "secrets.env"))
    return env


def noop(args):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = make_project(tmp / "synthetic", REPO / "tests" / "integration" / "images",
                           courses=50, extra_files=5000)
        (tmp / "bare").mkdir()
        (tmp / "bare" / "dodo.py").write_text(BARE_DODO)
        print("building the synthetic classroom once ...", file=sys.stderr)
        subprocess.run(DOIT + ["-d", str(tmp / "synthetic")], cwd=tmp / "synthetic", env=env, check=True,
                       stdout=subprocess.DEVNULL)
        context = sum(1 for p in (tmp / "synthetic" / "images" / "base").rglob("*") if p.is_file())
        cases = {"bare dodo.py, one task: doit": ([sys.executable, "-m", "doit", "--db-file",
                                                   str(tmp / "bare.db")], tmp / "bare"),
                 "synthetic classroom: doit (no-op)": (DOIT + ["-d", str(tmp / "synthetic")],
                                                       tmp / "synthetic"),
                 "synthetic classroom: doit list": (DOIT + ["-d", str(tmp / "synthetic"), "list"],
                                                    tmp / "synthetic")}
        times = measure(cases, env, args.runs)
    print(f"synthetic classroom: 50 courses, {context} files in the base image's context\n")
    print_table(times)


def _cold():
    """No image of this benchmark's tags, no BuildKit layer or pip cache."""
    import docker
    client = docker.from_env()
    for image in client.images.list(name="classroom/*"):
        for tag in image.tags:
            if tag.startswith("classroom/"):
                client.images.remove(tag, force=True)
    client.api.prune_builds(all=True)


def rebuild(args):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "real"
        env = make_project(root, REPO / "images")
        _cold()
        cold = run(DOIT + ["-d", str(root), "image:notebook"], root, env)
        courses = root / "config" / "courses.yaml"
        courses.write_text(courses.read_text().replace("ref: main", "ref: spring"))
        warm = run(DOIT + ["-d", str(root), "image:notebook"], root, env)
    print("| build | wall time (s) |\n|---|---:|")
    print(f"| cold base + notebook (empty BuildKit cache) | {cold:.1f} |")
    print(f"| notebook after a courses.yaml edit | {warm:.1f} |")


def parallel(args):
    results = {}
    for jobs in ("1", "2"):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "real"
            env = make_project(root, REPO / "images")
            _cold()
            results[jobs] = run(DOIT + ["-d", str(root), "-n", jobs, "image:base", "image:db"], root, env)
    print("| doit image:base image:db, cold | wall time (s) |\n|---|---:|")
    for jobs, seconds in results.items():
        print(f"| -n {jobs} | {seconds:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["noop", "rebuild", "parallel"])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    {"noop": noop, "rebuild": rebuild, "parallel": parallel}[args.which](args)


if __name__ == "__main__":
    main()
