"""`data:upload` against the dev environment's GCS emulator (fake-gcs-server, which honours
generation preconditions), through the real doit: the first upload, a no-op that asks no
bucket, one changed file, removed files and datasets (pruned or kept), datasets from git and
from another bucket, the bytes read back, a `file://` bucket, and the failures said in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid

import pytest

from tasks.data import plan as dataplan

pytestmark = pytest.mark.integration


def _ran(result) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)$", result.stdout, re.M)}


def _up_to_date(result) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^-- (\S+)$", result.stdout, re.M)}


def _client():
    from google.cloud import storage
    client = storage.Client.create_anonymous_client()
    client.project = "classroom-test"
    return client


def _objects(bucket: str) -> dict[str, int]:
    """Every object of the bucket with its generation."""
    return {blob.name: blob.generation for blob in _client().list_blobs(bucket)}


def _read(bucket: str, name: str) -> bytes:
    return _client().bucket(bucket).blob(name).download_as_bytes()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def _git(*args, cwd):
    subprocess.run(["git", "-c", "safe.directory=*", "-c", "user.name=Prof", "-c", "user.email=prof@example.edu",
                    *args], cwd=cwd, check=True, capture_output=True)


def configure(project, data_url: str, datasets: dict[str, str], prune: bool = False):
    """classroom.yaml with buckets.data and prune_data; data.yaml with these datasets (name: source)."""
    text = (project.config / "classroom.yaml").read_text()
    text = re.sub(r"(?m)^(\s*data:) \S+", rf"\g<1> {data_url}", text, count=1)
    text = re.sub(r"(?m)^(\s*prune_data:) \S+", rf"\g<1> {'true' if prune else 'false'}", text, count=1)
    assert f"data: {data_url}" in text and "prune_data:" in text, "classroom.yaml lost buckets.data/prune_data"
    project.write("classroom.yaml", text)
    lines = ["datasets:"] + [f"  - name: {name}\n    source: {source}" for name, source in datasets.items()]
    project.write("data.yaml", "\n".join(lines) + "\n" if datasets else "datasets: []\n")


FILES = {"flights.csv": b"origin,dest\nBOS,SFO\n" * 5000, "nested/airports.csv": b"code\nBOS\nSFO\n",
         "nested/deeper/readme.txt": "un fichier accentué\n".encode(), "empty.txt": b""}


def _dataset(root, files=FILES):
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def data_bucket(gcs_emulator):
    name = f"data-{uuid.uuid4().hex[:12]}"
    _client().create_bucket(name)
    return name


@pytest.fixture
def uploaded(project, data_bucket):
    """A project whose dataset `flights` (a local folder) was uploaded once to a gs:// bucket."""
    _dataset(project.root / "flights")
    configure(project, f"gs://{data_bucket}", {"flights": "flights"})
    first = project.doit("data", check=True)
    assert _ran(first) == {"data:upload:flights", "data:prune"}
    project.bucket = data_bucket
    return project


# ---------------------------------------------------------------- a local folder

def test_first_upload_copies_every_file_byte_for_byte_and_records_the_dataset(uploaded):
    objects = _objects(uploaded.bucket)
    assert set(objects) == {f"flights/{rel}" for rel in FILES} | {dataplan.MANIFEST}
    for rel, data in FILES.items():
        assert _read(uploaded.bucket, f"flights/{rel}") == data
    assert dataplan.parse_manifest(_read(uploaded.bucket, dataplan.MANIFEST), "m") == ["flights"]


def test_a_no_op_asks_no_bucket(uploaded):
    # Nothing listens at this address: any request to the bucket would fail the run.
    down = f"http://127.0.0.1:{_closed_port()}"
    result = uploaded.doit("data", env=uploaded.env(STORAGE_EMULATOR_HOST=down))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ran(result) == set() and _up_to_date(result) == {"data:upload:flights", "data:prune"}
    # a touch changes the listing, not the content: still nothing to ask
    os.utime(uploaded.root / "flights" / "flights.csv")
    result = uploaded.doit("data", env=uploaded.env(STORAGE_EMULATOR_HOST=down))
    assert result.returncode == 0 and _ran(result) == set(), result.stdout + result.stderr


