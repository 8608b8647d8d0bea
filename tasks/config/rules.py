"""Rules that span several keys or files: the ones a per-key schema cannot state.

They run on the normalized documents, after the schema check, and guard
every access: a document that already failed its schema may have any shape.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tasks.config.formats import FORMATS, LDAP_PORT, LDAPS_PORT, byte_size, ldap_port
from tasks.config.model import source_kind as kind
from tasks.config.validation import Problems, found
from tasks.config.yamldoc import file_kind


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
        _ldap_port_rule(classroom, raw["classroom.yaml"], problems)
        _public_login_rule(classroom, raw["classroom.yaml"], problems)
        _resource_rules(classroom, raw["classroom.yaml"], problems)
        _local_file(classroom, raw["classroom.yaml"], ("build", "ca_bundle"), problems, project_dir,
                    kinds=_FILE)
        _local_file(classroom, raw["classroom.yaml"], ("auth", "ldap", "ca_bundle"), problems, project_dir,
                    kinds=_FILE)
        _state_file_rule(classroom, raw["classroom.yaml"], problems, project_dir)
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
                            problems, project_dir, file_name="data.yaml", kinds=_FILE_OR_DIRECTORY)
        _dataset_courses_exist(datasets, docs.get("courses.yaml"), raw["data.yaml"], problems)


def _dataset_courses_exist(datasets, courses_doc, yaml_doc, problems):
    courses = _get(courses_doc, "courses")
    if not isinstance(courses, list):
        return  # courses.yaml did not load: its own problems are reported
    known = sorted({c.get("name") for c in courses if isinstance(c, dict) and isinstance(c.get("name"), str)})
    for i, dataset in enumerate(datasets):
        listed = _get(dataset, "courses")
        for j, course in enumerate(listed if isinstance(listed, list) else []):
            # a name that is not even a course name has had its line from the schema
            if isinstance(course, str) and FORMATS["course_name"].check(course) and course not in known:
                problems.add("data.yaml", yaml_doc, ("datasets", i, "courses", j), found(course),
                             f"a course of courses.yaml ({', '.join(known) or 'none defined'})")


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
    if _get(doc, "auth", "type") != "ldap":
        return
    needs.require(doc, ("auth", "ldap", "server"), "auth.type: ldap", "hostname")
    if _get(doc, "auth", "ldap", "search_user") in ("", None):
        needs.require(doc, ("auth", "ldap", "bind_dn_templates"),
                      "auth.type: ldap without auth.ldap.search_user", "bind_dn_template")
    else:
        # ldapauthenticator's lookup_dn searches user_search_base for user_attribute=LOGIN;
        # an empty base or attribute makes that search fail for every login.
        needs.require(doc, ("auth", "ldap", "user_search_base"),
                      "auth.ldap.search_user: each login is looked up under this base", "ldap_dn")
        needs.require(doc, ("auth", "ldap", "user_attribute"),
                      "auth.ldap.search_user: the login is matched against this attribute", "ldap_attribute")


# Each strategy fails on the other's well-known port (formats.LDAPS_PORT speaks TLS from the
# first byte, formats.LDAP_PORT starts in plain text), so that pair is refused; any other
# port is the directory's business.
_WRONG_PORT = {
    "on_connect": (LDAP_PORT, "LDAPS speaks TLS from the first byte; 389 expects plain LDAP"),
    "before_bind": (LDAPS_PORT, "StartTLS starts in plain LDAP; 636 expects TLS from the first byte"),
    "insecure": (LDAPS_PORT, "plain LDAP; 636 expects TLS from the first byte"),
}


def _ldap_port_rule(doc, yaml_doc, problems):
    if _get(doc, "auth", "type") != "ldap":
        return
    port, strategy = _get(doc, "auth", "ldap", "port"), _get(doc, "auth", "ldap", "tls_strategy")
    if not isinstance(strategy, str) or strategy not in _WRONG_PORT or isinstance(port, bool):
        return  # a wrong type: the schema has said so
    wrong, why = _WRONG_PORT[strategy]
    if port == wrong:
        problems.add("classroom.yaml", yaml_doc, ("auth", "ldap", "port"), found(port),
                     f"{ldap_port(0, strategy)} or 0 (= by tls_strategy) with "
                     f"auth.ldap.tls_strategy: {strategy} ({why})")


def _public_login_rule(doc, yaml_doc, problems):
    """Dummy login lets any password in: not on a deployment reachable from the internet."""
    if _get(doc, "auth", "type") != "dummy" or _get(doc, "auth", "dummy_trial") is not False:
        return
    public = []
    if _get(doc, "profile") == "gke":
        public.append("profile: gke")
    mode = _get(doc, "hub", "tls", "mode")
    if mode in ("autohttps", "ingress"):  # a certificate for hub.domain: reachable from anywhere
        public.append(f"hub.tls.mode: {mode}")
    if public:
        problems.add("classroom.yaml", yaml_doc, ("auth", "type"), found("dummy"),
                     f"ldap on a public deployment ({' and '.join(public)}): dummy login lets any "
                     "password in; set auth.dummy_trial: true only for a throwaway trial")


def _storage_rules(doc, needs):
    if _get(doc, "exchange", "storage") == "storage_class":
        # the name of an existing ReadWriteMany storage class
        needs.require(doc, ("exchange", "storage_class"), "exchange.storage: storage_class", "dns_label")


def _resource_rules(doc, yaml_doc, problems):
    resources = _get(doc, "resources")
    if not isinstance(resources, dict):
        return
    low, high = resources.get("cpu_guarantee"), resources.get("cpu_limit")
    if _numbers(low, high) and low > high:
        problems.add("classroom.yaml", yaml_doc, ("resources", "cpu_guarantee"), found(low),
                     f"at most resources.cpu_limit ({high})")
    low, high = resources.get("memory_guarantee"), resources.get("memory_limit")
    low_bytes, high_bytes = byte_size(low), byte_size(high)  # as JupyterHub reads them
    if _numbers(low_bytes, high_bytes) and 0 < high_bytes < low_bytes:
        problems.add("classroom.yaml", yaml_doc, ("resources", "memory_guarantee"), found(low),
                     f"at most resources.memory_limit ({high})")


def _numbers(*values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


_FILE = ((stat.S_ISREG, "a regular file"),)
_FILE_OR_DIRECTORY = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"))


def _local_file(doc, yaml_doc, path, problems, project_dir: Path, file_name="classroom.yaml", kinds=_FILE):
    """A path the build reads: it must exist and be one of `kinds` (a device or FIFO never ends)."""
    value = _get(doc, *path)
    if not isinstance(value, str) or not value or not FORMATS["path"].check(value):
        return  # the schema has said what is wrong with it
    target = _absolute(value, project_dir)
    wanted = " or ".join(words for _, words in kinds)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        problems.add(file_name, yaml_doc, path, f"{found(value)}, no such file or directory",
                     f"an existing path (relative paths start at {project_dir})")
        return
    except OSError as exc:  # a file where a directory should be, a loop of links, no permission...
        problems.add(file_name, yaml_doc, path, f"{found(value)}, which cannot be read ({exc.strerror})",
                     f"{wanted} this user can read (relative paths start at {project_dir})")
        return
    if not any(test(mode) for test, _ in kinds):
        problems.add(file_name, yaml_doc, path, f"{found(value)}, which is {file_kind(mode)}", wanted)
    elif not os.access(target, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        problems.add(file_name, yaml_doc, path, f"{found(value)}, which cannot be read (permission denied)",
                     f"{wanted} this user can read")


def _absolute(value: str, project_dir: Path) -> Path:
    target = Path(os.path.expanduser(value))  # unlike Path.expanduser, leaves `~nobody-here` alone
    return target if target.is_absolute() else project_dir / target


def state_file_problem(value: str, project_dir: Path) -> tuple[str, str] | None:
    """(found, expected) when doit could not keep its state at `value`, else None.

    doit writes the file (json; dbm and sqlite3 may add a suffix) and dodo.py
    makes its directory: the path must not be a directory, and its nearest
    existing ancestor must be a directory this user may write to."""
    expected = f"a file path whose directory exists or can be made (relative paths start at {project_dir})"
    if not FORMATS["path"].check(value) or value.endswith("/"):
        return found(value), f"{FORMATS['path'].expected}, naming a file"
    target = _absolute(value, project_dir)
    try:
        mode = os.stat(target).st_mode
        return None if stat.S_ISREG(mode) else (f"{found(value)}, which is {file_kind(mode)}", expected)
    except (FileNotFoundError, NotADirectoryError):  # not there yet, or under a file: see the ancestors
        pass
    except OSError as exc:  # ENOTDIR: a file in the middle of the path; ELOOP, EACCES...
        return f"{found(value)}, which cannot be used ({exc.strerror})", expected
    for ancestor in target.parents:
        try:
            mode = os.stat(ancestor).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            return f"{found(value)}: {ancestor} cannot be used ({exc.strerror})", expected
        if not stat.S_ISDIR(mode):
            return f"{found(value)}: {ancestor} is {file_kind(mode)}, not a directory", expected
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"{found(value)}: {ancestor} is not writable by this user", expected
        return None
    return None


def _state_file_rule(doc, yaml_doc, problems, project_dir):
    value = _get(doc, "state", "dep_file")
    if isinstance(value, str) and FORMATS["path"].check(value):  # else the schema said so already
        problem = state_file_problem(value, project_dir)
        if problem:
            problems.add("classroom.yaml", yaml_doc, ("state", "dep_file"), *problem)


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
