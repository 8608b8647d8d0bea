"""A helm chart repository in a bucket: gs:// through google-cloud-storage, or a directory.

Publishing checks that the index can take the new entry (parsable, no other
archive under the same version), then takes two steps that are each safe to
repeat: upload the .tgz unless
the very same bytes are there (a different archive under the same version is
refused: versions are immutable), then merge the index: read it, add the
entry, write it back only if nobody wrote in between (`if_generation_match`
on GCS, a lock and an atomic rename on disk), retry on conflict.  An index
that cannot be parsed is never overwritten: nothing else may be lost.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import yaml

INDEX = "index.yaml"
RETRIES = 8


class ChartRepoError(Exception):
    pass


def merge_index(text: str | None, entry: dict, where: str) -> tuple[str | None, bool]:
    """(new index text, changed?) — None text means: the entry is already there."""
    if text:
        try:
            index = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ChartRepoError(f"{where}/{INDEX} is corrupt ({str(exc).splitlines()[0]}); "
                                 "it was left as it is: repair or remove it") from None
        if not isinstance(index, dict) or not isinstance(index.get("entries", {}), dict):
            raise ChartRepoError(f"{where}/{INDEX} is not a helm repository index; it was left as it is")
    else:
        index = {"apiVersion": "v1", "entries": {}}
    entries = index.setdefault("entries", {}) or {}
    index["entries"] = entries
    versions = entries.setdefault(entry["name"], [])
    for existing in versions:
        if existing.get("version") == entry["version"]:
            if existing.get("digest") == entry["digest"]:
                return None, False
            raise ChartRepoError(f"{where}/{INDEX} already lists {entry['name']} {entry['version']} "
                                 "with another digest: versions are immutable")
    versions.append(entry)
    versions.sort(key=lambda e: e.get("created", ""), reverse=True)
    index["generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return yaml.safe_dump(index, sort_keys=False), True


def open_repository(bucket_url: str, project_dir: Path):
    if bucket_url.startswith("gs://"):
        return GcsRepository(bucket_url[len("gs://"):].rstrip("/"))
    path = Path(bucket_url[len("file://"):])
    return DirectoryRepository(path if path.is_absolute() else project_dir / path)


class GcsRepository:
    def __init__(self, bucket: str):
        self.where = f"gs://{bucket}"
        self.name = bucket
        self._bucket = None

    def public_url(self) -> str:
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        return f"{host.rstrip('/')}/{self.name}" if host else f"https://storage.googleapis.com/{self.name}"

    @property
    def bucket(self):
        if self._bucket is None:
            from google.api_core import exceptions
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import storage
            try:
                client = (storage.Client.create_anonymous_client() if os.environ.get("STORAGE_EMULATOR_HOST")
                          else storage.Client())
                bucket = client.bucket(self.name)
                if not bucket.exists():
                    raise ChartRepoError(f"bucket {self.where} does not exist: create it "
                                         f"(gcloud storage buckets create {self.where}) or fix buckets.charts")
            except DefaultCredentialsError:
                raise ChartRepoError(f"no Google Cloud credentials to write {self.where}: run "
                                     "`gcloud auth application-default login` (CI: workload identity)") from None
            except exceptions.Forbidden as exc:
                raise ChartRepoError(f"not allowed to use {self.where}: {exc.message}") from None
            self._bucket = bucket
        return self._bucket

    def check_index(self, entry: dict):
        """Refuse before uploading anything if the index could not take the entry."""
        blob = self.bucket.get_blob(INDEX)
        merge_index(blob.download_as_text() if blob is not None else None, entry, self.where)

    def upload_chart(self, filename: str, data: bytes) -> bool:
        """True if uploaded, False if the same bytes were already there."""
        from google.api_core import exceptions
        blob = self.bucket.get_blob(filename)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        if blob is not None:
            if blob.md5_hash == md5:
                return False
            raise ChartRepoError(f"{self.where}/{filename} exists with other content: "
                                 "versions are immutable, refusing to overwrite")
        try:
            self.bucket.blob(filename).upload_from_string(
                data, content_type="application/gzip", if_generation_match=0)
        except exceptions.PreconditionFailed:
            return self.upload_chart(filename, data)  # someone raced us: compare again
        return True

    def add_to_index(self, entry: dict) -> bool:
        from google.api_core import exceptions
        for attempt in range(RETRIES):
            blob = self.bucket.get_blob(INDEX)
            text = blob.download_as_text() if blob is not None else None
            generation = blob.generation if blob is not None else 0
            new_text, changed = merge_index(text, entry, self.where)
            if not changed:
                return False
            target = self.bucket.blob(INDEX)
            target.cache_control = "no-cache"  # helm must see a new version at once
            try:
                target.upload_from_string(new_text, content_type="text/yaml", if_generation_match=generation)
                return True
            except exceptions.PreconditionFailed:
                time.sleep(0.2 * (attempt + 1))
        raise ChartRepoError(f"{self.where}/{INDEX} kept changing under us; try again")


class DirectoryRepository:
    """A bucket on disk, for the local profile (any web server can serve it)."""

    def __init__(self, path: Path):
        self.path = path
        self.where = f"file://{path}"

    def public_url(self) -> str:
        return f"file://{self.path}"

    def check_index(self, entry: dict):
        index = self.path / INDEX
        merge_index(index.read_text(encoding="utf-8") if index.exists() else None, entry, self.where)

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

    def add_to_index(self, entry: dict) -> bool:
        with self._locked():
            index = self.path / INDEX
            text = index.read_text(encoding="utf-8") if index.exists() else None
            new_text, changed = merge_index(text, entry, self.where)
            if changed:
                self._write(index, new_text.encode())
            return changed

    def _write(self, target: Path, data: bytes):
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)

    @contextmanager
    def _locked(self):
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
