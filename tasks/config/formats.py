"""The value formats of the config files: what a name, URL or reference may look like.

Each format is a predicate plus the sentence that tells a course's staff what
was expected.  They are the strings that end up as Kubernetes names, image
references, bucket URLs and so on, so they follow those systems' own grammars.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Callable, NamedTuple


class Format(NamedTuple):
    check: Callable[[str], bool]
    expected: str


def _pattern(regex: str, max_len: int | None = None) -> Callable[[str], bool]:
    compiled = re.compile(regex)

    def check(value: str) -> bool:
        return bool(compiled.fullmatch(value)) and (max_len is None or len(value) <= max_len)

    return check


_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_HOST = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)*"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# Docker's reference grammar: a registry host (with a dot, a port or `localhost`),
# then lowercase path components.
_REGISTRY_HOST = r"(?:localhost|" + _HOST + r"\." + _HOST + r"|" + _HOST + r")(?::[0-9]{1,5})?"
_REPOSITORY = rf"(?:{_REGISTRY_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"


def _registry(value: str) -> bool:
    """A repository prefix that names a registry host explicitly."""
    if not re.fullmatch(rf"{_REGISTRY_HOST}(?:/{_PATH_COMPONENT})*", value):
        return False
    host = value.split("/", 1)[0]
    return host.startswith("localhost") or "." in host or ":" in host


def _git_url(value: str) -> bool:
    # Every form starts with a letter or digit: git (and nbgitpuller) get these as operands,
    # and nothing here may read as an option.  `transport::address` (git's `ext::` runs a
    # command) matches none of them.
    if re.fullmatch(r"(?:https?|ssh|git)://(?:[A-Za-z0-9][A-Za-z0-9._-]*@)?" + _HOST + r"(?::[0-9]+)?/\S+", value):
        return True
    if re.fullmatch(r"file:///[^\s-]\S*", value):
        return True
    # scp-like syntax: git@github.com:org/repo.git
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*@" + _HOST + r":[^\s/-]\S*", value))


def _git_ref(value: str) -> bool:
    return (bool(re.fullmatch(r"[A-Za-z0-9._/-]+", value)) and ".." not in value
            and not value.startswith(("-", "/")) and not value.endswith((".lock", "/", ".")))


def _bucket_name(value: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", value)) and ".." not in value


def _bucket_url(value: str) -> bool:
    if value.startswith("gs://"):
        return _bucket_name(value[len("gs://"):].rstrip("/"))
    return value.startswith("file://") and len(value) > len("file://") and "\n" not in value


# Linux's limits: NAME_MAX bytes per path component, PATH_MAX bytes in all (with the NUL).
NAME_MAX, PATH_MAX = 255, 4096


def _path(value: str) -> bool:
    """A file path the OS can take and no command can read as an option."""
    encoded = value.encode("utf-8", "surrogatepass")
    return (value.strip() == value and not value.startswith("-") and len(encoded) < PATH_MAX
            and all(len(part) <= NAME_MAX for part in encoded.split(b"/")))


def _data_source(value: str) -> bool:
    from tasks.config.model import source_kind as kind  # one classification for the format and for the copy

    source_kind = kind(value)
    if source_kind == "gcs":
        bucket, _, path = value[len("gs://"):].partition("/")
        return _bucket_name(bucket) and not path.startswith("/")
    if source_kind == "git":
        return _git_url(value)
    return _path(value)


def _bind_dn_template(value: str) -> bool:
    return "{username}" in value and "=" in value and value.isprintable()


# JupyterHub's ByteSpecification (jupyterhub/traitlets.py, 5.5.0): an integer is a number of
# bytes; a string is a float followed by exactly one of K, M, G, T, each a power of 1024.
# Anything else ("2Gi", "2GB", "512m", "1073741824" as text) fails every spawn.
_BYTE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


MAX_BYTE_SIZE = 2**63 - 1  # Kubernetes quantities and Go's int64: anything above overflows there


def byte_size(value) -> int | None:
    """The bytes JupyterHub reads from a memory value, or None where it reads none (or too many)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value <= MAX_BYTE_SIZE else None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}(?:\.[0-9]{1,20})?[KMGT]", value):
        size = int(float(value[:-1]) * _BYTE_UNITS[value[-1]])
        return size if size <= MAX_BYTE_SIZE else None
    return None


def _byte_size_hint(value) -> str:
    """What to write instead of a Kubernetes-style or lower-case memory size."""
    match = isinstance(value, str) and re.fullmatch(
        r"([0-9]{1,20}(?:\.[0-9]{1,20})?) ?([KMGTkmgt])(?:i|iB|B|b)?", value.strip())
    if not match or not float(match.group(1)):
        return ""
    return (f"; write '{match.group(1)}{match.group(2).upper()}' instead "
            "(JupyterHub's K, M, G, T are Kubernetes' Ki, Mi, Gi, Ti)")


