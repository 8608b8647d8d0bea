"""The classroom's secrets: generated on first use or taken from the environment.

Values live in one git-ignored `name=value` file (mode 0600, in a 0700 directory) or
in `CLASSTOOLS_<NAME>` environment variables, which win.  They are read inside
actions, at run time: no task dict, `doit info` output or doit state ever
holds a value, only names.  Nothing here prints a value.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tasks.config.loader import PROJECT_DIR
from tasks.config.model import Config
from tasks.errors import ClassroomError, action

FILE_ENV = "CLASSTOOLS_SECRETS_FILE"
ENV_PREFIX = "CLASSTOOLS_"


class Secret(NamedTuple):
    name: str
    purpose: str
    generated: bool  # False: a person must supply it (e.g. an LDAP bind password)

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


SECRETS = {s.name: s for s in (
    Secret("proxy_secret_token", "authenticates the hub to its proxy", True),
    Secret("hub_cookie_secret", "signs the hub's login cookies", True),
    Secret("db_root_password", "root password of each student's database sidecar", True),
    Secret("ldap_bind_password", "password of auth.ldap.search_user", False),
)}


def required(config: Config) -> list[str]:
    """The secrets this classroom needs, given its config."""
    names = [s.name for s in SECRETS.values() if s.generated]
    ldap = config.classroom["auth"]
    if ldap["type"] == "ldap" and ldap["ldap"]["search_user"]:
        names.append("ldap_bind_password")
    return names


class MissingSecret(ClassroomError):
    pass


class SecretStore:
    def __init__(self, path: Path | None = None, environ=None):
        self.environ = os.environ if environ is None else environ
        self.path = Path(path or self.environ.get(FILE_ENV) or PROJECT_DIR / ".classroom" / "secrets.env")

    def get(self, name: str) -> str:
        """The value of one secret, generating and saving it on first use."""
        secret = SECRETS[name]
        from_env = self.environ.get(secret.env_var)
        if from_env:
            return from_env
        with self._locked():
            stored = self._read()
            if stored.get(name):
                return stored[name]
            if not secret.generated:
                raise MissingSecret(
                    f"secret {name} ({secret.purpose}) is not set: export {secret.env_var} "
                    f"or add a line `{name}=...` to {self.path} (mode 0600)")
            from secrets import token_hex  # only when a secret is made: ~1 ms less at each start
            stored[name] = token_hex(32)
            self._write(stored)
            return stored[name]

    def ensure(self, names) -> tuple[list[str], list[str]]:
        """Generate what is missing; return (generated, supplied) names, never values."""
        generated, supplied = [], []
        for name in names:
            before = self.available(name)
            self.get(name)
            (supplied if before else generated).append(name)
        return generated, supplied

    def available(self, name: str) -> bool:
        if self.environ.get(SECRETS[name].env_var):
            return True
        return bool(self._read().get(name))

    def _read(self) -> dict:
        # A plain `name=value` file rather than YAML: it is read on every no-op run,
        # and this parser costs nothing to import.
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise MissingSecret(f"secrets file {self.path} cannot be read ({type(exc).__name__})") from None
        data = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep or name.strip() not in SECRETS:
                # The message must not quote the line: it may hold a secret.
                raise MissingSecret(f"secrets file {self.path}, line {number}: expected `name=value` "
                                    f"with a name among {', '.join(SECRETS)}")
            data[name.strip()] = value.strip()
        return {k: v for k, v in data.items() if v}

    def _write(self, data: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path.parent, 0o700)  # it may have been made by something else first
        self._remove_stale_temps()
        from tasks.atomic import write_atomically
        text = "# Class Tools secrets. Keep private: never commit, never print.\n" + \
            "".join(f"{name}={data[name]}\n" for name in sorted(data))
        write_atomically(self.path, text.encode("utf-8"), mode=0o600, point="secrets")

    def _remove_stale_temps(self):
        """Temp files of a writer that was killed hold secrets: remove them (called with the lock
        held, so no live writer owns one)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    @contextmanager
    def _locked(self):
        # Two tasks (doit -n 2) may ask for secrets at once: one generates, the other reads.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)


def _ensure_action(config: Config):
    names = required(config)
    store = SecretStore()
    generated, supplied = store.ensure(names)
    if generated:
        print(f"secrets: generated {', '.join(generated)} into {store.path} (mode 0600)")
    print(f"secrets: {len(names)} present ({', '.join(names)})")
    return True


def task_dict(config: Config) -> dict:
    names = required(config)
    return {
        "actions": [action(_ensure_action, config)],
        "uptodate": [secrets_available(names)],
        "verbosity": 2,
    }


class secrets_available:  # lower case, like doit's own uptodate helpers
    """doit `uptodate` of `secrets`: every secret the config needs is in the store or the
    environment.  Names only: doit keeps nothing of a check, and this one says no value."""

    def __init__(self, names: list[str]):
        self.names = names
        self.missing: list[str] = []

    def __call__(self, task, values):
        store = SecretStore()
        self.missing = [name for name in self.names if not store.available(name)]
        return not self.missing

    def __repr__(self):
        if self.missing:
            return "secrets missing: " + ", ".join(self.missing)
        return "secrets present: " + ", ".join(self.names)
