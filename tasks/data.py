"""Data stage: each dataset of data.yaml copied into `buckets.data`, incrementally.

    data:upload:<name>   one per dataset: its files (a local folder, a git checkout, a gs://
                         prefix) as the objects `<name>/<relative path>` of the data bucket
    data:prune           datasets removed from data.yaml: their prefixes deleted when
                         `buckets.prune_data` is true (otherwise only named)

An object is written only when its checksum differs (tasks/dataplan.py: MD5,
or CRC32C for objects that have none); objects of a removed file are deleted
only with `buckets.prune_data: true`.  Every write is atomic per object (a GCS
upload with `if_generation_match` on the generation that was listed, or 0 for
a new object; on disk a temp file renamed): a concurrent writer is noticed,
never overwritten blindly.  The manifest object `.classroom/datasets.json`
lists the datasets this project wrote (recorded before a dataset's first
write, under a generation precondition or a lock); `data:prune` deletes only
the prefixes it lists.

Up to date without asking the data bucket: a dataset task compares its
source (a local folder's listing, then its content digest: tasks/contextstate.py;
a git remote's commit; a gs:// source's object generations), the bucket URL
and the prune flag with its last successful run; and the dataset must not
have been removed since (data:prune's last run saw it configured), or its
prefix may have been pruned.  Only when it runs does it list `<name>/` in the
bucket.  An edit made to the bucket by hand is not seen by a no-op: `doit
forget data` makes the next run compare every object again.

`buckets.data` is `gs://BUCKET` or `file://DIR` (a directory, the local
profile: the same layout, MD5s computed on disk).
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from doit.dependency import UptodateCalculator

from tasks import dataplan
from tasks.config import doit_settings
from tasks.contextstate import SideFile, context_unchanged
from tasks.inputs import value_inputs
from tasks.reporter import OUTCOME

BUCKET_KEY, PRUNE_KEY = "classroom.buckets.data", "classroom.buckets.prune_data"
PRUNE_TASK = "data:prune"
# Uploads may take long; metadata calls get the bounded patience of tasks/chart_repo.py.
UPLOAD_RETRY_SECONDS = 60.0
UPLOAD_READ_TIMEOUT = 300.0
UPLOAD_CHUNK_BYTES = 32 * 1024 * 1024  # a multiple of 256 KiB, as GCS wants


class DataError(Exception):
    pass


def upload_task_name(name: str) -> str:
    return f"data:upload:{name}"


def data_tasks(config):
    """The task dicts of the data stage (yielded by `task_data` in dodo.py)."""
    buckets = config.classroom["buckets"]
    common = {BUCKET_KEY: buckets["data"], PRUNE_KEY: buckets["prune_data"]}
    side_file = SideFile(Path(doit_settings(config)["dep_file"] + ".data.json"))
    from tasks import datasets
    for dataset in config.datasets:
        name, source = dataset["name"], dataset["source"]
        # Name and source only: a dataset's description or courses never make an upload.
        checks = [value_inputs({**common, f"datasets.{name}.source": source}), still_configured(name)]
        if datasets.kind(source) == "local":
            path = str(config.path(source))
            checks.append(dataset_files_unchanged(f"data:{name}", [(f"{name}/", path)],
                                                  functools.partial(_local_digests, path), side_file))
        else:
            checks.append(source_unchanged(source))
        yield {
            "name": f"upload:{name}",
            "doc": f"Copy dataset {name} into the data bucket (changed objects only)",
            "actions": [(upload_dataset, [config, name])],
            "uptodate": checks,
            "verbosity": 2,
        }
    yield {
        "name": "prune",
        "doc": "Delete the bucket prefixes of datasets removed from data.yaml (buckets.prune_data)",
        "actions": [(prune_datasets, [config])],
        "uptodate": [value_inputs({**common, "datasets (names)": sorted(d["name"] for d in config.datasets)})],
        "verbosity": 2,
    }


def temp_dirs(config) -> list[Path]:
    """Where a killed run may have left a half-written manifest (a `file://` bucket's
    `.classroom/`); half-written data files are found by the next listing of their folder."""
    url = config.classroom["buckets"]["data"]
    return [] if url.startswith("gs://") else [(config.path(url[len("file://"):]) / dataplan.MANIFEST).parent]


# ---------------------------------------------------------------- up-to-date checks

def _local_digests(path: str) -> dict[str, str]:
    """What an upload of a local dataset depends on: each file's MD5 (links are not uploaded)."""
    from tasks import datasets
    files, _links = datasets.local_files(Path(path))
    digests = {}
    for rel, full in files.items():
        try:
            digests[rel] = datasets.file_fingerprint(full).md5
        except OSError as exc:  # the upload then says which file, in one line
            digests[rel] = f"unreadable:{exc.errno}"
    return digests


