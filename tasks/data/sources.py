"""Datasets from data.yaml: where their files are and what they are now.

Local paths are plain build-context files (see imagespec.sources).  For the
others the image tag needs an identity that is cheap to ask for (a commit,
object checksums) and a way to copy the data into a build context when
the image must really be built.  `data:upload` (tasks/data/factory.py) reads all
three kinds: a local folder's files, a git checkout, a gs:// prefix's objects
with their checksums and generations.  google.cloud is imported inside
functions: these run in actions only.

An object of a gs:// source belongs to the dataset when it is the source path
itself or lies under `path/` (`flights-old/` is not part of `gs://b/flights`);
a name that could leave the dataset's folder (`..`, control characters) is
refused before anything is copied (tasks/data/plan.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tasks.config.model import source_kind
from tasks.data import plan as dataplan
from tasks.errors import ClassroomError


class DatasetError(ClassroomError):
    pass


def _split_gs(source: str) -> tuple[str, str]:
    bucket, _, prefix = source[len("gs://"):].partition("/")
    return bucket, prefix


def _gcs_blobs(source: str):
    from google.api_core import exceptions
    from google.cloud import storage  # honours STORAGE_EMULATOR_HOST

    bucket, prefix = _split_gs(source)
    try:
        client = storage.Client() if _has_credentials() else storage.Client.create_anonymous_client()
        blobs = [b for b in client.list_blobs(bucket, prefix=prefix, **_bounded_patience())
                 if dataplan.relative_in_source(prefix, b.name) is not None]
    except exceptions.NotFound:
        raise DatasetError(f"bucket of {source} does not exist") from None
    except Exception as exc:  # auth, network: the client raises many types
        raise DatasetError(f"cannot list {source}: {str(exc).splitlines()[0][:200]}") from None
    if not blobs:
        raise DatasetError(f"{source} holds no objects")
    return prefix, blobs


def _bounded_patience() -> dict:
    """retry= and timeout= of a listing: an endpoint that is down is said in seconds
    (tasks/gcs.py), not after the client's two minutes of retries."""
    from tasks import gcs
    return gcs.calls()


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
    if source_kind(source) == "gcs":
        _, blobs = _gcs_blobs(source)
        digest = hashlib.sha256()
        for blob in sorted(blobs, key=lambda b: b.name):
            digest.update(f"{blob.name}\0{blob.md5_hash or blob.crc32c}\0{blob.size}\n".encode())
        return "gcs:" + digest.hexdigest()
    # `--`: the source is an operand, never an option (validation refuses a leading '-' as well)
    result = subprocess.run(["git", "ls-remote", "--", source, "HEAD"], capture_output=True, text=True,
                            timeout=120, env=_git_env())
    if result.returncode != 0 or not result.stdout.strip():
        raise DatasetError(f"cannot reach git repository {source}: "
                           f"{(result.stderr.strip().splitlines() or ['no HEAD'])[-1]}")
    return "git:" + result.stdout.split()[0]


def _say(line: str):
    print(line, flush=True)


def fetch_into(source: str, target: Path, expected_identity: str, log=_say):
    """Copy the dataset into `target`; refuse if it changed since `identity` was taken.
    A bucket's objects are counted as they arrive, in a few lines through `log`."""
    target.mkdir(parents=True, exist_ok=True)
    if source_kind(source) == "gcs":
        from tasks.run.progress import Progress
        prefix, blobs = _gcs_blobs(source)
        named = gcs_relative_names(source, prefix, blobs)
        progress = Progress(f"copy {source}", log)
        for blob in blobs:
            progress.update(blob.name, 0, blob.size or 0)
        for rel, blob in zip(named, blobs):
            path = target / rel  # checked: no part is empty, '.' or '..'
            path.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(path))
            progress.update(blob.name, blob.size or 0, blob.size or 0)
        progress.finish()
    else:
        checkout = target.parent / (target.name + ".git-checkout")
        git_checkout(source, checkout)
        shutil.copytree(checkout, target, dirs_exist_ok=True)
        shutil.rmtree(checkout)
    if identity(source) != expected_identity:
        raise DatasetError(f"{source} changed while it was being copied; run again")


