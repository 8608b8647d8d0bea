"""The value formats at their edges: the limits of the systems the values end up in.

tests/unit/test_value_formats.py pins the hostile values; this file pins the
boundaries each grammar names (GCS bucket names of 3 to 63 characters, Linux's
NAME_MAX 255 and PATH_MAX 4096 bytes, JupyterHub's K/M/G/T as powers of 1024,
LDAP's well-known ports) and the hints given for almost-right values.  The
format builders (`_pattern`, `_one_printable_line`) run when the module is
imported, so they are also called here directly.
"""

from __future__ import annotations

import pytest

from tasks.config import formats
from tasks.config.formats import FORMATS, HINTS, byte_size, control_characters, ldap_port


def test_a_pattern_matches_the_whole_value_within_its_length():
    check = formats._pattern(r"[a-z]+", 3)
    assert check("abc")
    assert not check("abcd")      # one over the length
    assert not check("ab1")       # the whole value, not a prefix
    assert not check("1ab")
    unbounded = formats._pattern(r"[a-z]+")
    assert unbounded("a" * 1000)


def test_a_format_is_one_printable_line_first():
    seen = []
    check = formats._one_printable_line(lambda value: seen.append(value) or value == "ok")
    assert check("ok") and seen == ["ok"]
    assert not check("no")
    assert not check("o\nk") and seen == ["ok", "no"]  # the format's own check is not even asked


@pytest.mark.parametrize("value,accepted", [
    ("localhost:5000/classroom", True), ("localhost/classroom", True), ("registry.example.edu/x", True),
    ("registry:5000/x", True), ("eu.gcr.io", True),
    ("classroom/images", False),       # Docker reads the first part as a path on Docker Hub, not a host
    ("classroom", False), ("Registry.example.edu/Images", False), ("https://registry.example.edu/x", False),
    ("registry.example.edu/x/", False), ("localhost:5000/a:b", False)])
def test_registry_names_its_host(value, accepted):
    assert FORMATS["registry"].check(value) is accepted


@pytest.mark.parametrize("value,accepted", [
    ("gs://abc", True), ("gs://" + "a" * 63, True), ("gs://ab", False), ("gs://" + "a" * 64, False),
    ("gs://my-bucket/", True), ("gs://my.bucket", True), ("gs://my..bucket", False), ("gs://-bucket", False),
    ("gs://Bucket", False), ("file://x", True), ("file://", False), ("file:x", False), ("s3://bucket", False)])
def test_bucket_urls(value, accepted):
    # GCS: 3 to 63 characters, lowercase, starting and ending with a letter or digit, no ".."
    assert FORMATS["bucket_url"].check(value) is accepted


@pytest.mark.parametrize("value,accepted", [
    ("gs://bucket/path/to/data", True), ("gs://bucket", True), ("gs://bucket//x", False), ("gs://b/x", False),
    ("gs://my..bucket/x", False), ("data/flights.csv", True), ("https://h.example/r.git", True)])
def test_data_sources(value, accepted):
    assert FORMATS["data_source"].check(value) is accepted


@pytest.mark.parametrize("value,accepted", [
    ("main", True), ("v1.2", True), ("release/2024", True), ("a" * 40, True), ("a..b", False), ("-main", False),
    ("/main", False), ("main.lock", False), ("main/", False), ("main.", False), ("ma in", False), ("ma~in", False)])
def test_git_refs(value, accepted):
    # git check-ref-format's rules that matter on a command line
    assert FORMATS["git_ref"].check(value) is accepted


def test_path_limits_are_linux_limits_in_bytes():
    assert FORMATS["path"].check("a" * 255) and not FORMATS["path"].check("a" * 256)
    assert FORMATS["path"].check("é" * 127) and not FORMATS["path"].check("é" * 128)  # two bytes each
    longest = "/".join(["b" * 255] * 16)[: 4095]  # PATH_MAX counts the closing NUL
    assert len(longest.encode()) == 4095 and FORMATS["path"].check(longest)
    assert not FORMATS["path"].check(longest + "b")
    assert not FORMATS["path"].check("-x") and FORMATS["path"].check("x-")
    assert not FORMATS["path"].check(" x") and not FORMATS["path"].check("x ")