class dataset_files_unchanged(context_unchanged):  # lower case, like doit's own uptodate helpers
    """A local dataset's files as one input: the listing digest, then the content digest."""

    def __call__(self, task, values):
        same = super().__call__(task, values)
        self.reason = self.reason.replace("build context", f"the files of dataset {self.image[5:]}")
        return same

    def __repr__(self):
        return self.reason or f"the files of dataset {self.image[5:]}"


class source_unchanged:  # lower case, like doit's own uptodate helpers
    """A git or gs:// dataset: its remote commit or its objects' generations, as last uploaded.
    A source that cannot be asked counts as changed: the upload then says what is wrong."""

    def __init__(self, source: str):
        self.source = source
        self.reason = ""

    def __call__(self, task, values):
        from tasks import datasets
        last = values.get("source")
        if not last:
            self.reason = f"{self.source} not uploaded yet"
            return False
        try:
            now = datasets.source_identity(self.source)
        except datasets.DatasetError as exc:
            self.reason = f"cannot check {self.source}: {exc}"
            return False
        self.reason = "" if now == last else f"{self.source} changed"
        return now == last

    def __repr__(self):
        return self.reason or f"the content of {self.source}"


class still_configured(UptodateCalculator):  # lower case, like doit's own uptodate helpers
    """False once data:prune has run without this dataset in the config: its prefix may have been
    pruned, so a dataset added back is compared with the bucket again."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.reason = ""

    def __call__(self, task, values):
        pruned = (self.get_val(PRUNE_TASK, "_values_:") or {}) if self.get_val else {}
        configured = pruned.get("datasets")
        if configured is not None and self.name not in configured:
            self.reason = f"dataset {self.name} was removed from data.yaml since its upload"
            return False
        self.reason = ""
        return True

    def __repr__(self):
        return self.reason or f"dataset {self.name} still in data.yaml"


# ---------------------------------------------------------------- actions

def _say(line: str):
    print(line, flush=True)


def upload_dataset(config, name, log=_say):
    """Make `<name>/` in the data bucket hold the dataset's files; return what was done."""
    from doit.exceptions import TaskFailed

    from tasks import datasets
    dataset = next(d for d in config.datasets if d["name"] == name)
    try:
        bucket = open_bucket(config)
        return _upload(config, dataset, bucket, log)
    except (DataError, datasets.DatasetError, dataplan.PlanError) as exc:
        return TaskFailed(f"{upload_task_name(name)}: {exc}")
    except OSError as exc:  # reading a source file, writing a file:// bucket
        return TaskFailed(f"{upload_task_name(name)}: {_os_error(exc)}")


def _upload(config, dataset, bucket, log) -> dict:
    import tempfile

    from tasks import datasets
    name, source = dataset["name"], dataset["source"]
    kind = datasets.kind(source)
    if kind == "gcs":
        blobs, identity = datasets.gcs_objects(source)
        _refuse_bad_names(name, source, blobs)  # the length under this dataset's own name
        wanted = {rel: dataplan.Fingerprint(size=blob.size, md5=blob.md5_hash, crc32c=blob.crc32c)
                  for rel, blob in blobs.items()}
        return _sync(config, name, bucket, wanted, identity, 0, log,
                     lambda rel, previous, report: bucket.copy_object(name, rel, blobs[rel], previous, report))
    with tempfile.TemporaryDirectory(prefix="classtools-data-") as scratch:
        if kind == "git":
            log(f"{upload_task_name(name)}: fetching {source}")
            commit = datasets.git_checkout(source, Path(scratch) / "checkout")
            files, links = datasets.checkout_files(Path(scratch) / "checkout")
            identity = "git:" + commit
        else:
            files, links = datasets.local_files(config.path(source))
            identity = None  # the task's listing/content digest says what it is
        _refuse_bad_names(name, source, files)
        wanted = {rel: datasets.file_fingerprint(full) for rel, full in files.items()}
        return _sync(config, name, bucket, wanted, identity, links, log,
                     lambda rel, previous, report: bucket.put_file(name, rel, files[rel], previous, report),
                     crc32c=lambda rel: datasets.file_crc32c(files[rel]))


def _refuse_bad_names(name: str, source: str, rels):
    """Before anything is written: every file must have a name that stays under `<name>/`."""
    problems = dataplan.name_problems(name, rels)
    if problems:
        raise DataError(f"{source} holds a file whose name cannot be an object name: "
                        f"{dataplan.first_and_count(problems)}; nothing was uploaded")


