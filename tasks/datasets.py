"""Datasets from data.yaml that live elsewhere: a gs:// prefix or a git repository.

Local paths are plain build-context files (see imagespec.sources).  For the
others the image tag needs an identity that is cheap to ask for (a commit,
object generations) and a way to copy the data into a build context when
the image must really be built.  google.cloud is imported inside functions:
these run in actions only.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path


class DatasetError(Exception):
    pass


def kind(source: str) -> str:
    """gcs, git or local, by git's own rule: a URL scheme, or a colon before the first
    slash (scp-like `user@host:path`), is remote; anything else is a path on this machine."""
    if source.startswith("gs://"):
        return "gcs"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source) or ":" in source.split("/", 1)[0]:
        return "git"
    return "local"


def _split_gs(source: str) -> tuple[str, str]:
    bucket, _, prefix = source[len("gs://"):].partition("/")
    return bucket, prefix


def _gcs_blobs(source: str):
    from google.cloud import storage  # honours STORAGE_EMULATOR_HOST
    from google.api_core import exceptions

    bucket, prefix = _split_gs(source)
    try:
        client = storage.Client() if _has_credentials() else storage.Client.create_anonymous_client()
        blobs = [b for b in client.list_blobs(bucket, prefix=prefix) if not b.name.endswith("/")]
    except exceptions.NotFound:
        raise DatasetError(f"bucket of {source} does not exist") from None
    except Exception as exc:  # auth, network: the client raises many types
        raise DatasetError(f"cannot list {source}: {str(exc).splitlines()[0][:200]}") from None
    if not blobs:
        raise DatasetError(f"{source} holds no objects")
    return prefix, blobs


def _has_credentials() -> bool:
    import os
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return True
    try:
        import google.auth
        google.auth.default()
        return True
    except Exception:
        return False


def identity(source: str) -> str:
    """What the data is now, without downloading it."""
    if kind(source) == "gcs":
        _, blobs = _gcs_blobs(source)
        digest = hashlib.sha256()
        for blob in sorted(blobs, key=lambda b: b.name):
            digest.update(f"{blob.name}\0{blob.md5_hash or blob.crc32c}\0{blob.size}\n".encode())
        return "gcs:" + digest.hexdigest()
    # `--`: the source is an operand, never an option (validation refuses a leading '-' as well)
    result = subprocess.run(["git", "ls-remote", "--", source, "HEAD"], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0 or not result.stdout.strip():
        raise DatasetError(f"cannot reach git repository {source}: "
                           f"{(result.stderr.strip().splitlines() or ['no HEAD'])[-1]}")
    return "git:" + result.stdout.split()[0]


def _say(line: str):
    print(line, flush=True)


def stage(source: str, target: Path, expected_identity: str, log=_say):
    """Copy the dataset into `target`; refuse if it changed since `identity` was taken.
    A bucket's objects are counted as they arrive, in a few lines through `log`."""
    target.mkdir(parents=True, exist_ok=True)
    if kind(source) == "gcs":
        from tasks.progress import Progress
        prefix, blobs = _gcs_blobs(source)
        progress = Progress(f"copy {source}", log)
        for blob in blobs:
            progress.update(blob.name, 0, blob.size or 0)
        for blob in blobs:
            rel = blob.name[len(prefix):].lstrip("/") if prefix else blob.name
            path = target / (rel or Path(blob.name).name)
            path.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(path))
            progress.update(blob.name, blob.size or 0, blob.size or 0)
        progress.finish()
    else:
        checkout = target.parent / (target.name + ".git-checkout")
        result = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--", source, str(checkout)],
                                capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise DatasetError(f"cannot clone {source}: {result.stderr.strip()[-200:]}")
        shutil.rmtree(checkout / ".git")
        shutil.copytree(checkout, target, dirs_exist_ok=True)
        shutil.rmtree(checkout)
    if identity(source) != expected_identity:
        raise DatasetError(f"{source} changed while it was being copied; run again")
