"""Rules that span several keys or files: the ones a per-key schema cannot state.

They run on the normalized documents, after the schema check, and guard
every access: a document that already failed its schema may have any shape.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.datasets import kind
from tasks.formats import FORMATS
from tasks.validation import Problems, found


def _get(doc, *path):
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                return None
        elif not isinstance(doc, dict):
            return None
        doc = doc[part] if isinstance(part, int) else doc.get(part)
    return doc


def check_all(docs: dict, raw: dict, problems: Problems, project_dir: Path):
    """`docs`: file name -> normalized document; `raw`: file name -> YamlDoc (for lines)."""
    classroom = docs.get("classroom.yaml")
    if isinstance(classroom, dict):
        needs = _Needs()
        _profile_rules(classroom, raw["classroom.yaml"], problems, needs)
        _tls_rules(classroom, needs)
        _auth_rules(classroom, needs)
        _storage_rules(classroom, needs)
        needs.report(classroom, raw["classroom.yaml"], problems)
        _resource_rules(classroom, raw["classroom.yaml"], problems)
        _local_file(classroom, raw["classroom.yaml"], ("build", "ca_bundle"), problems, project_dir)
    _unique_names(docs.get("courses.yaml"), raw.get("courses.yaml"), "courses.yaml", "courses",
                  "course", problems)
    _unique_names(docs.get("data.yaml"), raw.get("data.yaml"), "data.yaml", "datasets",
                  "dataset", problems)
    datasets = _get(docs.get("data.yaml"), "datasets")  # None where data.yaml did not load
    if isinstance(datasets, list):
        for i, dataset in enumerate(datasets):
            source = _get(dataset, "source")
            if (isinstance(source, str) and source and FORMATS["data_source"].check(source)
                    and kind(source) == "local"):
                _local_file(docs["data.yaml"], raw["data.yaml"], ("datasets", i, "source"),
                            problems, project_dir, file_name="data.yaml")


class _Needs:
    """Keys that other keys make mandatory; one line per key, naming every reason."""

    def __init__(self):
        self.reasons: dict[tuple, list[str]] = {}
        self.formats: dict[tuple, str] = {}

    def require(self, doc, path, why, fmt) -> bool:
        if _get(doc, *path) not in ("", None, []):
            return True
        self.reasons.setdefault(path, []).append(why)
        self.formats[path] = fmt
        return False

    def report(self, doc, yaml_doc, problems):
        for path, reasons in self.reasons.items():
            problems.add("classroom.yaml", yaml_doc, path, found(_get(doc, *path)),
                         f"{FORMATS[self.formats[path]].expected} (required by {' and '.join(reasons)})")


def _profile_rules(doc, yaml_doc, problems, needs):
    if _get(doc, "profile") != "gke":
        return
    why = "profile: gke"
    needs.require(doc, ("gcp", "project"), why, "gcp_project")
    needs.require(doc, ("gcp", "cluster"), why, "gcp_name")
    needs.require(doc, ("hub", "domain"), why, "hostname")
    if needs.require(doc, ("images", "registry"), "profile: gke, whose cluster pulls from it", "registry"):
        registry = _get(doc, "images", "registry")
        if isinstance(registry, str) and re.match(r"(localhost|127\.)", registry):
            problems.add("classroom.yaml", yaml_doc, ("images", "registry"), found(registry),
                         "a registry the cluster can reach, not a local one (profile: gke)")
    for bucket in ("charts", "data"):
        value = _get(doc, "buckets", bucket)
        if isinstance(value, str) and not value.startswith("gs://"):
            problems.add("classroom.yaml", yaml_doc, ("buckets", bucket), found(value),
                         "a gs://BUCKET-NAME URL (profile: gke has no bucket on disk)")


def _tls_rules(doc, needs):
    mode = _get(doc, "hub", "tls", "mode")
    if mode in ("autohttps", "ingress"):
        needs.require(doc, ("hub", "tls", "email"), f"hub.tls.mode: {mode}", "email")
        needs.require(doc, ("hub", "domain"), f"hub.tls.mode: {mode}", "hostname")


def _auth_rules(doc, needs):
    if _get(doc, "auth", "type") == "ldap":
        needs.require(doc, ("auth", "ldap", "server"), "auth.type: ldap", "hostname")
        needs.require(doc, ("auth", "ldap", "bind_dn_templates"), "auth.type: ldap", "bind_dn_template")


def _storage_rules(doc, needs):
    if _get(doc, "exchange", "storage") == "storage_class":
        # the name of an existing ReadWriteMany storage class
        needs.require(doc, ("exchange", "storage_class"), "exchange.storage: storage_class", "dns_label")


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_bytes(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()
    return float(number) * _UNITS[unit]


def _resource_rules(doc, yaml_doc, problems):
    resources = _get(doc, "resources")
    if not isinstance(resources, dict):
        return
    low, high = resources.get("cpu_guarantee"), resources.get("cpu_limit")
    if _numbers(low, high) and low > high:
        problems.add("classroom.yaml", yaml_doc, ("resources", "cpu_guarantee"), found(low),
                     f"at most resources.cpu_limit ({high})")
    low, high = resources.get("memory_guarantee"), resources.get("memory_limit")
    quantity = FORMATS["k8s_quantity"].check
    if (isinstance(low, str) and isinstance(high, str) and quantity(low) and quantity(high)
            and quantity_bytes(low) > quantity_bytes(high)):
        problems.add("classroom.yaml", yaml_doc, ("resources", "memory_guarantee"), found(low),
                     f"at most resources.memory_limit ({high})")


def _numbers(*values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _local_file(doc, yaml_doc, path, problems, project_dir: Path, file_name="classroom.yaml"):
    value = _get(doc, *path)
    if not isinstance(value, str) or not value or not FORMATS["path"].check(value):
        return
    target = Path(value).expanduser()
    if not target.is_absolute():
        target = project_dir / target
    if not target.exists():
        problems.add(file_name, yaml_doc, path, f"{found(value)}, no such file or directory",
                     f"an existing path (relative paths start at {project_dir})")


def _unique_names(doc, yaml_doc, file_name, key, noun, problems):
    items = _get(doc, key)
    if not isinstance(items, list):
        return
    first_seen = {}
    for i, item in enumerate(items):
        name = _get(item, "name")
        if not isinstance(name, str):
            continue
        if name in first_seen:
            problems.add(file_name, yaml_doc, (key, i, "name"), f"{found(name)} again",
                         f"a unique {noun} name ({name!r} is already {key}[{first_seen[name]}])")
        else:
            first_seen[name] = i