@pytest.mark.parametrize("value,accepted", [
    ("uid={username},dc=x", True), ("{username}", False), ("uid=alice,dc=x", False), ("uid={user},dc=x", False)])
def test_bind_dn_template_holds_the_login(value, accepted):
    assert FORMATS["bind_dn_template"].check(value) is accepted


@pytest.mark.parametrize("value,expected", [
    (1024, 1024), (0, 0), ("1K", 2**10), ("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1T", 2**40),
    ("1.5G", 3 * 2**29), ("0.5K", 512), (2**63 - 1, 2**63 - 1), (2**63, None), ("8388608T", None),
    ("8388607T", 8388607 * 2**40), (True, None), (False, None), ("2Gi", None), ("2g", None), ("2GB", None),
    ("G", None), ("1024", None), (1.5, None), (None, None), (" 2G", None)])
def test_byte_size_as_jupyterhub_reads_it(value, expected):
    assert byte_size(value) == expected


def test_memory_format_wants_more_than_zero_bytes():
    assert FORMATS["jupyterhub_bytes"].check("1K")
    assert not FORMATS["jupyterhub_bytes"].check("0K")
    assert not FORMATS["jupyterhub_bytes"].check("2Gi")


KUBERNETES_UNITS = "(JupyterHub's K, M, G, T are Kubernetes' Ki, Mi, Gi, Ti)"


@pytest.mark.parametrize("value,write", [
    ("2Gi", "2G"), ("512Mi", "512M"), ("1.5Gi", "1.5G"), ("2GB", "2G"), ("512m", "512M"), ("2 G", "2G"),
    ("4k", "4K"), ("1tib", None), ("1TiB", "1T"), ("3Mb", "3M"), (" 2Gi ", "2G"), ("0Gi", None), ("0.0M", None),
    ("two G", None), ("2Pi", None), (2, None), ("2Gix", None)])
def test_memory_hint_gives_the_text_to_write(value, write):
    hint = HINTS["jupyterhub_bytes"](value)
    assert hint == (f"; write '{write}' instead {KUBERNETES_UNITS}" if write else "")


@pytest.mark.parametrize("value,cores", [
    ("500m", "0.5"), ("250m", "0.25"), ("2000m", "2"), ("1500 m", "1.5"), ("1m", "0.001"), (" 100m ", "0.1"),
    ("0m", None), ("500", None), ("0.5m", None), ("500M", None), (500, None), ("m", None)])
def test_cpu_hint_turns_millicores_into_cpus(value, cores):
    hint = HINTS["cpu"](value)
    assert hint == (f"; write {cores} instead (JupyterHub counts CPUs, not Kubernetes millicores)" if cores else "")


@pytest.mark.parametrize("port,strategy,expected", [
    (0, "on_connect", 636), (0, "before_bind", 389), (0, "insecure", 389), (3269, "on_connect", 3269),
    (389, "on_connect", 389), (636, "insecure", 636)])
def test_ldap_port_zero_means_by_strategy(port, strategy, expected):
    assert ldap_port(port, strategy) == expected


def test_pip_requirement_length_limit():
    name = "a" * 195
    assert FORMATS["pip_requirement"].check(name + ">=1.0")          # 200 characters
    assert not FORMATS["pip_requirement"].check(name + ">=1.00")     # 201
    assert FORMATS["pip_requirement"].check("altair[all] >= 5")