def _cpu_hint(value) -> str:
    """JupyterHub's cpu_limit/cpu_guarantee are Float traits: '500m' is Kubernetes, not JupyterHub."""
    match = isinstance(value, str) and re.fullmatch(r"([0-9]{1,12}) ?m", value.strip())
    if not match or not int(match.group(1)):
        return ""
    cores = format(Decimal(int(match.group(1))).scaleb(-3).normalize(), "f")
    return f"; write {cores} instead (JupyterHub counts CPUs, not Kubernetes millicores)"


# LDAP's well-known ports: 636 speaks TLS from the first byte (LDAPS, tls_strategy
# on_connect); 389 starts in plain text (StartTLS upgrades it: before_bind; insecure stays plain).
LDAPS_PORT, LDAP_PORT = 636, 389


def ldap_port(port: int, tls_strategy: str) -> int:
    """The port of auth.ldap.port, where 0 means by tls_strategy (ldapauthenticator 2's own default)."""
    if port:
        return port
    return LDAPS_PORT if tls_strategy == "on_connect" else LDAP_PORT


# A rule's `meta: {hint: NAME}` appends HINTS[NAME](value) to its error line: a value
# that is almost right is answered with the exact text to write instead.
HINTS: dict[str, Callable[[object], str]] = {
    "jupyterhub_bytes": _byte_size_hint,
    "cpu": _cpu_hint,
}


MAX_REQUIREMENT_LENGTH = 200


def _pip_requirement(value: str) -> bool:
    """One line of a pip requirements file that is a requirement and nothing else.

    packaging's Requirement is the grammar (PEP 508: name, extras, versions,
    marker).  On top of it, what pip's requirements-file reader treats
    specially even inside a marker's quotes is refused: a word starting with
    '-' (pip cuts the line there and reads the rest as options such as
    --index-url), '#' (a comment), '$' (${VAR} expansion), a backslash (line
    continuation); a URL (`name @ https://...`) is refused too: packages come
    from the image's index only.  Control characters never get here (every
    format refuses them first), so the line stays one line."""
    if (len(value) > MAX_REQUIREMENT_LENGTH or value.strip() != value or any(c in value for c in "#$\\")
            or any(word.startswith("-") for word in value.split())):
        return False
    from packaging.requirements import InvalidRequirement, Requirement  # only a cache miss validates

    try:
        return Requirement(value).url is None
    except InvalidRequirement:
        return False


