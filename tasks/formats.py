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
    if re.fullmatch(r"(?:https?|ssh|git)://" + _HOST + r"(?::[0-9]+)?/\S+", value):
        return True
    if re.fullmatch(r"file:///\S+", value):
        return True
    # scp-like syntax: git@github.com:org/repo.git
    return bool(re.fullmatch(r"[A-Za-z0-9._-]+@" + _HOST + r":[^\s/]\S*", value))


def _git_ref(value: str) -> bool:
    return (bool(re.fullmatch(r"[A-Za-z0-9._/-]+", value)) and ".." not in value
            and not value.startswith(("-", "/")) and not value.endswith((".lock", "/", ".")))


def _bucket_name(value: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", value)) and ".." not in value


def _bucket_url(value: str) -> bool:
    if value.startswith("gs://"):
        return _bucket_name(value[len("gs://"):].rstrip("/"))
    return value.startswith("file://") and len(value) > len("file://") and "\n" not in value


def _data_source(value: str) -> bool:
    if value.startswith("gs://"):
        bucket, _, _ = value[len("gs://"):].partition("/")
        return _bucket_name(bucket)
    if _git_url(value):
        return True
    # a local path: anything printable without a URL scheme
    return "://" not in value and value.isprintable() and value.strip() == value


def _bind_dn_template(value: str) -> bool:
    return "{username}" in value and "=" in value and value.isprintable()


# JupyterHub's ByteSpecification (jupyterhub/traitlets.py, 5.5.0): an integer is a number of
# bytes; a string is a float followed by exactly one of K, M, G, T, each a power of 1024.
# Anything else ("2Gi", "2GB", "512m", "1073741824" as text) fails every spawn.
_BYTE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def byte_size(value) -> int | None:
    """The bytes JupyterHub reads from a memory value, or None where it reads none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(?:\.[0-9]+)?[KMGT]", value):
        return int(float(value[:-1]) * _BYTE_UNITS[value[-1]])
    return None


def _byte_size_hint(value) -> str:
    """What to write instead of a Kubernetes-style or lower-case memory size."""
    match = isinstance(value, str) and re.fullmatch(
        r"([0-9]+(?:\.[0-9]+)?) ?([KMGTkmgt])(?:i|iB|B|b)?", value.strip())
    if not match or not float(match.group(1)):
        return ""
    return (f"; write '{match.group(1)}{match.group(2).upper()}' instead "
            "(JupyterHub's K, M, G, T are Kubernetes' Ki, Mi, Gi, Ti)")


def _cpu_hint(value) -> str:
    """JupyterHub's cpu_limit/cpu_guarantee are Float traits: '500m' is Kubernetes, not JupyterHub."""
    match = isinstance(value, str) and re.fullmatch(r"([0-9]+) ?m", value.strip())
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


def _pip_requirement(value: str) -> bool:
    # A name with optional extras, version specifier or environment marker.
    # Options such as `--index-url` are refused: they would change where every
    # package of the image comes from.
    return bool(re.fullmatch(
        r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9,._ -]+\])?"
        r"\s*(?:(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*(?:;[^\n]+)?", value))


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
        "gs://BUCKET/PATH, a git URL, or a local path (relative to the project directory)"),
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
        _pip_requirement, "a pip requirement such as 'altair>=5' (a name and version specifier, no options)"),
    "build_arg_name": Format(
        _pattern(r"[A-Za-z_][A-Za-z0-9_]*"), "a build argument name (letters, digits and '_')"),
    "semver": Format(
        _pattern(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"),
        "a SemVer 2 version such as 4.4.0"),
    "http_url": Format(
        _pattern(r"https?://" + _HOST + r"(?::[0-9]+)?(?:/\S*)?"),
        "an http(s) URL such as https://hub.jupyter.org/helm-chart/"),
    "text": Format(lambda v: v.isprintable(), "a single line of text"),
    "path": Format(
        lambda v: v.isprintable() and v.strip() == v,
        "a file path"),
}