def test_one_changed_file_uploads_exactly_one_object(uploaded):
    before = _objects(uploaded.bucket)
    (uploaded.root / "flights" / "nested" / "airports.csv").write_bytes(b"code\nBOS\nSFO\nLAX\n")
    result = uploaded.doit("data", check=True)
    assert _ran(result) == {"data:upload:flights"}
    assert "data:upload:flights: 1 uploaded, 0 deleted, 3 unchanged" in result.stdout
    after = _objects(uploaded.bucket)
    assert {name for name in after if after[name] != before.get(name)} == {"flights/nested/airports.csv"}
    assert _read(uploaded.bucket, "flights/nested/airports.csv") == b"code\nBOS\nSFO\nLAX\n"


def test_a_large_upload_reports_its_progress_in_a_few_lines(project, data_bucket):
    big = {f"part-{i}.bin": os.urandom(3 * 1024 * 1024 + i) for i in range(6)}
    big["huge.bin"] = os.urandom(70 * 1024 * 1024)  # resumable: more than one chunk
    _dataset(project.root / "big", big)
    configure(project, f"gs://{data_bucket}", {"big": "big"})
    result = project.doit("data:upload:big", check=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("data:upload:big: upload to ")]
    total = sum(len(data) for data in big.values())
    # a few lines (each quarter, or every 10 s), not one per file or chunk; the last one the total
    assert 2 <= len(lines) <= 8, lines
    assert lines[-1].startswith(f"data:upload:big: upload to gs://{data_bucket}/big/: done, "
                                f"{total / 1024 ** 2:.1f} MB in ")
    shares = [int(m.group(1)) for line in lines for m in [re.search(r"\((\d+)%\)$", line)] if m]
    assert any(0 < share < 100 for share in shares), f"no progress before the end: {lines}"
    assert _read(data_bucket, "big/huge.bin") == big["huge.bin"]


def test_after_a_lost_state_one_listing_finds_everything_there(uploaded):
    before = _objects(uploaded.bucket)
    uploaded.dep_file.unlink()
    result = uploaded.doit("data", check=True)
    assert "data:upload:flights: 0 uploaded, 0 deleted, 4 unchanged" in result.stdout
    assert _objects(uploaded.bucket) == before


def test_a_removed_file_is_kept_unless_the_bucket_is_ours_to_prune(uploaded):
    (uploaded.root / "flights" / "empty.txt").unlink()
    result = uploaded.doit("data", check=True)
    assert "0 uploaded, 0 deleted, 3 unchanged, 1 kept that the source no longer has" in result.stdout
    assert "flights/empty.txt" in _objects(uploaded.bucket)

    configure(uploaded, f"gs://{uploaded.bucket}", {"flights": "flights"}, prune=True)
    result = uploaded.doit("data", check=True)
    assert "data:upload:flights: 0 uploaded, 1 deleted, 3 unchanged" in result.stdout
    objects = _objects(uploaded.bucket)
    assert "flights/empty.txt" not in objects and "flights/flights.csv" in objects


def test_a_removed_dataset_is_pruned_and_nobody_elses_prefix_is_touched(uploaded):
    bucket = _client().bucket(uploaded.bucket)
    bucket.blob("theirs/keep.csv").upload_from_string(b"somebody else's data")   # not in our manifest
    bucket.blob("flights-old/keep.csv").upload_from_string(b"a prefix that shares the text")
    _dataset(uploaded.root / "weather", {"temps.csv": b"day,temp\n1,20\n"})
    configure(uploaded, f"gs://{uploaded.bucket}", {"flights": "flights", "weather": "weather"})
    uploaded.doit("data", check=True)
    assert dataplan.parse_manifest(_read(uploaded.bucket, dataplan.MANIFEST), "m") == ["flights", "weather"]

    configure(uploaded, f"gs://{uploaded.bucket}", {"weather": "weather"})  # prune_data: false
    result = uploaded.doit("data", check=True)
    assert "data:prune: kept 1 removed dataset (flights)" in result.stdout
    assert "flights/flights.csv" in _objects(uploaded.bucket)

    configure(uploaded, f"gs://{uploaded.bucket}", {"weather": "weather"}, prune=True)
    result = uploaded.doit("data", check=True)
    assert "data:prune: pruned flights: 4 objects deleted" in result.stdout
    left = _objects(uploaded.bucket)
    assert not [name for name in left if name.startswith("flights/")]
    assert {"theirs/keep.csv", "flights-old/keep.csv", "weather/temps.csv"} <= set(left)
    assert dataplan.parse_manifest(_read(uploaded.bucket, dataplan.MANIFEST), "m") == ["weather"]

    # added back with the very same files: its state says "uploaded", the bucket no longer has it
    configure(uploaded, f"gs://{uploaded.bucket}", {"weather": "weather", "flights": "flights"}, prune=True)
    result = uploaded.doit("data", check=True)
    assert "data:upload:flights: 4 uploaded" in result.stdout
    assert _read(uploaded.bucket, "flights/flights.csv") == FILES["flights.csv"]


