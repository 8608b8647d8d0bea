"""A dataset from a bucket, copied for `image:local` against the GCS emulator: the bytes
round-trip, the copy reports its progress in a few lines, and a change is noticed."""

from __future__ import annotations

import os

import pytest

from tasks.data import sources as datasets

pytestmark = pytest.mark.integration


def _upload(bucket: str, objects: dict[str, bytes]):
    from google.cloud import storage
    client = storage.Client.create_anonymous_client()
    client.project = "classroom-test"
    for name, data in objects.items():
        client.bucket(bucket).blob(name).upload_from_string(data)


def test_a_bucket_dataset_is_copied_with_its_progress(bucket, gcs_emulator, tmp_path):
    objects = {f"flights/part-{i}.csv": os.urandom(256 * 1024 + i) for i in range(8)}
    objects["elsewhere/other.csv"] = b"not this dataset\n"
    _upload(bucket, objects)
    source = f"gs://{bucket}/flights"
    identity = datasets.identity(source)
    lines: list[str] = []
    datasets.fetch_into(source, tmp_path / "flights", identity, log=lines.append)
    for name, data in objects.items():
        copied = tmp_path / "flights" / name.removeprefix("flights/")
        assert copied.exists() == name.startswith("flights/")
        if name.startswith("flights/"):
            assert copied.read_bytes() == data
    total = sum(len(d) for n, d in objects.items() if n.startswith("flights/"))
    # a few lines, not one per object or chunk: each quarter, and the end
    assert 2 <= len(lines) <= 6, lines
    assert lines[-1].startswith(f"copy {source}: done, {total / 1024 ** 2:.1f} MB in ")
    assert all(line.startswith(f"copy {source}: ") for line in lines)

    _upload(bucket, {"flights/part-0.csv": b"changed\n"})
    assert datasets.identity(source) != identity
    with pytest.raises(datasets.DatasetError, match="changed while it was being copied"):
        datasets.fetch_into(source, tmp_path / "again", identity, log=lines.append)