def _sync(config, name, bucket, wanted, identity, links, log, write, crc32c=None) -> dict:
    from tasks.progress import Progress
    prune = config.classroom["buckets"]["prune_data"]
    present = bucket.list_dataset(name)
    # Objects with no MD5 (composite ones) are compared by CRC32C: computed for the files
    # on disk that need it, on either side (GCS gives every object one).
    if crc32c:
        for rel in dataplan.crc32c_needed(wanted, present):
            wanted[rel] = dataplan.Fingerprint(wanted[rel].size, wanted[rel].md5, crc32c(rel))
    if hasattr(bucket, "with_crc32c"):
        for rel in dataplan.crc32c_needed(present, wanted):
            present[rel] = bucket.with_crc32c(name, rel, present[rel])
    plan = dataplan.plan(wanted, present, prune)
    bucket.record_datasets(add=[name])  # before the first write: the prefix is known to be ours
    # One part for the whole upload (Progress sums its parts on every update): bytes are
    # reported as each file is read or each copy advances, a few lines in all.
    progress = Progress(f"{upload_task_name(name)}: upload to {bucket.where}/{name}/", log)
    _write_all(plan.upload, wanted, present, write, progress, bucket.parallel)
    if plan.upload:
        progress.finish()
    lost = [rel for rel in plan.delete if not bucket.delete_object(name, rel, present[rel])]
    said = plan.summary()
    if lost:
        said += f"; {len(lost)} kept: rewritten by someone else since they were listed ({lost[0]}...)"
    if links:
        said += f"; {links} link{'s' if links != 1 else ''} left out (a bucket has no links)"
    result = {"bucket": bucket.where, "objects": len(wanted), OUTCOME: f"{said} in {bucket.where}/{name}/"}
    if identity:
        result["source"] = identity
    return result


