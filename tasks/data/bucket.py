"""The data bucket: `gs://BUCKET` (or the emulator named by STORAGE_EMULATOR_HOST) or `file://DIR`.

The same operations on both (list a dataset's objects with their checksums,
write one object atomically under a precondition, delete one, keep the
manifest of the datasets this project wrote); tasks/data/factory.py decides
what to write.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from tasks.atomic import is_temp_name
from tasks.data import plan as dataplan
from tasks.errors import ClassroomError

# Uploads may take long; metadata calls get the bounded patience of tasks/gcs.py.
UPLOAD_RETRY_SECONDS = 60.0
UPLOAD_READ_TIMEOUT = 300.0
UPLOAD_CHUNK_BYTES = 32 * 1024 * 1024  # a multiple of 256 KiB, as GCS wants


class DataError(ClassroomError):
    pass


def open_bucket(config):
    url = config.classroom["buckets"]["data"]
    if url.startswith("gs://"):
        return GcsDataBucket(url[len("gs://"):].rstrip("/"))
    return DirectoryDataBucket(config.path(url[len("file://"):]))


class GcsDataBucket:
    """The data bucket on GCS (or the emulator named by STORAGE_EMULATOR_HOST)."""

    # Small files are dominated by the round trip: a few uploads at once, each its own client.
    parallel = 8

    def __init__(self, name: str):
        from tasks import gcs
        self.name = name
        self.where = f"gs://{name}"
        self.service = gcs.service()
        self._local = threading.local()  # a client per thread: uploads run side by side

    # ---- bounded patience and one line per failure (tasks/gcs.py)
    @staticmethod
    def _calls() -> dict:
        from tasks import gcs
        return gcs.calls()

    def _upload_calls(self) -> dict:
        from tasks import gcs
        return gcs.calls(UPLOAD_RETRY_SECONDS, UPLOAD_READ_TIMEOUT)

    def _talking(self, doing: str, missing: str = "", retry_seconds: float | None = None):
        """GCS failures as one DataError line; `missing`: what a 404 means here."""
        from tasks import gcs

        # Objects that may be missing are asked for where that is expected (get_blob, delete):
        # a 404 here is the bucket, or a source object replaced while it was copied.
        missing = missing or (f"{self.service.description} answered 404 (not found) when asked to {doing}: "
                              f"does {self.where} exist, and did the source stay as it was (then run again)?")
        return gcs.failures_as(DataError, doing, self.where, retry_seconds, not_found=missing)

    @property
    def client(self):
        if getattr(self._local, "client", None) is None:
            from tasks import gcs
            with self._talking(f"open {self.where}"):
                self._local.client = gcs.client()
        return self._local.client

    @property
    def bucket(self):
        return self.client.bucket(self.name)

    def list_dataset(self, name: str, checksums: bool = True) -> dict[str, dataplan.Fingerprint]:
        """{relative path: fingerprint with generation} of the objects under `<name>/`."""
        prefix = dataplan.dataset_prefix(name)
        found = {}
        with self._talking(f"list {self.where}/{prefix}",
                           missing=f"bucket {self.where} does not exist: create it (gcloud storage buckets "
                                   f"create {self.where}) or fix buckets.data in config/classroom.yaml"):
            for blob in self.client.list_blobs(self.name, prefix=prefix, **self._calls(),
                                               fields="items(name,size,md5Hash,crc32c,generation),nextPageToken"):
                rel = dataplan.relative_in_dataset(name, blob.name)
                if rel is not None:
                    found[rel] = dataplan.Fingerprint(blob.size, blob.md5_hash, blob.crc32c, blob.generation)
        return found

    def put_file(self, name: str, rel: str, path: str, previous, report):
        import mimetypes
        object_name = dataplan.object_name(name, rel)
        blob = self.bucket.blob(object_name)
        blob.content_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        blob.chunk_size = UPLOAD_CHUNK_BYTES  # a large file: resumable, its progress every chunk
        with self._talking(f"upload {self.where}/{object_name}", retry_seconds=UPLOAD_RETRY_SECONDS), \
                self._raced(object_name), \
                open(path, "rb") as handle:
            # a large file goes up in resumable chunks, each read through the reporter
            blob.upload_from_file(_ReadReporter(handle, report), size=os.fstat(handle.fileno()).st_size,
                                  rewind=False, if_generation_match=previous.generation if previous else 0,
                                  **self._upload_calls())

    def copy_object(self, name: str, rel: str, source_blob, previous, report):
        """A server-side copy of exactly the listed generation (rewrite: any size, any location)."""
        object_name = dataplan.object_name(name, rel)
        source = self.client.bucket(source_blob.bucket.name).blob(source_blob.name,
                                                                   generation=source_blob.generation)
        target = self.bucket.blob(object_name)
        with self._talking(f"copy gs://{source_blob.bucket.name}/{source_blob.name} to "
                           f"{self.where}/{object_name}", retry_seconds=UPLOAD_RETRY_SECONDS), \
                self._raced(object_name):
            token = None
            while True:
                token, done, _total = target.rewrite(
                    source, token=token, if_generation_match=previous.generation if previous else 0,
                    if_source_generation_match=source_blob.generation, **self._upload_calls())
                report(done)
                if token is None:
                    break

    @contextmanager
    def _raced(self, object_name: str):
        from google.api_core import exceptions
        try:
            yield
        except exceptions.PreconditionFailed:
            raise DataError(f"{self.where}/{object_name} (or its source) changed while this run copied it "
                            "(another upload at the same time?); run again") from None

    def delete_object(self, name: str, rel: str, found) -> bool:
        """True when deleted (or already gone); False when someone rewrote it since it was listed."""
        from google.api_core import exceptions
        object_name = dataplan.object_name_unchecked(name, rel)  # listed under the prefix: exact name
        try:
            with self._talking(f"delete {self.where}/{object_name}"):
                try:
                    # exactly the listed generation (and only while it is the live one): a newer
                    # write by someone else stays
                    self.bucket.delete_blob(object_name, generation=found.generation,
                                            if_generation_match=found.generation, **self._calls())
                except exceptions.NotFound:
                    return self.bucket.get_blob(object_name, **self._calls()) is None
        except exceptions.PreconditionFailed:
            return False
        return True

    # ---- the manifest: read with its generation, written only over that generation
    def _read_manifest(self) -> tuple[list[str], int]:
        from google.api_core import exceptions
        where = f"{self.where}/{dataplan.MANIFEST}"
        with self._talking(f"read {where}"):
            for _ in range(10):
                blob = self.bucket.get_blob(dataplan.MANIFEST, **self._calls())
                if blob is None:
                    return [], 0
                if blob.size and blob.size > dataplan.MAX_MANIFEST_BYTES:
                    return dataplan.parse_manifest(b" " * blob.size, where), 0  # refused, in its words
                try:
                    return dataplan.parse_manifest(blob.download_as_bytes(**self._calls()), where), blob.generation
                except exceptions.NotFound:
                    continue  # replaced between the two requests
        raise DataError(f"{where} kept being replaced while it was read; run again")

    def recorded_datasets(self) -> list[str]:
        return self._read_manifest()[0]

    def record_datasets(self, add=(), remove=()):
        import random
        import time

        from google.api_core import exceptions
        where = f"{self.where}/{dataplan.MANIFEST}"
        for attempt in range(50):
            names, generation = self._read_manifest()
            wanted = (set(names) | set(add)) - set(remove)
            if wanted == set(names) and (generation or not wanted):
                return
            blob = self.bucket.blob(dataplan.MANIFEST)
            blob.cache_control = "no-cache"
            try:
                with self._talking(f"write {where}"):
                    blob.upload_from_string(dataplan.manifest_bytes(wanted), content_type="application/json",
                                            if_generation_match=generation, **self._calls())
                return
            except exceptions.PreconditionFailed:
                # another upload recorded its dataset first: read and merge again, jittered
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(attempt, 6))))
        raise DataError(f"{where} kept changing under this run (50 concurrent writes); run again")


class DirectoryDataBucket:
    """The data bucket as a directory (the local profile): the same layout and manifest."""

    parallel = 1  # the disk is the limit

    def __init__(self, root: Path):
        self.root = Path(root)
        self.where = f"file://{self.root}"

    def _dataset_dir(self, name: str) -> Path:
        return self.root / dataplan.dataset_prefix(name).rstrip("/")

    def _checked_parent(self, path: Path) -> Path:
        """path's directory, made when missing; refused when a part of it below the bucket's root is
        a link or not a directory (a write must not leave the bucket's directory)."""
        current = self.root
        current.mkdir(parents=True, exist_ok=True)
        for part in path.relative_to(self.root).parts[:-1]:
            current = current / part
            try:
                os.mkdir(current)
            except FileExistsError:
                if current.is_symlink() or not current.is_dir():
                    raise DataError(f"{current} is not a directory of the bucket (a link or a file); "
                                    "refusing to write through it") from None
        return current

    def list_dataset(self, name: str, checksums: bool = True) -> dict[str, dataplan.Fingerprint]:
        from tasks.data import sources as datasets
        from tasks.run import runlock
        top = self._dataset_dir(name)
        if top.is_symlink():
            raise DataError(f"{top} is a link; refusing to write through it")
        found = {}
        for directory, subdirs, files in os.walk(top):
            runlock.remove_stale_temps(directory)  # a killed run's half-written files
            for entry in files + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
                full = os.path.join(directory, entry)
                if is_temp_name(entry):
                    continue
                rel = os.path.relpath(full, top).replace(os.sep, "/")
                if os.path.islink(full) or not os.path.isfile(full):
                    found[rel] = dataplan.Fingerprint(size=None)  # never the same: replaced or pruned
                else:
                    found[rel] = datasets.file_fingerprint(full) if checksums else dataplan.Fingerprint(None)
        return found

    def _write(self, name: str, rel: str, fill):
        from tasks.atomic import write_atomically
        target = self.root / dataplan.object_name(name, rel)
        self._checked_parent(target)
        if target.is_dir() and not target.is_symlink():
            raise DataError(f"{target} is a directory where the dataset has a file")
        # 0644: readable by the containers that mount the bucket.  No directory fsync per
        # object: a rename lost in a crash only means the next run copies that file again.
        write_atomically(target, fill, mode=0o644, sync_directory=False)

    def put_file(self, name: str, rel: str, path: str, previous, report):
        import shutil

        def fill(handle):
            with open(path, "rb") as source:
                shutil.copyfileobj(_ReadReporter(source, report), handle, 1 << 20)
        self._write(name, rel, fill)

    def copy_object(self, name: str, rel: str, source_blob, previous, report):
        with _gcs_errors(f"download gs://{source_blob.bucket.name}/{source_blob.name}"):
            self._write(name, rel, lambda handle: source_blob.download_to_file(handle))

    def with_crc32c(self, name: str, rel: str, found):
        """`found` with the CRC32C of the file on disk: to compare with a source that has no MD5."""
        from tasks.data import sources as datasets
        path = self.root / dataplan.object_name_unchecked(name, rel)
        if found.size is None or path.is_symlink():
            return found
        return dataplan.Fingerprint(found.size, found.md5, datasets.file_crc32c(str(path)), found.generation)

    def delete_object(self, name: str, rel: str, found) -> bool:
        top = self._dataset_dir(name)
        path = top / rel
        try:
            if path.is_dir() and not path.is_symlink():
                return True  # a folder: it goes with its last file
            path.unlink()
        except FileNotFoundError:
            pass
        parent = path.parent  # leave no empty folders behind, up to the dataset's own
        while parent != top.parent and parent.is_relative_to(top):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    @contextmanager
    def _locked(self):
        import fcntl
        lock_dir = self.root / ".classroom"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def recorded_datasets(self) -> list[str]:
        manifest = self.root / dataplan.MANIFEST
        try:
            data = manifest.read_bytes()
        except FileNotFoundError:
            data = None
        return dataplan.parse_manifest(data, f"{self.where}/{dataplan.MANIFEST}")

    def record_datasets(self, add=(), remove=()):
        from tasks.atomic import write_atomically
        with self._locked():
            names = self.recorded_datasets()
            wanted = (set(names) | set(add)) - set(remove)
            if wanted != set(names) or not (self.root / dataplan.MANIFEST).exists():
                write_atomically(str(self.root / dataplan.MANIFEST), dataplan.manifest_bytes(wanted),
                                 point="data-manifest")


def count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _ReadReporter:
    """A file read through: `report(bytes read so far)` after every read (a retry rewinds it)."""

    def __init__(self, handle, report):
        self.handle, self.report = handle, report

    def read(self, size=-1):
        data = self.handle.read(size)
        self.report(self.handle.tell())
        return data

    def __getattr__(self, name):  # tell, seek, fileno, ... of the file itself
        return getattr(self.handle, name)


@contextmanager
def _gcs_errors(doing: str):
    """A gs:// source's failures while downloading, in one line."""
    try:
        yield
    except DataError:
        raise
    except Exception as exc:  # the client raises many types: auth, network, 404
        if isinstance(exc, OSError) and exc.filename:
            raise
        raise DataError(f"cannot {doing}: {' '.join(str(exc).split())[:200]}") from None
