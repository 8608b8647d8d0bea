"""What the classroom chart should be: pure functions from config and image results.

The packaged chart is `helm/classroom` with three things written in: the
z2jh dependency at the pinned version, the image references of the image
stage (merged into values.yaml), and a version derived from all of it.  Its
archive is built byte for byte the same from the same inputs: sorted
entries, fixed times and owners, no gzip timestamp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile

import yaml

# Words that Go's YAML 1.1 reader (helm's) turns into booleans, but PyYAML writes bare.
_GO_BOOLEANS = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF")


class _HelmSafeDumper(yaml.SafeDumper):
    pass


def _represent_str(dumper, value):
    style = "'" if _GO_BOOLEANS.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_HelmSafeDumper.add_representer(str, _represent_str)


def dump_values(values: dict) -> bytes:
    """values.yaml text that helm reads back as the same values (a login `n` stays a string)."""
    return yaml.dump(values, Dumper=_HelmSafeDumper, sort_keys=False).encode()


FIXED_MTIME = 946684800  # 2000-01-01: any constant will do; 0 upsets some tar readers


def image_values(images: dict) -> dict:
    """Values that carry the image stage's results into the chart."""
    notebook, db = images["notebook"], images["db"]
    name, tag = notebook["ref"].rsplit(":", 1)
    return {
        "jupyterhub": {"singleuser": {"image": {"name": name, "tag": tag}}},
        "classroom": {"images": {"db": db["ref"]}},
    }


def classroom_values(config) -> dict:
    """Values of the chart's own part that come from the config: what the classroom is.

    How it is reached (TLS, domain, contact email) and who logs in belong to
    the release, not the package: editing them must not make a new chart, and
    the packaged chart renders on its own (TLS mode none).
    """
    exchange = config.classroom["exchange"]
    return {"classroom": {
        "exchange": {"storage": exchange["storage"], "storageClass": exchange["storage_class"],
                     "size": exchange["size"]},
        "courses": [{"name": c["name"], "instructors": c["instructors"]} for c in config.courses],
    }}


def merge(base: dict, overlay: dict) -> dict:
    """Deep merge: mappings merge, anything else in `overlay` replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def chart_files(sources: dict[str, bytes], version: str, dependency_version: str,
                values: dict, dependency: tuple[str, bytes]) -> dict[str, bytes]:
    """The packaged chart's files: sources with Chart.yaml and values.yaml written in."""
    files = dict(sources)
    chart = yaml.safe_load(files["Chart.yaml"])
    chart["version"] = version
    for dep in chart.get("dependencies") or []:
        if dep.get("name") == "jupyterhub":
            dep["version"] = dependency_version
    files["Chart.yaml"] = yaml.safe_dump(chart, sort_keys=False).encode()
    defaults = yaml.safe_load(files.get("values.yaml", b"")) or {}
    # Comments of the source values.yaml are lost here; the source keeps them.
    files["values.yaml"] = dump_values(merge(defaults, values))
    files[f"charts/{dependency[0]}"] = dependency[1]
    return files


def chart_version(base_version: str, sources: dict[str, bytes], values: dict,
                  dependency_version: str, dependency_digest: str) -> str:
    """SemVer 2: the source version with a pre-release part that is a content digest.

    A 'c' starts the identifier, as SemVer forbids leading zeros in numeric ones.
    """
    digest = hashlib.sha256()
    for rel in sorted(sources):
        digest.update(f"{rel}\0{hashlib.sha256(sources[rel]).hexdigest()}\n".encode())
    digest.update(yaml.safe_dump(values, sort_keys=True).encode())
    digest.update(f"{dependency_version}\0{dependency_digest}".encode())
    core = base_version.split("-", 1)[0].split("+", 1)[0]
    return f"{core}-c{digest.hexdigest()[:12]}"


def archive(files: dict[str, bytes], name: str) -> bytes:
    """A .tgz that only depends on `files`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size, info.mtime, info.mode = len(files[rel]), FIXED_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[rel]))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def index_entry(files: dict[str, bytes], digest: str, url: str, created: str) -> dict:
    """One entry of a helm repository's index.yaml, as `helm repo index` writes it."""
    chart = yaml.safe_load(files["Chart.yaml"])
    entry = {k: chart[k] for k in ("apiVersion", "name", "version", "appVersion", "description",
                                   "type", "dependencies", "keywords", "home") if k in chart}
    entry.update(created=created, digest=digest, urls=[url])
    return entry
