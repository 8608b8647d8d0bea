"""Data stage: each dataset of data.yaml copied into `buckets.data`, incrementally.

    data:upload:<name>   one per dataset: its files (a local folder, a git checkout, a gs://
                         prefix) as the objects `<name>/<relative path>` of the data bucket
    data:prune           datasets removed from data.yaml: their prefixes deleted when
                         `buckets.prune_data` is true (otherwise only named)

An object is written only when its checksum differs (tasks/data/plan.py: MD5,
or CRC32C for objects that have none); objects of a removed file are deleted
only with `buckets.prune_data: true`.  Every write is atomic per object (a GCS
upload with `if_generation_match` on the generation that was listed, or 0 for
a new object; on disk a temp file renamed): a concurrent writer is noticed,
never overwritten blindly.  The manifest object `.classroom/datasets.json`
lists the datasets this project wrote (recorded before a dataset's first
write, under a generation precondition or a lock); `data:prune` deletes only
the prefixes it lists.

Up to date without asking the data bucket: a dataset task compares its
source (a local folder's listing, then its content digest: tasks/filetree/state.py;
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
import threading
from pathlib import Path

from doit.dependency import UptodateCalculator

from tasks.checks import value_inputs
from tasks.config.loader import doit_settings
from tasks.config.model import source_kind
from tasks.data import plan as dataplan
from tasks.data.bucket import DataError, count, open_bucket
from tasks.errors import action
from tasks.filetree.state import SideFile, context_unchanged
from tasks.run.reporter import OUTCOME

BUCKET_KEY, PRUNE_KEY = "classroom.buckets.data", "classroom.buckets.prune_data"
PRUNE_TASK = "data:prune"


def upload_task_name(name: str) -> str:
    return f"data:upload:{name}"


def data_tasks(config):
    """The task dicts of the data stage (yielded by `task_data` in dodo.py)."""
    buckets = config.classroom["buckets"]
    common = {BUCKET_KEY: buckets["data"], PRUNE_KEY: buckets["prune_data"]}
    side_file = SideFile(Path(doit_settings(config)["dep_file"] + ".data.json"))
    for dataset in config.datasets:
        name, source = dataset["name"], dataset["source"]
        # Name and source only: a dataset's description or courses never make an upload.
        checks = [value_inputs({**common, f"datasets.{name}.source": source}), still_configured(name)]
        if source_kind(source) == "local":
            path = str(config.path(source))
            checks.append(dataset_files_unchanged(f"data:{name}", [(f"{name}/", path)],
                                                  functools.partial(_local_digests, path), side_file))
        else:
            checks.append(source_unchanged(source))
        yield {
            "name": f"upload:{name}",
            "doc": f"Copy dataset {name} into the data bucket (changed objects only)",
            "actions": [action(upload_dataset, config, name)],
            "uptodate": checks,
            "verbosity": 2,
        }
    yield {
        "name": "prune",
        "doc": "Delete the bucket prefixes of datasets removed from data.yaml (buckets.prune_data)",
        "actions": [action(prune_datasets, config)],
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
    from tasks.data import sources as datasets
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
        from tasks.data import sources as datasets
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
    dataset = next(d for d in config.datasets if d["name"] == name)
    return _upload(config, dataset, open_bucket(config), log)


def _upload(config, dataset, bucket, log) -> dict:
    import tempfile

    from tasks.data import sources as datasets
    name, source = dataset["name"], dataset["source"]
    kind = source_kind(source)
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
    from tasks.run.progress import Progress
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
    configured = sorted(d["name"] for d in config.datasets)
    prune = config.classroom["buckets"]["prune_data"]
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
            log(f"{PRUNE_TASK}: deleted {bucket.where}/{name}/ ({count(len(present), 'object')})")
        bucket.record_datasets(remove=removed)  # after the objects: a killed run prunes again
        said = f"pruned {', '.join(removed)}: {count(deleted, 'object')} deleted from {bucket.where}"
    else:
        said = f"no removed dataset in {bucket.where}"
    return {"datasets": configured, OUTCOME: said}