def test_control_characters_are_counted_and_shown_at_most_three():
    assert control_characters("a\tb") == "; it contains the non-printable character U+0009"
    assert control_characters("\x00\x01\x02") == "; it contains the non-printable characters U+0000, U+0001, U+0002"
    assert control_characters("\x04\x03\x02\x01") == (
        "; it contains the non-printable characters U+0001, U+0002, U+0003, ...")
    assert control_characters("\n\n") == "; it contains the non-printable character U+000A"


@pytest.mark.parametrize("name,value,accepted", [
    ("text", "x" * 1024, True), ("text", "x" * 1025, False), ("kube_context", "k" * 253, True),
    ("kube_context", "k" * 254, False), ("kube_context", "-k", False), ("kube_context", " k", False),
    ("ldap_dn", "ou=p,dc=x", True), ("ldap_dn", "people", False), ("ldap_dn", " ou=p", False),
    ("dns_label", "a" * 63, True), ("dns_label", "a" * 64, False), ("dns_label", "a-", False),
    ("course_name", "a" * 40, True), ("course_name", "a" * 41, False),
    ("hostname", "hub.example.edu", True), ("hostname", "hub", False), ("hostname", "Hub.example.edu", False),
    ("email", "a@b.example.edu", True), ("email", "a@localhost", False),
    ("gcp_project", "abcdef", True), ("gcp_project", "abcde", False), ("gcp_project", "a" * 30, True),
    ("gcp_project", "a" * 31, False), ("semver", "4.4.0", True), ("semver", "v4.4.0", False),
    ("semver", "04.4.0", False), ("chart_version", "v1.16.2", True), ("node_label", "hub-node=true", True),
    ("node_label", "example.com/pool=", True), ("node_label", "=x", False),
    ("node_taint", "dedicated=classroom:NoSchedule", True), ("node_taint", "example.com/gpu:NoExecute", True),
    ("node_taint", "dedicated=classroom", False), ("node_taint", "dedicated=x:Never", False),
    ("node_taint", ":NoSchedule", False), ("node_taint", "a=b:NoSchedule:NoSchedule", False), ("image_ref", "a:" + "t" * 128, True),
    ("image_ref", "a:" + "t" * 129, False), ("image_ref", "debian@sha256:" + "0" * 64, True),
    ("http_url", "https://hub.jupyter.org/helm-chart/", True), ("http_url", "ftp://x.org/", False),
    ("k8s_quantity", "10Gi", True), ("k8s_quantity", "10gi", False), ("ldap_attribute", "1.2.840", True),
    ("ldap_attribute", "1", False), ("build_arg_name", "_A1", True), ("build_arg_name", "1A", False),
    ("platform", "linux/arm/v7", True), ("platform", "linux/arm", False), ("gcp_zone", "us-central1-a", True),
    ("gcp_region", "us-central1-a", False), ("username", "a" * 64, True), ("username", "a" * 65, False)])
def test_format_edges(name, value, accepted):
    assert FORMATS[name].check(value) is accepted


@pytest.mark.parametrize("value,accepted", [
    ("classroom/images.v2", False), ("classroom/images.v2/x", False),  # a dot after the first '/' names no host
    ("registry.example.edu/images.v2/x", True)])
def test_only_the_first_part_of_a_registry_is_its_host(value, accepted):
    assert FORMATS["registry"].check(value) is accepted


@pytest.mark.parametrize("name,value,accepted", [
    ("git_url", "https://Alice@h.example/r.git", True), ("git_url", "Git@github.com:org/repo.git", True),
    ("git_ref", "Main", True), ("git_ref", "Release-2024", True), ("bucket_url", "gs://abcX", False),
    ("bucket_url", "gs://abc//", True), ("pip_requirement", "XlsxWriter>=3", True)])
def test_capitals_where_the_grammar_allows_them(name, value, accepted):
    assert FORMATS[name].check(value) is accepted


def test_cpu_hint_writes_plain_digits():
    assert HINTS["cpu"]("1000000m") == "; write 1000 instead (JupyterHub counts CPUs, not Kubernetes millicores)"