def test_a_description_or_courses_edit_uploads_nothing(uploaded):
    data = uploaded.config / "data.yaml"
    data.write_text(data.read_text() + "    description: Flights of 2024\n")
    assert _ran(uploaded.doit("data", check=True)) == set()


# ---------------------------------------------------------------- git and gs:// sources

def test_a_dataset_from_git_is_uploaded_and_follows_the_remote_commit(project, data_bucket, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    _dataset(work, {"a.csv": b"1\n", "dir/b.csv": b"2\n"})
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "data", cwd=work)
    remote = tmp_path / "data.git"
    _git("clone", "-q", "--bare", str(work), str(remote), cwd=tmp_path)
    configure(project, f"gs://{data_bucket}", {"gitdata": f"file://{remote}"})

    result = project.doit("data", check=True)
    assert "data:upload:gitdata: 2 uploaded, 0 deleted, 0 unchanged" in result.stdout
    assert _read(data_bucket, "gitdata/a.csv") == b"1\n" and _read(data_bucket, "gitdata/dir/b.csv") == b"2\n"
    assert not [name for name in _objects(data_bucket) if "/.git/" in name]
    assert _ran(project.doit("data", check=True)) == set(), "the same remote commit: nothing to do"

    (work / "a.csv").write_bytes(b"1\nchanged\n")
    _git("commit", "-qam", "more", cwd=work)
    _git("push", "-q", str(remote), "main", cwd=work)
    before = _objects(data_bucket)
    result = project.doit("data", check=True)
    assert "data:upload:gitdata: 1 uploaded, 0 deleted, 1 unchanged" in result.stdout
    after = _objects(data_bucket)
    assert {name for name in after if after[name] != before.get(name)} == {"gitdata/a.csv"}


def test_a_dataset_from_another_bucket_is_copied_by_generation(project, data_bucket):
    source = f"src-{uuid.uuid4().hex[:12]}"
    src = _client().create_bucket(source)
    for name, data in {"flights/2024.csv": os.urandom(300_000), "flights/sub/2023.csv": b"x\n",
                       "flights-old/not-this.csv": b"no\n"}.items():
        src.blob(name).upload_from_string(data)
    configure(project, f"gs://{data_bucket}", {"copied": f"gs://{source}/flights"})
    result = project.doit("data", check=True)
    assert "data:upload:copied: 2 uploaded" in result.stdout
    assert set(_objects(data_bucket)) == {"copied/2024.csv", "copied/sub/2023.csv", dataplan.MANIFEST}
    assert _read(data_bucket, "copied/2024.csv") == src.blob("flights/2024.csv").download_as_bytes()
    assert _ran(project.doit("data", check=True)) == set(), "the same generations: nothing to do"

    src.blob("flights/sub/2023.csv").upload_from_string(b"y\n")  # a new generation
    result = project.doit("data", check=True)
    assert "data:upload:copied: 1 uploaded, 0 deleted, 1 unchanged" in result.stdout
    assert _read(data_bucket, "copied/sub/2023.csv") == b"y\n"


