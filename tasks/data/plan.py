"""What `data:upload` must do to a bucket so that it holds the datasets: pure.

The bucket layout is `<dataset name>/<path relative to the dataset's root>`.
Each side is a map {relative path: Fingerprint}: the source's files or
objects, the bucket's objects under the dataset's prefix.  An object is
uploaded only when its content differs, compared the way GCS allows: by MD5
when both sides have one, else by CRC32C (a composite object has no MD5),
always with the size when both know it.  Objects whose file is gone from the
source are deleted only when the bucket is ours to prune.

Which prefixes this project wrote is kept in a small manifest object in the
bucket (MANIFEST, a JSON list of dataset names): pruning a removed dataset
deletes `<name>/` only when the manifest lists `name`, so somebody else's
prefix in a shared bucket is never touched.

Names are checked before anything is written: a relative path with an empty,
`.` or `..` segment, a control character or more bytes than GCS or the file
system take could escape the dataset's prefix (or, in a `file://` bucket, the
directory), so it is refused.  Reads no files, imports nothing heavy (tasks.config.formats
only when a name is checked: dodo.py loads this module on every run).
"""

from __future__ import annotations

import json
import unicodedata
from typing import NamedTuple

from tasks.errors import ClassroomError

MANIFEST = ".classroom/datasets.json"
MANIFEST_FORMAT = "classtools-datasets-1"
MAX_MANIFEST_BYTES = 1024 * 1024
# GCS object names are at most 1024 bytes of UTF-8; a file name at most 255 bytes per part.
MAX_OBJECT_NAME_BYTES = 1024
MAX_PART_BYTES = 255
# Control characters, lone surrogates (a file name that is not UTF-8), line and paragraph
# separators, and format characters (a right-to-left override makes a name read differently).
_REFUSED_CATEGORIES = {"Cc", "Cs", "Zl", "Zp", "Cf"}


class PlanError(ClassroomError):
    pass


def _dns_label(name) -> bool:
    from tasks.config.formats import FORMATS  # the config's own rule for dataset names
    return isinstance(name, str) and FORMATS["dns_label"].check(name)


class Fingerprint(NamedTuple):  # NamedTuple, not a dataclass: dodo.py loads this module on every run
    """What is known of one file or object's content; checksums base64, as GCS gives them."""
    size: int | None
    md5: str | None = None        # base64 of the 16-byte MD5 digest (GCS: md5Hash)
    crc32c: str | None = None     # base64 of the big-endian 4-byte CRC32C (GCS: crc32c)
    generation: int | None = None  # a bucket object's generation: the precondition of its overwrite


def same_content(source: Fingerprint, target: Fingerprint) -> bool | None:
    """True or False when the two can be compared, None when the source lacks the only
    checksum the target has (then the source's CRC32C must be computed: `crc32c_needed`)."""
    if source.size is not None and target.size is not None and source.size != target.size:
        return False
    if source.md5 and target.md5:
        return source.md5 == target.md5
    if source.crc32c and target.crc32c:
        return source.crc32c == target.crc32c
    return None


def crc32c_needed(source: dict[str, Fingerprint], target: dict[str, Fingerprint]) -> list[str]:
    """Files whose target object can only be compared by CRC32C, which the source lacks."""
    return sorted(rel for rel, theirs in target.items()
                  if rel in source and same_content(source[rel], theirs) is None and theirs.crc32c
                  and not source[rel].crc32c)


class Plan(NamedTuple):
    upload: tuple[str, ...]   # new or changed, sorted
    delete: tuple[str, ...]   # gone from the source, the bucket ours to prune
    kept: tuple[str, ...]     # gone from the source, kept: pruning is off
    unchanged: int

    def summary(self) -> str:
        parts = [f"{len(self.upload)} uploaded", f"{len(self.delete)} deleted", f"{self.unchanged} unchanged"]
        if self.kept:
            parts.append(f"{len(self.kept)} kept that the source no longer has (buckets.prune_data is false)")
        return ", ".join(parts)


def plan(source: dict[str, Fingerprint], target: dict[str, Fingerprint], prune: bool) -> Plan:
    """What to upload and delete so that the dataset's prefix holds `source`."""
    upload = sorted(rel for rel, ours in source.items()
                    if rel not in target or same_content(ours, target[rel]) is not True)
    gone = sorted(rel for rel in target if rel not in source)
    return Plan(upload=tuple(upload), delete=tuple(gone) if prune else (), kept=() if prune else tuple(gone),
                unchanged=len(source) - len(upload))


