#!/usr/bin/env python3
"""No-op cost side by side with the anchor, chartpress, on one generated sample.

    .venv/bin/python benchmarks/anchor.py [--files 0 5000 50000] [--runs 15]

The sample: base, notebook FROM base, db, and a chart, with N extra files in
the base image's context.  Both tools build and push it to the dev registry
once (`scripts/dev-env up` first), then, interleaved so that machine noise
hits all alike:

- this project: a no-op `doit` and `doit list` on the sample (the tests'
  stand-in images, so that a cold build is quick);
- a bare dodo.py with one up-to-date task (doit's own start-up);
- chartpress 2.4.0 (`--push`, from PyPI, in its own venv under
  /var/cache/classtools) on the same image directories in a git repository.

Figures (medians and minimums, ratios) go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from noop import measure  # benchmarks/ is on sys.path (the script's dir)

REPO = Path(__file__).resolve().parent.parent
STAND_INS = REPO / "tests" / "integration" / "images"
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]
BARE_DODO = 'def task_hello():\n    return {"actions": ["true"], "uptodate": [True]}\n'
CHARTPRESS = "chartpress==2.4.0"
CHARTPRESS_VENV = Path(os.environ.get("CLASSTOOLS_CACHE", "/var/cache/classtools")) / "chartpress-2.4.0"


def registry() -> str:
    env = REPO / ".dev" / "services.env"
    for line in env.read_text().splitlines() if env.exists() else []:
        if line.startswith("export CLASSTOOLS_REGISTRY="):
            return line.split("=", 1)[1]
    sys.exit("anchor: no dev registry: run scripts/dev-env up first")


def chartpress() -> Path:
    binary = CHARTPRESS_VENV / "bin" / "chartpress"
    if not binary.exists():
        print(f"anchor: installing {CHARTPRESS} into {CHARTPRESS_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(CHARTPRESS_VENV)], check=True)
        subprocess.run([str(CHARTPRESS_VENV / "bin" / "pip"), "install", "-q", CHARTPRESS], check=True)
    return binary


def add_files(context: Path, count: int):
    for i in range(count):
        path = context / "material" / f"d{i // 100:03d}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n")


def classroom_sample(root: Path, files: int, registry_prefix: str) -> dict:
    """This project on the sample: the stand-in images, N files in the base context, the dev registry."""
    shutil.copytree(REPO / "config", root / "config")
    shutil.copytree(STAND_INS, root / "images")
    shutil.copytree(REPO / "helm", root / "helm")
    add_files(root / "images" / "base", files)
    text = (root / "config" / "classroom.yaml").read_text().replace('registry: ""', f'registry: "{registry_prefix}"')
    # the real z2jh chart from ../shared/upstream, as the tests use it
    sys.path.insert(0, str(REPO))
    from tests.integration.conftest import JUPYTERHUB_CHART, use_jupyterhub_chart
    (root / "config" / "classroom.yaml").write_text(use_jupyterhub_chart(text, JUPYTERHUB_CHART))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSTOOLS_")}
    env.update(CLASSTOOLS_CONFIG=str(root / "config"), CLASSTOOLS_DEP_FILE=str(root / ".doit" / "s.json"),
               CLASSTOOLS_SECRETS_FILE=str(root / ".classroom" / "secrets.env"))
    return env


def chartpress_sample(root: Path, files: int, registry_prefix: str):
    """The same images for chartpress: a git repository, chartpress.yaml, a chart with image values."""
    images = root / "images"
    for name in ("base", "db"):
        shutil.copytree(STAND_INS / name, images / name)
    add_files(images / "base", files)
    # notebook FROM base: chartpress passes the base image's tag as a build argument
    (images / "notebook").mkdir(parents=True)
    (images / "notebook" / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN true\n")
    chart = root / "classroom"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: classroom\nversion: 0.0.1-set.by.chartpress\n")
    values = {name: {"image": {"repository": "", "tag": ""}} for name in ("base", "notebook", "db")}
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    prefix = f"{registry_prefix}/"
    config = {"charts": [{"name": "classroom", "imagePrefix": prefix, "images": {
        "base": {"contextPath": "images/base", "valuesPath": "base.image"},
        "notebook": {"contextPath": "images/notebook", "valuesPath": "notebook.image",
                     "buildArgs": {"BASE": f"{prefix}base:{{TAG}}"}, "paths": ["images/base"]},
        "db": {"contextPath": "images/db", "valuesPath": "db.image"}}}]}
    (root / "chartpress.yaml").write_text(yaml.safe_dump(config))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(git + ["add", "-A"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "sample"], cwd=root, check=True)


def run_once(files: int, runs: int, reg: str, binary: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tag = f"anchor{files}-{os.getpid()}"
        env = classroom_sample(tmp / "classroom", files, f"{reg}/{tag}-classtools")
        chartpress_sample(tmp / "chartpress", files, f"{reg}/{tag}-chartpress")
        (tmp / "bare").mkdir()
        (tmp / "bare" / "dodo.py").write_text(BARE_DODO)
        print(f"anchor: {files} files: building both samples once ...", file=sys.stderr)
        # chartpress runs `docker build`: the engine-era CLI (Debian's) builds with BuildKit without buildx
        cp_env = {**env, "DOCKER_BUILDKIT": "1", "PATH": f"/usr/bin:{env.get('PATH', '')}"}
        subprocess.run(DOIT + ["-d", str(tmp / "classroom")], cwd=tmp / "classroom", env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([str(binary), "--push"], cwd=tmp / "chartpress", env=cp_env, check=True,
                       stdout=subprocess.DEVNULL)
        state = tmp / "classroom" / ".doit" / "s.json"
        cases = {
            "bare dodo.py, one task: doit": ([sys.executable, "-m", "doit", "--db-file", str(tmp / "bare.db")],
                                             tmp / "bare"),
            "classroom: doit (no-op)": (DOIT + ["-d", str(tmp / "classroom")], tmp / "classroom"),
            "classroom: doit list": (DOIT + ["-d", str(tmp / "classroom"), "list"], tmp / "classroom"),
            "chartpress 2.4.0 --push (no-op)": ([str(binary), "--push"], tmp / "chartpress"),
        }
        times = measure(cases, cp_env, runs)
        size = sum(p.stat().st_size for p in state.parent.glob(state.name + "*") if p.is_file())
    return {"times": times, "state_bytes": size}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[0, 5000, 50000])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    reg, binary = registry(), chartpress()
    print("| context files | command | median (ms) | min (ms) | median ÷ bare doit | median ÷ chartpress |")
    print("|---:|---|---:|---:|---:|---:|")
    for files in args.files:
        result = run_once(files, args.runs, reg, binary)
        medians = {name: statistics.median(samples) for name, samples in result["times"].items()}
        bare, anchor = medians["bare dodo.py, one task: doit"], medians["chartpress 2.4.0 --push (no-op)"]
        for name, samples in result["times"].items():
            print(f"| {files} | {name} | {medians[name] * 1000:.0f} | {min(samples) * 1000:.0f} | "
                  f"{medians[name] / bare:.2f}× | {medians[name] / anchor:.2f}× |", flush=True)
        print(f"| {files} | classroom: doit state file | {result['state_bytes'] / 1e6:.2f} MB | | | |", flush=True)


if __name__ == "__main__":
    main()
