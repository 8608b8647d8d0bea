"""A helm chart repository in a bucket: gs:// through google-cloud-storage, or a directory.

Publishing checks that the index can take the new entry (a helm index of the
expected shape, no other archive under the same version), then takes two
steps that are each safe to repeat: upload the .tgz unless the very same bytes
are there (a different archive under the same version is refused: versions are
immutable), then merge the index: read it with its generation, add the entry,
write it back only if nobody wrote in between (`if_generation_match` on GCS, a
lock and an atomic rename on disk), re-read and merge again on conflict.  The
index is then read back: publishing is done only when the entry is there, and
the generation it was seen in is remembered (`token`).  An index that cannot be
parsed or has another shape is never overwritten: nothing else may be lost.

`still_lists` is the publish task's up-to-date check: one small metadata
request while the index keeps the remembered generation, the index itself only
after someone wrote it; no google.cloud import on that path.

GCS is asked with bounded patience (tasks/gcs.py): an endpoint that is down is
one line naming it within seconds.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from tasks import gcs
from tasks.errors import ClassroomError

INDEX = "index.yaml"
# How long merging may go on while other publishers keep winning the race for
# the index: every lost round means someone else's write succeeded.
MERGE_PATIENCE = 120
# Rounds of write + read back when the written entry is gone again at once
# (only a writer that ignores generations can do that).
CONFIRM_ROUNDS = 3
# Reads of the index that may find it replaced between its metadata and its bytes.
READ_ROUNDS = 10
# A helm index with thousands of versions stays well under this.
MAX_INDEX_BYTES = 16 * 1024 * 1024


class ChartRepoError(ClassroomError):
    pass


# ---------------------------------------------------------------- the index (pure)

def _index_loader():
    """PyYAML's safe loader without timestamp resolution (helm's `created` stays the
    text it was) and without aliases (a helm index has none; an alias bomb would
    expand without limit)."""
    import yaml

    class IndexLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.MarkedYAMLError(None, None, "found a YAML alias (a helm index has none)",
                                           event.start_mark)
            return super().compose_node(parent, index)

    IndexLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return IndexLoader


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def shape_problems(index) -> list[str]:
    """What keeps INDEX (parsed YAML) from being a helm repository index we can merge into."""
    if not isinstance(index, dict):
        return [f"the document is {_kind(index)}, expected a mapping with apiVersion and entries"]
    problems = []
    if index.get("apiVersion", "v1") != "v1":
        problems.append(f"apiVersion is {index['apiVersion']!r}, expected 'v1'")
    entries = index.get("entries")
    if entries is None:
        return problems
    if not isinstance(entries, dict):
        return problems + [f"entries is {_kind(entries)}, expected a mapping of chart name to versions"]
    for chart, versions in entries.items():
        if versions is None:
            continue
        if not isinstance(versions, list):
            problems.append(f"entries.{chart} is {_kind(versions)}, expected a list of chart versions")
            continue
        for i, version in enumerate(versions):
            if not isinstance(version, dict):
                problems.append(f"entries.{chart}[{i}] is {_kind(version)}, expected a mapping "
                                "(a chart version with name, version, digest, urls)")
            elif not isinstance(version.get("version"), str):
                problems.append(f"entries.{chart}[{i}].version is {_kind(version.get('version'))}, "
                                "expected a version string")
    return problems


def _too_big(size: int, where: str) -> ChartRepoError:
    return ChartRepoError(f"{where}/{INDEX} is {size} bytes, expected at most {MAX_INDEX_BYTES}; "
                          "it was left as it is")


def parse_index(text: str | bytes | None, where: str) -> dict:
    """The index at WHERE/index.yaml as a mapping (a new one when there is none), or
    ChartRepoError in one line naming the object and what was expected."""
    import yaml
    if text is not None and len(text) > MAX_INDEX_BYTES:
        raise _too_big(len(text), where)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ChartRepoError(f"{where}/{INDEX} is not UTF-8 text (byte {exc.start}); "
                                 "it was left as it is: repair or remove it") from None
    if not text or not text.strip():
        return {"apiVersion": "v1", "entries": {}}
    try:
        index = yaml.load(text, Loader=_index_loader())  # noqa: S506 - a safe loader, aliases refused
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ChartRepoError(f"{where}/{INDEX} is corrupt ({first}); it was left as it is: "
                             "repair or remove it") from None
    if index is None:
        return {"apiVersion": "v1", "entries": {}}
    problems = shape_problems(index)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ChartRepoError(f"{where}/{INDEX} is not a helm repository index: {'; '.join(problems[:3])}{more}; "
                             "it was left as it is: repair or remove it")
    return index


def listed(index: dict, name: str, version: str, digest: str) -> bool:
    """INDEX lists chart NAME at VERSION with that DIGEST."""
    return any(e.get("version") == version and e.get("digest") == digest
               for e in ((index.get("entries") or {}).get(name) or []))


def merge_index(text: str | bytes | None, entry: dict, where: str) -> tuple[str | None, bool]:
    """(new index text, changed?) — None text means: the entry is already there."""
    import yaml
    index = parse_index(text, where)
    index.setdefault("apiVersion", "v1")
    entries = index.get("entries") or {}
    index["entries"] = entries
    versions = entries.get(entry["name"]) or []
    entries[entry["name"]] = versions
    for existing in versions:
        if existing.get("version") == entry["version"]:
            if existing.get("digest") == entry["digest"]:
                return None, False
            raise ChartRepoError(f"{where}/{INDEX} already lists {entry['name']} {entry['version']} "
                                 "with another digest: versions are immutable")
    versions.append(entry)
    versions.sort(key=lambda e: str(e.get("created", "")), reverse=True)
    index["generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return yaml.safe_dump(index, sort_keys=False), True


def open_repository(bucket_url: str, project_dir: Path):
    if bucket_url.startswith("gs://"):
        return GcsRepository(bucket_url[len("gs://"):].rstrip("/"))
    path = Path(bucket_url[len("file://"):])
    return DirectoryRepository(path if path.is_absolute() else project_dir / path)


# ---------------------------------------------------------------- GCS

class GcsRepository:
    def __init__(self, bucket: str):
        self.where = f"gs://{bucket}"
        self.name = bucket
        self._bucket = None
        self.service = gcs.service()
        self.endpoint = self.service.endpoint

    def public_url(self) -> str:
        return f"{self.endpoint}/{self.name}" if self.service.anonymous else f"{gcs.GOOGLE_ENDPOINT}/{self.name}"

    # ---- bounded patience and one line per failure (tasks/gcs.py)
    @staticmethod
    def _calls() -> dict:
        return gcs.calls()

    def _talking(self, doing: str):
        """GCS failures as one ChartRepoError line naming the service, the address and the bucket."""
        return gcs.failures_as(ChartRepoError, doing, self.where)

    @property
    def bucket(self):
        if self._bucket is None:
            with self._talking(f"open {self.where}"):
                bucket = gcs.client().bucket(self.name)
                if not bucket.exists(**self._calls()):
                    raise ChartRepoError(f"bucket {self.where} does not exist: create it "
                                         f"(gcloud storage buckets create {self.where}) or fix buckets.charts")
            self._bucket = bucket
        return self._bucket

    def _read_index(self) -> tuple[str | bytes | None, int]:
        """(index text or None, its generation; 0 when there is none)."""
        from google.api_core import exceptions
        for _ in range(READ_ROUNDS):
            blob = self.bucket.get_blob(INDEX, **self._calls())
            if blob is None:
                return None, 0
            if blob.size is not None and blob.size > MAX_INDEX_BYTES:
                raise _too_big(blob.size, self.where)
            try:
                # The blob carries its generation: this downloads exactly what was listed.
                return blob.download_as_bytes(**self._calls()), blob.generation
            except exceptions.NotFound:
                continue  # replaced between the two requests: read the new one
        raise ChartRepoError(f"{self.where}/{INDEX} was replaced {READ_ROUNDS} times while being read; try again")

    def check_index(self, entry: dict):
        """Refuse before uploading anything if the index could not take the entry."""
        with self._talking(f"read {self.where}/{INDEX}"):
            text, _ = self._read_index()
        merge_index(text, entry, self.where)

    def upload_chart(self, filename: str, data: bytes) -> bool:
        """True if uploaded, False if the same bytes were already there."""
        from google.api_core import exceptions
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        with self._talking(f"upload {self.where}/{filename}"):
            while True:
                blob = self.bucket.get_blob(filename, **self._calls())
                if blob is not None:
                    if blob.md5_hash == md5:
                        return False
                    raise ChartRepoError(f"{self.where}/{filename} exists with other content: "
                                         "versions are immutable, refusing to overwrite")
                try:
                    self.bucket.blob(filename).upload_from_string(
                        data, content_type="application/gzip", if_generation_match=0, **self._calls())
                    return True
                except exceptions.PreconditionFailed:
                    continue  # someone raced us (or a retry of our own write): compare again

    def add_to_index(self, entry: dict) -> tuple[bool, int]:
        """(changed?, conflicts): merges ENTRY into the index, re-reading after every
        write someone else made first."""
        import random

        from google.api_core import exceptions
        conflicts = 0
        deadline = time.monotonic() + MERGE_PATIENCE
        with self._talking(f"update {self.where}/{INDEX}"):
            while True:
                text, generation = self._read_index()
                new_text, changed = merge_index(text, entry, self.where)
                if not changed:
                    return False, conflicts
                target = self.bucket.blob(INDEX)
                target.cache_control = "no-cache"  # helm must see a new version at once
                try:
                    target.upload_from_string(new_text, content_type="text/yaml",
                                              if_generation_match=generation, **self._calls())
                    return True, conflicts
                except exceptions.PreconditionFailed:
                    conflicts += 1
                    if time.monotonic() > deadline:
                        raise ChartRepoError(f"{self.where}/{INDEX} kept changing under us for "
                                             f"{MERGE_PATIENCE} s ({conflicts} concurrent writes); "
                                             "try again") from None
                    # Jittered backoff: two publishers that collided do not collide again in step.
                    time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(conflicts, 6))))

    def confirm(self, entry: dict) -> str | None:
        """The index's generation if it lists ENTRY (read back after writing), else None."""
        with self._talking(f"read back {self.where}/{INDEX}"):
            text, generation = self._read_index()
        index = parse_index(text, self.where)
        return str(generation) if listed(index, entry["name"], entry["version"], entry["digest"]) else None

    def still_lists(self, name: str, version: str, digest: str, token: str | None) -> tuple[bool, str]:
        """(True, "") if the index still lists the chart version; else (False, why), with
        why "" when the bucket could not be asked (publishing then says what is wrong).
        One small metadata request while the index keeps generation TOKEN."""
        import json
        from urllib.parse import quote
        object_url = f"{self.endpoint}/storage/v1/b/{quote(self.name, safe='')}/o/{quote(INDEX, safe='')}"
        status, body = _http_get(f"{object_url}?fields=generation")
        if status in (401, 403):
            return self._still_lists_authenticated(name, version, digest, token)
        if status == 404:
            return False, f"{self.where}/{INDEX} is gone"
        if status != 200:
            return False, ""
        try:
            generation = str(json.loads(body)["generation"])
        except (ValueError, KeyError, TypeError):
            return False, ""
        if token is not None and generation == token:
            return True, ""
        status, body = _http_get(f"{object_url}?alt=media&generation={generation}")
        if status != 200:
            return False, ""
        return _lists_or_why(body, self.where, name, version, digest)

    def _still_lists_authenticated(self, name, version, digest, token) -> tuple[bool, str]:
        # A bucket that is not public: the same question through the authenticated client.
        try:
            with self._talking(f"read {self.where}/{INDEX}"):
                blob = self.bucket.get_blob(INDEX, **self._calls())
                if blob is None:
                    return False, f"{self.where}/{INDEX} is gone"
                if token is not None and str(blob.generation) == token:
                    return True, ""
                text = blob.download_as_bytes(**self._calls())
        except ChartRepoError:
            return False, ""
        return _lists_or_why(text, self.where, name, version, digest)