def gcs_relative_names(source: str, prefix: str, blobs) -> list[str]:
    """Each object's path in the dataset, in the order of `blobs`; DatasetError, before anything
    is copied, when a name could leave the dataset's folder."""
    named = [dataplan.relative_in_source(prefix, blob.name) for blob in blobs]
    # checked against a placeholder dataset name: the same rules, whatever the dataset is called
    problems = dataplan.name_problems("dataset", [rel for rel in named if rel is not None])
    if problems:
        raise DatasetError(f"{source} holds an object whose name cannot be a file of the dataset: "
                           f"{dataplan.first_and_count(problems)}")
    return named


def _git_env() -> dict:
    # Never wait for a password prompt nobody will answer (CI, `doit -n 2`): fail instead.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


# ---------------------------------------------------------------- what data:upload reads

def local_files(path: Path) -> tuple[dict[str, str], int]:
    """({relative path: file}, links left out) of a local dataset: the regular files image:local
    bakes (the folder's .dockerignore applies); a bucket has no links.  One file: under its name."""
    from tasks.filetree.ignore import context_files
    path = Path(path)
    if not path.is_dir():
        return ({path.name: str(path)}, 0) if path.is_file() else ({}, 0)
    files, links = {}, 0
    for rel in context_files(path):
        full = os.path.join(path, rel)
        if os.path.islink(full):
            links += 1
        else:
            files[rel] = full
    return files, links


def checkout_files(root: Path) -> tuple[dict[str, str], int]:
    """({relative path: file}, links left out) of a git checkout: every regular file but .git's."""
    files, links = {}, 0
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if not (directory == str(root) and d == ".git")]
        for name in names + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
            full = os.path.join(directory, name)
            if os.path.islink(full):
                links += 1
            elif os.path.isfile(full):
                files[os.path.relpath(full, root).replace(os.sep, "/")] = full
    return files, links


def file_fingerprint(path: str) -> dataplan.Fingerprint:
    """Size and MD5 (base64, as GCS gives md5Hash) of one file, read once."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return dataplan.Fingerprint(size=size, md5=base64.b64encode(digest.digest()).decode())


def file_crc32c(path: str) -> str:
    """CRC32C (base64 of its 4 big-endian bytes, as GCS gives it) of one file: for objects with no MD5."""
    import google_crc32c  # installed with google-cloud-storage; its C implementation
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


def git_checkout(source: str, target: Path) -> str:
    """Clone the default branch's last commit of `source` into `target` (no .git left); its commit."""
    result = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--", source, str(target)],
                            capture_output=True, text=True, timeout=1800, env=_git_env())
    if result.returncode != 0:
        raise DatasetError(f"cannot clone {source}: "
                           f"{(result.stderr.strip().splitlines() or ['git failed'])[-1][:200]}")
    head = subprocess.run(["git", "-C", str(target), "rev-parse", "HEAD"], capture_output=True, text=True,
                          timeout=60, env=_git_env())
    if head.returncode != 0:
        raise DatasetError(f"{source} has no commit to copy")
    shutil.rmtree(target / ".git")
    return head.stdout.strip()


def gcs_objects(source: str) -> tuple[dict[str, object], str]:
    """({relative path: blob}, identity) of a gs:// dataset: each blob carries its generation, so
    copying it copies exactly what was listed; the identity digests names, generations and
    checksums (a rewrite with the same bytes is a new generation: one more comparison)."""
    prefix, blobs = _gcs_blobs(source)
    named = dict(zip(gcs_relative_names(source, prefix, blobs), blobs))
    return named, gcs_identity(named)


def gcs_identity(named: dict) -> str:
    digest = hashlib.sha256()
    for rel, blob in sorted(named.items()):
        digest.update(f"{rel}\0{blob.generation}\0{blob.md5_hash}\0{blob.crc32c}\0{blob.size}\n"
                      .encode("utf-8", "surrogateescape"))
    return "gcs-generations:" + digest.hexdigest()


def source_identity(source: str) -> str:
    """What a git or gs:// dataset is now, as `data:upload` remembers it: the remote commit, or
    the source objects' generations (one listing of the source, never of the data bucket)."""
    if source_kind(source) == "gcs":
        return gcs_objects(source)[1]
    return identity(source)
