"""The classroom's configuration: load the three YAML files, validate, normalize.

`load()` returns a `Config` or raises `ConfigError` carrying every problem of
every file at once.  `load_or_exit()` is what `dodo.py` calls: on bad input it
prints the problems and exits before doit opens its state or runs a task.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from tasks.config.model import Config, source_kind
from tasks.errors import ClassroomError

CONFIG_DIR_ENV = "CLASSTOOLS_CONFIG"
DEP_FILE_ENV = "CLASSTOOLS_DEP_FILE"
BACKEND_ENV = "CLASSTOOLS_BACKEND"
EXIT_BAD_CONFIG = 3  # doit's own code for "error before any task runs"

PROJECT_DIR = Path(__file__).resolve().parents[2]
FILE_NAMES = ("classroom.yaml", "courses.yaml", "data.yaml")
# Validation is cached by content: a change to any of these modules drops the cache.
_VALIDATION_SOURCES = ("loader.py", "model.py", "formats.py", "rules.py", "schema.py", "validation.py",
                       "yamldoc.py")


class ConfigError(ClassroomError):
    """`messages`: the lines to show (bounded per file); `count`: every problem found."""

    def __init__(self, messages: list[str], count: int | None = None):
        super().__init__("\n".join(messages))
        self.messages = messages
        self.count = len(messages) if count is None else count


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV) or PROJECT_DIR / "config")


def _display(directory: Path) -> str:
    try:
        return str(directory.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(directory)


def load(directory: Path | None = None) -> Config:
    """The validated config; cached by the bytes of its files, so a no-op run skips
    YAML parsing and cerberus altogether (they cost more than doit's own start-up)."""
    directory = Path(directory) if directory is not None else config_dir()
    cache = directory.parent / ".classroom" / "cache" / "config.json"
    key = _cache_key(directory)
    if key is not None:
        cached = _read_cache(cache, key)
        if cached is not None:
            return cached
    config = validate(directory)
    if key is not None:
        _write_cache(cache, key, config)
    return config


def _cache_key(directory: Path) -> str | None:
    from tasks.config.yamldoc import YamlError, read_limited  # no yaml import: a cache hit parses nothing

    digest = hashlib.sha256()
    try:
        for name in _VALIDATION_SOURCES:
            digest.update((Path(__file__).parent / name).read_bytes())
        for name in FILE_NAMES:
            # read as validation reads: a FIFO or /dev/zero in config/ must not hang this
            digest.update(b"\0" + read_limited(directory / name))
    except (OSError, YamlError):
        return None  # let validation say what is wrong
    environment = "\0".join(os.environ.get(name, "") for name in (BACKEND_ENV, DEP_FILE_ENV))  # both validated
    digest.update(f"\0{directory.resolve()}\0{environment}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


_MAX_CACHE_BYTES = 16 * 2**20  # three capped config files, normalized, fit many times over


def _read_cache(cache: Path, key: str) -> Config | None:
    from tasks.config.yamldoc import YamlError, read_limited

    try:
        data = json.loads(read_limited(cache, _MAX_CACHE_BYTES).decode("utf-8"))
        if data["key"] != key or not all(Path(p).exists() for p in data["paths"]):
            return None
        return Config(directory=Path(data["directory"]), **data["config"])
    except (OSError, YamlError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache: Path, key: str, config: Config):
    config_data = {k: v for k, v in config._asdict().items() if k != "directory"}
    data = {"key": key, "directory": str(config.directory), "config": config_data,
            "paths": [str(p) for p in _paths_that_must_exist(config)]}
    try:
        cache.parent.parent.mkdir(mode=0o700, exist_ok=True)  # .classroom/ also holds secrets
        from tasks.atomic import write_atomically
        write_atomically(cache, json.dumps(data, sort_keys=True).encode("utf-8"))
    except OSError:
        pass  # a read-only checkout still works, only slower


def _paths_that_must_exist(config: Config) -> list[Path]:
    """Local files the config names: a cached config is only valid while they exist."""
    named = (config.classroom["build"]["ca_bundle"], config.classroom["auth"]["ldap"]["ca_bundle"])
    paths = [config.path(path) for path in named if path]
    return paths + [config.path(d["source"]) for d in config.datasets if source_kind(d["source"]) == "local"]


def validate(directory: Path) -> Config:
    # Imported here: only a cache miss pays for YAML parsing and cerberus.
    from tasks.config import rules, validation
    from tasks.config.yamldoc import YamlError, load_file

    problems = validation.Problems(_display(directory))
    raw, docs = {}, {}
    for file_name in FILE_NAMES:
        try:
            raw[file_name] = load_file(directory / file_name)
        except YamlError as exc:
            problems.add_file_problem(file_name, exc.problem, exc.line)
            continue
        docs[file_name] = validation.check_file(file_name, raw[file_name], problems)
    backend = os.environ.get(BACKEND_ENV)
    if backend and backend not in ("json", "dbm", "sqlite3"):
        problems.add_environment_problem(f"environment {BACKEND_ENV}: found {backend!r}; "
                                         "expected one of: json, dbm, sqlite3")
    dep_file = os.environ.get(DEP_FILE_ENV)
    dep_file_problem = dep_file and rules.state_file_problem(dep_file, directory.parent)
    if dep_file_problem:
        problems.add_environment_problem(f"environment {DEP_FILE_ENV}: found {dep_file_problem[0]}; "
                                         f"expected {dep_file_problem[1]}")
    rules.check_all(docs, raw, problems, directory.parent)
    if problems.count:
        raise ConfigError(problems.lines, problems.count)
    return Config(
        directory=directory,
        classroom=_normalize_users(docs["classroom.yaml"]),
        courses=[_normalize_users(c) for c in docs["courses.yaml"]["courses"]],
        datasets=docs["data.yaml"]["datasets"],
    )


_USER_LISTS = ("admin_users", "instructors", "students")


def _normalize_users(doc):
    """Login lists are sets: their order and repeats must not make work."""
    if isinstance(doc, dict):
        return {k: sorted(set(v)) if k in _USER_LISTS else _normalize_users(v) for k, v in doc.items()}
    return doc


def load_or_exit(directory: Path | None = None) -> Config:
    try:
        return load(directory)
    except ConfigError as exc:
        count = exc.count
        print(f"classroom config is invalid ({count} problem{'s' if count != 1 else ''}); "
              "nothing was run:", file=sys.stderr)
        for line in exc.messages:
            print(line, file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)


def doit_settings(config: Config) -> dict:
    """doit's own settings: where the task state lives (CI caches that file)."""
    state = config.classroom["state"]
    dep_file = config.path(os.environ.get(DEP_FILE_ENV) or state["dep_file"])
    return {
        "dep_file": str(dep_file),
        "backend": os.environ.get(BACKEND_ENV) or state["backend"],
        "verbosity": 2,
    }
