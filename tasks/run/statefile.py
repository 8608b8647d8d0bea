"""doit's JSON state file, replaced atomically so that a kill at any moment leaves a usable one.

doit's own JSON backend (`doit.dependency.JsonDB`) rewrites the file in place:
a kill during the write leaves it empty or cut, and every later `doit` stops on
"Invalid JSON data". `CrashSafeJsonDB` keeps doit's format (a file written by
either reads in the other) and writes a temporary file in the same directory,
fsyncs it, renames it over the state and fsyncs the directory: a reader, or the
run after a crash, sees the old state or the new one, never a mix.

A state file that cannot be read (empty or cut by an older version, not JSON,
not doit's shape) is treated as empty, with one line on stderr saying so: the
run is then a cold run, which is safe here: image tags come from content and
are looked up in the registry, the chart is published only when the bucket
lacks it, and the release tasks read what the cluster runs. The unreadable file
is kept beside it (`<dep_file>.unreadable`) for a post-mortem.

The state directory is made when the state is first saved (or by the run lock,
tasks/run/runlock.py), not before: nothing is created for a command that fails
validation or only reads.

A no-op run that changed nothing writes nothing (a run of a command that may
change something writes the file once if there is none, as doit does).

doit picks backends before it loads dodo.py and imports plugins from sys.path,
which does not hold the project when doit runs as `.venv/bin/doit`; so a doit.cfg
`[BACKEND]` entry cannot name this class there. `install()` (called by dodo.py,
after validation) makes doit build this backend wherever it would build its JSON one.
"""

from __future__ import annotations

import os
import sys

from doit.dependency import JsonDB

from tasks.atomic import write_atomically


class CrashSafeJsonDB(JsonDB):
    """doit's JSON backend with an atomic, durable dump and a load that survives a bad file."""

    desc = "JSON file, replaced atomically (Class Tools)"

    def __init__(self, name, codec, *, module_name=None):
        super().__init__(name, codec, module_name=module_name)
        self._saved = self.codec.encode(self._db)

    def _load(self):
        try:
            with open(self.name, "rb") as handle:
                text = handle.read().decode("utf-8")
            data = self.codec.decode(text)
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError("not a mapping of task names to their saved values")
            return data
        except IsADirectoryError:
            _refuse(f"doit's state file {self.name} is a directory; point state.dep_file "
                    "(config/classroom.yaml) or CLASSTOOLS_DEP_FILE at a file")
        except (ValueError, UnicodeDecodeError) as exc:
            kept = f"{self.name}.unreadable"
            try:
                os.replace(self.name, kept)
            except OSError:
                kept = ""
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"classroom: doit's state file {self.name} was unreadable ({reason[:120]}); starting from "
                  f"an empty state (safe: tags, chart and releases are looked up where they live)"
                  f"{f'; the old file is kept as {kept}' if kept else ''}", file=sys.stderr, flush=True)
            return {}
        except OSError as exc:
            _refuse(f"doit's state file {self.name} cannot be read ({exc.strerror}); "
                    "fix its permissions or point state.dep_file elsewhere")

    def dump(self):
        text = self.codec.encode(self._db)
        if text == self._saved and os.path.exists(self.name):
            return
        try:
            write_atomically(self.name, text.encode("utf-8"), point="state")
        except OSError as exc:
            _refuse(f"doit's state file {self.name} cannot be written ({exc.strerror}); the work done "
                    "is not recorded, the next run finds it done where it lives")
        self._saved = text


def _refuse(line: str):
    print(line, file=sys.stderr, flush=True)
    sys.exit(3)  # doit's own code for "error before task execution starts"


def install():
    """Make doit build CrashSafeJsonDB where it would build its JSON backend (this process only).

    doit resolves the backend name to a class before dodo.py loads, then builds
    `cmd_base.Dependency(db_class, dep_file, ...)` after; wrapping that one name
    is the narrowest hook dodo.py can reach."""
    from doit import cmd_base

    if getattr(cmd_base.Dependency, "classroom_state", False):
        return
    original = cmd_base.Dependency

    class CrashSafeDependency(original):
        classroom_state = True

        def __init__(self, db_class, backend_name, *args, **kwargs):
            if db_class is JsonDB:
                db_class = CrashSafeJsonDB
            else:  # dbm and sqlite3 create their file when they open it (both write it atomically)
                os.makedirs(os.path.dirname(os.path.abspath(backend_name)), exist_ok=True)
            super().__init__(db_class, backend_name, *args, **kwargs)

    cmd_base.Dependency = CrashSafeDependency