FORMATS: dict[str, Format] = {
    "dns_label": Format(
        _pattern(_LABEL, 63),
        "a DNS-1123 label (lowercase letters, digits and '-', starting and ending "
        "with a letter or digit, at most 63 characters)"),
    "course_name": Format(
        _pattern(_LABEL, 40),
        "a DNS-1123 label of at most 40 characters (lowercase letters, digits and '-'; "
        "it becomes part of group, service and volume names)"),
    "gcp_name": Format(
        _pattern(r"[a-z](?:[-a-z0-9]*[a-z0-9])?", 63),
        "a Google Cloud resource name (lowercase letters, digits and '-', starting "
        "with a letter, at most 63 characters)"),
    "gcp_project": Format(
        _pattern(r"[a-z][-a-z0-9]{4,28}[a-z0-9]"),
        "a Google Cloud project ID (6 to 30 lowercase letters, digits and '-', starting with a letter)"),
    "gcp_region": Format(_pattern(r"[a-z]+-[a-z]+[0-9]+"), "a Google Cloud region such as us-central1"),
    "gcp_zone": Format(_pattern(r"[a-z]+-[a-z]+[0-9]+-[a-z]"), "a Google Cloud zone such as us-central1-a"),
    "username": Format(
        _pattern(r"[a-z0-9][a-z0-9._@-]*", 64),
        "a login name (lowercase letters, digits, '.', '_', '@' and '-', at most 64 characters)"),
    "email": Format(
        _pattern(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@" + _HOST + r"\.[A-Za-z]{2,}", 254),
        "an email address such as staff@example.edu"),
    "hostname": Format(
        _pattern(_LABEL + r"(?:\." + _LABEL + r")+", 253),
        "a fully qualified lowercase host name such as hub.example.edu"),
    "git_url": Format(
        _git_url,
        "a git URL (https://HOST/PATH, ssh://HOST/PATH, git://HOST/PATH, file:///PATH "
        "or USER@HOST:PATH)"),
    "git_ref": Format(_git_ref, "a git branch, tag or commit such as main or v1.2"),
    "registry": Format(
        _registry,
        "an image repository prefix naming its registry host, such as localhost:5000/classroom "
        "or us-central1-docker.pkg.dev/PROJECT/REPOSITORY (or \"\" to keep images in the local "
        "Docker Engine)"),
    "image_ref": Format(
        _pattern(rf"{_REPOSITORY}(?::{_TAG})?(?:@{_DIGEST})?", 255),
        "an image reference such as debian:bookworm-slim or REGISTRY/NAME:TAG@sha256:DIGEST"),
    "bucket_url": Format(
        _bucket_url,
        "a bucket URL: gs://BUCKET-NAME, or file://PATH for a bucket on disk (local profile)"),
    "data_source": Format(
        _data_source,
        "gs://BUCKET/PATH, a git URL, or a local path (relative to the project directory, "
        "not starting with '-')"),
    "k8s_quantity": Format(
        _pattern(r"[0-9]+(?:\.[0-9]+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?"),
        "a Kubernetes quantity such as 512Mi, 2Gi or 10G"),
    "jupyterhub_bytes": Format(
        lambda v: (byte_size(v) or 0) > 0,
        "a memory size JupyterHub reads: a number above 0 with K, M, G or T (powers of 1024) "
        "such as 512M or 2G, or a whole number of bytes"),
    "node_label": Format(
        _pattern(r"(?:" + _LABEL + r"(?:\." + _LABEL + r")*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
                 r"=(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"),
        "a Kubernetes node label KEY=VALUE such as hub-node=true"),
    "node_taint": Format(
        _pattern(r"(?:" + _LABEL + r"(?:\." + _LABEL + r")*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
                 r"(?:=(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)?"
                 r":(?:NoSchedule|PreferNoSchedule|NoExecute)"),
        "a Kubernetes node taint KEY=VALUE:EFFECT such as dedicated=classroom:NoSchedule "
        "(EFFECT: NoSchedule, PreferNoSchedule or NoExecute)"),
    "platform": Format(
        _pattern(r"linux/(?:amd64|arm64|arm/v7|arm/v6|ppc64le|s390x|386|riscv64)"),
        "a build platform such as linux/amd64 or linux/arm64"),
    "bind_dn_template": Format(
        _bind_dn_template, "an LDAP DN template containing {username}, such as uid={username},ou=people,dc=example,dc=edu"),
    "ldap_dn": Format(
        lambda v: "=" in v and v.isprintable() and v.strip() == v,
        "an LDAP DN such as ou=people,dc=example,dc=edu"),
    "ldap_attribute": Format(
        # RFC 4512: a descriptor (letter, then letters, digits, '-') or a numeric OID
        _pattern(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+"),
        "an LDAP attribute name such as uid or sAMAccountName"),
    "pip_requirement": Format(
        _pip_requirement,
        "a pip requirement such as 'altair>=5' (a name and version specifier, no options)"),
    "build_arg_name": Format(
        _pattern(r"[A-Za-z_][A-Za-z0-9_]*"), "a build argument name (letters, digits and '_')"),
    "semver": Format(
        _pattern(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"),
        "a SemVer 2 version such as 4.4.0"),
    "http_url": Format(
        _pattern(r"https?://" + _HOST + r"(?::[0-9]+)?(?:/\S*)?"),
        "an http(s) URL such as https://hub.jupyter.org/helm-chart/"),
    "text": Format(lambda v: len(v) <= 1024, "a single line of text (at most 1024 characters)"),
    "kube_context": Format(
        lambda v: v.strip() == v and not v.startswith("-") and len(v) <= 253,
        "a kube context name (not starting with '-')"),
    "chart_version": Format(
        _pattern(r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"),
        "a chart version such as v1.21.1 or 1.21.1"),
    # passed as BuildKit's `--secret id=ca_bundle,src=PATH`, a comma-separated (CSV) option
    "secret_file": Format(
        lambda v: _path(v) and not any(c in v for c in ',"'),
        f"a file path (not starting with '-', without ',' or '\"', each part at most {NAME_MAX} bytes, "
        f"at most {PATH_MAX - 1} bytes in all)"),
    "path": Format(
        _path,
        f"a file path (not starting with '-', each part at most {NAME_MAX} bytes, "
        f"at most {PATH_MAX - 1} bytes in all)"),
}


def _one_printable_line(check: Callable[[str], bool]) -> Callable[[str], bool]:
    # Every value may end up on a command line, in a requirements file or a URL, where a
    # line break (\r, \x85, \u2028 too) or a NUL splits or ends it: no format lets one through.
    return lambda value: value.isprintable() and check(value)


FORMATS = {name: Format(_one_printable_line(fmt.check), fmt.expected) for name, fmt in FORMATS.items()}


def control_characters(value: str) -> str:
    """'; it contains the non-printable character U+000D' for text that is not one printable line, else ''."""
    bad = sorted({f"U+{ord(c):04X}" for c in value if not c.isprintable()})
    if not bad:
        return ""
    shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
    return f"; it contains the non-printable character{'s' if len(bad) > 1 else ''} {shown}"