def _write_all(upload, wanted, present, write, progress, parallel: int):
    """Write every file of `upload`, `parallel` at a time; the first failure stops the rest
    (objects already written stay: each is whole, and the next run compares them again)."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
    lock = threading.Lock()
    total = sum(wanted[rel].size or 0 for rel in upload)
    finished = [0]      # bytes of the files written
    in_flight = {}      # rel -> bytes read so far

    def report(rel, done):
        with lock:
            in_flight[rel] = done
            progress.update("all", finished[0] + sum(in_flight.values()), total)

    def one(rel):
        write(rel, present.get(rel), functools.partial(report, rel))
        with lock:
            in_flight.pop(rel, None)
            finished[0] += wanted[rel].size or 0
            progress.update("all", finished[0] + sum(in_flight.values()), total)

    if parallel <= 1:
        for rel in upload:
            one(rel)
        return
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="data-upload") as pool:
        futures = [pool.submit(one, rel) for rel in upload]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and f.exception()), None)
        if failed:
            for future in futures:
                future.cancel()
            raise failed.exception()


def prune_datasets(config, log=_say):
    """Delete the prefixes of datasets this project uploaded that data.yaml no longer has
    (only with buckets.prune_data: true; otherwise name them)."""
    from doit.exceptions import TaskFailed
    configured = sorted(d["name"] for d in config.datasets)
    prune = config.classroom["buckets"]["prune_data"]
    try:
        bucket = open_bucket(config)
        removed = dataplan.removed_datasets(bucket.recorded_datasets(), configured)
        if removed and not prune:
            said = (f"kept {len(removed)} removed dataset{'s' if len(removed) > 1 else ''} "
                    f"({', '.join(removed)}) in {bucket.where}: buckets.prune_data is false")
        elif removed:
            deleted = 0
            for name in removed:
                present = bucket.list_dataset(name, checksums=False)
                deleted += sum(bucket.delete_object(name, rel, found) for rel, found in sorted(present.items()))
                log(f"{PRUNE_TASK}: deleted {bucket.where}/{name}/ ({_count(len(present), 'object')})")
            bucket.record_datasets(remove=removed)  # after the objects: a killed run prunes again
            said = f"pruned {', '.join(removed)}: {_count(deleted, 'object')} deleted from {bucket.where}"
        else:
            said = f"no removed dataset in {bucket.where}"
    except (DataError, dataplan.PlanError) as exc:
        return TaskFailed(f"{PRUNE_TASK}: {exc}")
    except OSError as exc:
        return TaskFailed(f"{PRUNE_TASK}: {_os_error(exc)}")
    return {"datasets": configured, OUTCOME: said}


# ---------------------------------------------------------------- the data bucket

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
        from tasks import chart_repo
        self.name = name
        self.where = f"gs://{name}"
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        endpoint = chart_repo._endpoint_url(emulator) if emulator else "https://storage.googleapis.com"
        self.service = (f"the GCS emulator at {endpoint} (STORAGE_EMULATOR_HOST)" if emulator
                        else f"Google Cloud Storage at {endpoint}")
        self.anonymous = bool(emulator)
        self._local = threading.local()  # a client per thread: uploads run side by side

    # ---- bounded patience and one line per failure (as tasks/chart_repo.py)
    @staticmethod
    def _calls(seconds: float | None = None, read_timeout: float | None = None) -> dict:
        from google.cloud.storage.retry import DEFAULT_RETRY

        from tasks import chart_repo
        seconds = seconds or chart_repo.RETRY_SECONDS
        retry = DEFAULT_RETRY.with_timeout(seconds) if hasattr(DEFAULT_RETRY, "with_timeout") \
            else DEFAULT_RETRY.with_deadline(seconds)
        return {"retry": retry, "timeout": (chart_repo.CONNECT_TIMEOUT, read_timeout or chart_repo.READ_TIMEOUT)}

    def _upload_calls(self) -> dict:
        return self._calls(UPLOAD_RETRY_SECONDS, UPLOAD_READ_TIMEOUT)

    @contextmanager
    def _talking(self, doing: str, missing: str = ""):
        """GCS failures as one DataError line; `missing`: what a 404 means here."""
        import requests
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        from tasks import chart_repo
        try:
            yield
        except exceptions.PreconditionFailed:
            raise  # a concurrent writer: the caller reads again, or says so
        except exceptions.RetryError as exc:
            why = chart_repo._why_unreachable(exc.cause or exc)
            raise DataError(f"cannot reach {self.service} to {doing} ({why}; gave up after retrying): "
                            "is it up and reachable from here?") from None
        except (requests.exceptions.RequestException, auth_exceptions.TransportError) as exc:
            raise DataError(f"cannot reach {self.service} to {doing} ({chart_repo._why_unreachable(exc)}): "
                            "is it up and reachable from here?") from None
        except auth_exceptions.DefaultCredentialsError:
            raise DataError(f"no Google Cloud credentials to write {self.where}: run "
                            "`gcloud auth application-default login` (CI: workload identity)") from None
        except exceptions.Forbidden as exc:
            raise DataError(f"not allowed to {doing}: {' '.join(str(exc.message).split())[:200]}") from None
        except exceptions.NotFound:
            # Objects that may be missing are asked for where that is expected (get_blob, delete):
            # a 404 here is the bucket, or a source object replaced while it was copied.
            raise DataError(missing or f"{self.service} answered 404 (not found) when asked to {doing}: "
                            f"does {self.where} exist, and did the source stay as it was (then run "
                            "again)?") from None
        except exceptions.GoogleAPICallError as exc:
            raise DataError(f"{self.service} answered {exc.code} ({' '.join(str(exc.message).split())[:200]}) "
                            f"when asked to {doing}") from None

    @property
    def client(self):
        if getattr(self._local, "client", None) is None:
            from google.cloud import storage
            with self._talking(f"open {self.where}"):
                self._local.client = storage.Client.create_anonymous_client() if self.anonymous else storage.Client()
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
        with self._talking(f"upload {self.where}/{object_name}"), self._raced(object_name), \
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
                           f"{self.where}/{object_name}"), self._raced(object_name):
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
        from tasks import datasets, runlock
        top = self._dataset_dir(name)
        if top.is_symlink():
            raise DataError(f"{top} is a link; refusing to write through it")
        found = {}
        for directory, subdirs, files in os.walk(top):
            runlock.remove_stale_temps(directory)  # a killed run's half-written files
            for entry in files + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
                full = os.path.join(directory, entry)
                if _is_temp(entry):
                    continue
                rel = os.path.relpath(full, top).replace(os.sep, "/")
                if os.path.islink(full) or not os.path.isfile(full):
                    found[rel] = dataplan.Fingerprint(size=None)  # never the same: replaced or pruned
                else:
                    found[rel] = datasets.file_fingerprint(full) if checksums else dataplan.Fingerprint(None)
        return found

    def _write(self, name: str, rel: str, fill):
        import hashlib
        import stat
        target = self.root / dataplan.object_name(name, rel)
        directory = self._checked_parent(target)
        # `.NAME.PID.tmp`, as every atomic write of this project: a killed run's is found by runlock
        temp = directory / f".upload-{hashlib.sha256(target.name.encode('utf-8')).hexdigest()[:16]}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, stat.S_IMODE(0o644))  # readable by the containers that mount the bucket
            if target.is_dir() and not target.is_symlink():
                raise DataError(f"{target} is a directory where the dataset has a file")
            os.replace(temp, target)
        finally:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass

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
        from tasks import datasets
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
        from tasks.statefile import write_atomically
        with self._locked():
            names = self.recorded_datasets()
            wanted = (set(names) | set(add)) - set(remove)
            if wanted != set(names) or not (self.root / dataplan.MANIFEST).exists():
                write_atomically(str(self.root / dataplan.MANIFEST), dataplan.manifest_bytes(wanted),
                                 point="data-manifest")


def _count(number: int, noun: str) -> str:
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


def _os_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)


def _is_temp(name: str) -> bool:
    parts = name.rsplit(".", 2)
    return name.startswith(".") and len(parts) == 3 and parts[2] == "tmp" and parts[1].isdigit()


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
