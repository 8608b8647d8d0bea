#!/usr/bin/env python3
"""A longer fuzz run of the config loader and validator, with figures for RELIABILITY.md.

Runs the generator of tests/unit/test_fuzz_config.py (the same classes of
hostile config) in process for as many configs as asked, and prints the
figures: configs tried, refused, accepted, failures (any exception but a
ConfigError, a malformed refusal line, an accepted hostile value, a refusal
over 2 s), refusal time median / 99th percentile / max, and the classes
generated.  Failing configs are copied to --keep DIR to replay.

    .venv/bin/python benchmarks/fuzz.py [--configs 5000] [--seed N] [--keep DIR]

Exit status 1 when any config failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _fuzz_module():
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location("fuzz_config", REPO / "tests/unit/test_fuzz_config.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=None, help="default: a new random seed (printed)")
    parser.add_argument("--keep", type=Path, default=None, help="copy failing configs here")
    args = parser.parse_args()
    fuzz = _fuzz_module()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="classtools-fuzz-") as work:
        outcome = fuzz.run(seed, args.configs, Path(work), keep_failures=args.keep)
    elapsed = time.monotonic() - started
    times = sorted(outcome.times) or [0.0]
    print(f"seed {seed}: {outcome.figures()}")
    print(f"refusal time p99 {times[int(len(times) * 0.99) - 1 if len(times) > 1 else 0] * 1000:.0f} ms; "
          f"whole run {elapsed:.1f} s")
    print("classes: " + ", ".join(f"{name} {count}" for name, count in sorted(outcome.classes.items())))
    for failure in outcome.failures[:50]:
        print("FAIL", failure)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