def test_a_hostile_object_name_in_a_source_bucket_writes_nothing(project, data_bucket, tmp_path):
    source = f"src-{uuid.uuid4().hex[:12]}"
    src = _client().create_bucket(source)
    src.blob("flights/ok.csv").upload_from_string(b"ok\n")
    # fake-gcs-server cleans '..' out of the names it stores (tests/unit/test_dataplan.py refuses
    # those); a line break it keeps, and a name with one must not become a file or an object either
    src.blob("flights/evil\nname.csv").upload_from_string(b"out\n")
    outside = tmp_path / "disk-bucket"
    for url in (f"gs://{data_bucket}", f"file://{outside / 'data'}"):
        configure(project, url, {"copied": f"gs://{source}/flights"})
        result = project.doit("data:upload:copied")
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "Traceback" not in output
        assert (f"data:upload:copied: gs://{source}/flights holds an object whose name cannot be a file of "
                "the dataset: 'evil\\nname.csv': the character U+000A") in result.stdout, output
    assert _objects(data_bucket) == {}
    assert not outside.exists() or not [p for p in outside.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- a bucket on disk

def test_a_file_bucket_gets_the_same_layout_written_atomically(project, tmp_path):
    _dataset(project.root / "flights")
    root = tmp_path / "disk" / "data"
    configure(project, f"file://{root}", {"flights": "flights"}, prune=True)
    result = project.doit("data", check=True)
    assert "data:upload:flights: 4 uploaded" in result.stdout
    for rel, data in FILES.items():
        assert (root / "flights" / rel).read_bytes() == data
        assert (root / "flights" / rel).stat().st_mode & 0o777 == 0o644
    manifest = json.loads((root / dataplan.MANIFEST).read_text())
    assert manifest["datasets"] == ["flights"]

    (project.root / "flights" / "flights.csv").write_bytes(b"changed\n")
    (project.root / "flights" / "nested" / "deeper" / "readme.txt").unlink()
    before = (root / "flights" / "nested" / "airports.csv").stat().st_ino
    stale = root / "flights" / "nested" / ".upload-0123456789abcdef.999999999.tmp"  # a killed run's
    stale.write_bytes(b"half")
    result = project.doit("data", check=True)
    assert "data:upload:flights: 1 uploaded, 1 deleted, 2 unchanged" in result.stdout
    assert not stale.exists()
    assert (root / "flights" / "flights.csv").read_bytes() == b"changed\n"
    assert not (root / "flights" / "nested" / "deeper").exists(), "no empty folder left behind"
    assert (root / "flights" / "nested" / "airports.csv").stat().st_ino == before, "unchanged: not rewritten"
    assert not [p for p in root.rglob("*.tmp")]

    # a link planted in the bucket's directory is never written through
    shutil.rmtree(root / "flights" / "nested")
    (root / "flights" / "nested").symlink_to(tmp_path)
    project.doit("forget", "data:upload:flights", check=True)
    result = project.doit("data:upload:flights")
    assert result.returncode != 0 and "refusing to write through it" in result.stdout
    assert not (tmp_path / "airports.csv").exists()


def test_a_bucket_dataset_reaches_a_file_bucket_byte_for_byte(project, gcs_emulator, tmp_path):
    source = f"src-{uuid.uuid4().hex[:12]}"
    src = _client().create_bucket(source)
    objects = {"2024.csv": os.urandom(200_000), "sub/2023.csv": b"x\n"}
    for rel, data in objects.items():
        src.blob(f"flights/{rel}").upload_from_string(data)
    root = tmp_path / "disk" / "data"
    configure(project, f"file://{root}", {"copied": f"gs://{source}/flights"})
    result = project.doit("data", check=True)
    assert "data:upload:copied: 2 uploaded, 0 deleted, 0 unchanged" in result.stdout
    assert {rel: (root / "copied" / rel).read_bytes() for rel in objects} == objects
    project.doit("forget", "data:upload:copied", check=True)
    result = project.doit("data", check=True)
    assert "data:upload:copied: 0 uploaded, 0 deleted, 2 unchanged" in result.stdout


# ---------------------------------------------------------------- failures in one line

def test_a_missing_bucket_is_one_line_and_nothing_is_recorded(project, gcs_emulator):
    _dataset(project.root / "flights")
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    configure(project, f"gs://{missing}", {"flights": "flights"})
    result = project.doit("data:upload:flights")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    lines = [line for line in result.stdout.splitlines() if line.startswith("data:upload:flights: ")]
    assert lines == [f"data:upload:flights: bucket gs://{missing} does not exist: create it (gcloud storage "
                     f"buckets create gs://{missing}) or fix buckets.data in config/classroom.yaml"], output
    assert _ran(project.doit("data:upload:flights")) == {"data:upload:flights"}, "not recorded as done"


def test_an_unreachable_endpoint_is_one_line_naming_it(project, data_bucket):
    _dataset(project.root / "flights")
    configure(project, f"gs://{data_bucket}", {"flights": "flights"})
    down = f"http://127.0.0.1:{_closed_port()}"
    result = project.doit("data:upload:flights", env=project.env(STORAGE_EMULATOR_HOST=down))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert (f"data:upload:flights: cannot reach the GCS emulator at {down} (STORAGE_EMULATOR_HOST) to list "
            f"gs://{data_bucket}/flights/ (connection refused") in result.stdout, output


def test_no_credentials_is_a_clear_failure(project, data_bucket, tmp_path):
    _dataset(project.root / "flights")
    configure(project, f"gs://{data_bucket}", {"flights": "flights"})
    env = {k: v for k, v in project.env().items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(HOME=str(tmp_path), NO_GCE_CHECK="True", CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
    result = project.doit("data:upload:flights", env=env)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert (f"data:upload:flights: no Google Cloud credentials to write gs://{data_bucket}: run "
            "`gcloud auth application-default login`") in result.stdout


def test_a_foreign_manifest_is_never_trusted_for_pruning(uploaded):
    bucket = _client().bucket(uploaded.bucket)
    bucket.blob(dataplan.MANIFEST).upload_from_string(b'{"format": "something else", "datasets": [""]}')
    configure(uploaded, f"gs://{uploaded.bucket}", {}, prune=True)
    result = uploaded.doit("data")
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert f"data:prune: gs://{uploaded.bucket}/{dataplan.MANIFEST} is not the dataset manifest" in result.stdout
    assert "flights/flights.csv" in _objects(uploaded.bucket)


def test_datasets_recorded_at_once_by_several_uploads_are_all_kept(data_bucket):
    # `doit -n 2`, or two projects sharing a bucket: the manifest is written only over the
    # generation that was read (fake-gcs-server refuses a stale one with 412), so none is lost.
    import threading

    from tasks.data.bucket import GcsDataBucket
    names = [f"set-{i}" for i in range(8)]
    start = threading.Barrier(len(names))
    failures = []

    def record(name):
        try:
            start.wait()
            GcsDataBucket(data_bucket).record_datasets(add=[name])
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"{name}: {exc}")

    threads = [threading.Thread(target=record, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert dataplan.parse_manifest(_read(data_bucket, dataplan.MANIFEST), "m") == names
    GcsDataBucket(data_bucket).record_datasets(remove=names[:3])
    assert dataplan.parse_manifest(_read(data_bucket, dataplan.MANIFEST), "m") == names[3:]


def test_an_object_rewritten_after_the_listing_is_neither_overwritten_nor_deleted(data_bucket, tmp_path):
    from tasks.data.bucket import DataError, GcsDataBucket
    bucket = GcsDataBucket(data_bucket)
    theirs = _client().bucket(data_bucket)
    theirs.blob("flights/a.csv").upload_from_string(b"listed\n")
    theirs.blob("flights/b.csv").upload_from_string(b"listed\n")
    listed = bucket.list_dataset("flights")
    theirs.blob("flights/a.csv").upload_from_string(b"written meanwhile\n")
    theirs.blob("flights/b.csv").upload_from_string(b"written meanwhile\n")
    ours = tmp_path / "a.csv"
    ours.write_bytes(b"ours\n")
    with pytest.raises(DataError, match=r"flights/a.csv \(or its source\) changed while this run copied it"):
        bucket.put_file("flights", "a.csv", str(ours), listed["a.csv"], lambda done: None)
    assert bucket.delete_object("flights", "b.csv", listed["b.csv"]) is False
    assert _read(data_bucket, "flights/a.csv") == _read(data_bucket, "flights/b.csv") == b"written meanwhile\n"
    bucket.put_file("flights", "new.csv", str(ours), None, lambda done: None)  # absent: generation 0
    with pytest.raises(DataError, match="changed while this run copied it"):
        bucket.put_file("flights", "new.csv", str(ours), None, lambda done: None)