def _http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of an anonymous GET; (0, b"") when nothing answered. http.client,
    not urllib.request: this runs on every no-op, and urllib.request costs more to import
    than the request takes."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    try:
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=gcs.CONNECT_TIMEOUT)
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=gcs.CONNECT_TIMEOUT)
        else:
            return 0, b""
        try:
            connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
            response = connection.getresponse()
            return response.status, response.read(MAX_INDEX_BYTES + 1) if response.status == 200 else b""
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        return 0, b""


def _lists_or_why(text, where: str, name: str, version: str, digest: str) -> tuple[bool, str]:
    try:
        index = parse_index(text, where)
    except ChartRepoError:
        return False, ""  # publishing refuses it, in its own words
    if listed(index, name, version, digest):
        return True, ""
    return False, f"{where}/{INDEX} does not list {name} {version}"


# ---------------------------------------------------------------- a directory

class DirectoryRepository:
    """A bucket on disk, for the local profile (any web server can serve it)."""

    def __init__(self, path: Path):
        self.path = path
        self.where = f"file://{path}"

    def public_url(self) -> str:
        return f"file://{self.path}"

    def check_index(self, entry: dict):
        index = self.path / INDEX
        merge_index(index.read_bytes() if index.exists() else None, entry, self.where)

    def upload_chart(self, filename: str, data: bytes) -> bool:
        with self._locked():
            target = self.path / filename
            if target.exists():
                if target.read_bytes() == data:
                    return False
                raise ChartRepoError(f"{target} exists with other content: versions are immutable, "
                                     "refusing to overwrite")
            self._write(target, data)
            return True

    def add_to_index(self, entry: dict) -> tuple[bool, int]:
        with self._locked():
            index = self.path / INDEX
            text = index.read_bytes() if index.exists() else None
            new_text, changed = merge_index(text, entry, self.where)
            if changed:
                self._write(index, new_text.encode())
            return changed, 0

    def confirm(self, entry: dict) -> str | None:
        index = self.path / INDEX
        with self._locked():
            token = self._token(index)
            text = index.read_bytes() if index.exists() else None
        found = listed(parse_index(text, self.where), entry["name"], entry["version"], entry["digest"])
        return token if found else None

    def still_lists(self, name: str, version: str, digest: str, token: str | None) -> tuple[bool, str]:
        index = self.path / INDEX
        current = self._token(index)
        if current is None:
            return False, f"{self.where}/{INDEX} is gone"
        if token is not None and current == token:
            return True, ""
        return _lists_or_why(index.read_bytes(), self.where, name, version, digest)

    @staticmethod
    def _token(index: Path) -> str | None:
        # Replaced atomically on every write: a new inode and mtime say someone wrote it.
        try:
            st = index.stat()
        except FileNotFoundError:
            return None
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"

    def _write(self, target: Path, data: bytes):
        from tasks.atomic import write_atomically
        write_atomically(target, data, mode=0o644)  # helm, and a web server, read it

    @contextmanager
    def _locked(self):
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