# ---------------------------------------------------------------- names and prefixes

def name_problem(dataset: str, rel: str) -> str:
    """Why `rel` cannot be the relative path of a file of `dataset` in the bucket ('' if it can)."""
    if not rel:
        return "an empty name"
    bad = sorted({f"U+{ord(c):04X}" for c in rel if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if bad:
        return f"the character{'s' if len(bad) > 1 else ''} {', '.join(bad[:3])}"
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "an empty, '.' or '..' part (it would leave the dataset's folder or name another file)"
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in parts):
        return f"a part longer than {MAX_PART_BYTES} bytes"
    if len(object_name_unchecked(dataset, rel).encode("utf-8")) > MAX_OBJECT_NAME_BYTES:
        return f"more than {MAX_OBJECT_NAME_BYTES} bytes with the dataset's prefix"
    return ""


def name_problems(dataset: str, rels) -> list[str]:
    """'NAME: why' for every relative path that cannot be written under the dataset's prefix."""
    return [f"{rel!r}: {why}" for rel in sorted(rels) for why in [name_problem(dataset, rel)] if why]


def first_and_count(problems: list[str]) -> str:
    """The first problem, and how many more there are: one line, however many."""
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def object_name_unchecked(dataset: str, rel: str) -> str:
    return f"{dataset}/{rel}"


def object_name(dataset: str, rel: str) -> str:
    """The bucket object of a dataset's file; refuses a name that could leave the prefix."""
    if not _dns_label(dataset):
        raise PlanError(f"dataset name {dataset!r} is not a DNS label")
    why = name_problem(dataset, rel)
    if why:
        raise PlanError(f"{rel!r} cannot be stored under {dataset}/: {why}")
    return object_name_unchecked(dataset, rel)


def dataset_prefix(dataset: str) -> str:
    """The prefix a listing of the dataset asks for: `name/` (never `name`, which `name-2/` shares)."""
    if not _dns_label(dataset):
        raise PlanError(f"dataset name {dataset!r} is not a DNS label")
    return f"{dataset}/"


def relative_in_dataset(dataset: str, name: str) -> str | None:
    """The relative path of bucket object `name` in `dataset`, or None if it is not one of its files
    (another prefix, or a folder placeholder ending in '/')."""
    prefix = dataset_prefix(dataset)
    if not name.startswith(prefix) or name.endswith("/"):
        return None
    return name[len(prefix):]


def relative_in_source(prefix: str, name: str) -> str | None:
    """The relative path of object `name` in the gs:// source whose path is `prefix`: the whole
    bucket for '', the object itself when it is named `prefix` (a one-file dataset, under its
    last part), else what follows `prefix/`.  None for other objects (`prefix-old/...` shares the
    text but not the folder) and for folder placeholders."""
    prefix = prefix.strip("/")
    if name.endswith("/"):
        return None
    if not prefix:
        return name
    if name == prefix:
        return name.rsplit("/", 1)[-1]
    if name.startswith(prefix + "/"):
        return name[len(prefix) + 1:]
    return None


# ---------------------------------------------------------------- the manifest

def parse_manifest(data: bytes | None, where: str) -> list[str]:
    """The dataset names the manifest at WHERE lists (none when there is no manifest).
    Anything else than what `manifest_bytes` writes is refused, so that a damaged or foreign
    object can never name a prefix to delete."""
    if data is None:
        return []
    problem = ""
    if len(data) > MAX_MANIFEST_BYTES:
        problem = f"it is {len(data)} bytes, expected at most {MAX_MANIFEST_BYTES}"
    else:
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            document, problem = None, "it is not JSON"
        if not problem:
            if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
                problem = f"expected a JSON object with format {MANIFEST_FORMAT!r}"
            elif not isinstance(document.get("datasets"), list):
                problem = "expected 'datasets': a list of dataset names"
            else:
                bad = [n for n in document["datasets"] if not _dns_label(n)]
                if bad:
                    problem = f"'datasets' holds {bad[0]!r}, expected DNS labels"
    if problem:
        raise PlanError(f"{where} is not the dataset manifest this project writes ({problem}); "
                        "it was left as it is: repair or remove it")
    return sorted(set(document["datasets"]))


def manifest_bytes(names) -> bytes:
    return (json.dumps({"format": MANIFEST_FORMAT, "datasets": sorted(set(names))}, indent=2) + "\n").encode()


def removed_datasets(recorded, configured) -> list[str]:
    """Datasets this project uploaded that the config no longer has: the only prefixes pruning may delete."""
    return sorted(set(recorded) - set(configured))
