"""The rules across keys and files (tasks.config.rules), on documents the schema has normalized.

Each test writes YAML text, lets the schema normalize it (defaults filled in),
then runs the cross-key rules alone and compares the lines they add.  The
rules that check paths (build.ca_bundle, local dataset sources, state.dep_file)
genuinely look at the file system: those tests use tmp_path as the project
directory; the others pass a project directory they never need to read
(state.dep_file's default only has its ancestors looked at).
"""

from __future__ import annotations

import os
import stat

import pytest

from tasks.config import rules
from tasks.config.validation import Problems, check_file
from tasks.config.yamldoc import load_text

COURSES = "courses:\n  - {name: intro, repo: https://h.example/intro.git, instructors: [alice]}\n"
DATA = "datasets:\n  - {name: flights, source: gs://bucket/flights}\n"
HOSTNAME = "a fully qualified lowercase host name such as hub.example.edu"
EMAIL = "an email address such as staff@example.edu"
LDAP = "auth:\n  type: ldap\n  ldap:\n    server: ldap.example.edu\n    bind_dn_templates: ['uid={username},dc=x']\n"


def rule_lines(tmp_path, classroom="", courses=COURSES, data=DATA, project_dir=None):
    """The lines the rules add to a config whose files each pass their schema."""
    texts = {"classroom.yaml": classroom or "{}\n", "courses.yaml": courses, "data.yaml": data}
    problems = Problems("config")
    raw = {name: load_text(text) for name, text in texts.items()}
    docs = {name: check_file(name, doc, problems) for name, doc in raw.items()}
    assert problems.lines == [], "the test config must pass the schema: only the rules are under test"
    rules.check_all(docs, raw, problems, project_dir or tmp_path)
    return problems.lines


def test_a_consistent_config_has_no_rule_problem(tmp_path):
    assert rule_lines(tmp_path) == []
    assert rule_lines(tmp_path, LDAP + "    port: 3269\n") == []


@pytest.mark.parametrize("mode", ["autohttps", "ingress"])
def test_a_tls_mode_needs_email_and_domain_and_no_dummy_login(tmp_path, mode):
    lines = rule_lines(tmp_path, f"auth: {{dummy_trial: true}}\nhub:\n  tls:\n    mode: {mode}\n")
    assert lines == [
        f"config/classroom.yaml:2: hub.domain: found an empty string; expected {HOSTNAME} (required by "
        f"hub.tls.mode: {mode})",
        f"config/classroom.yaml:3: hub.tls.email: found an empty string; expected {EMAIL} (required by "
        f"hub.tls.mode: {mode})"]


def test_tls_mode_none_needs_nothing(tmp_path):
    assert rule_lines(tmp_path, "hub:\n  tls:\n    mode: none\n") == []


def test_one_line_per_key_names_every_reason(tmp_path):
    lines = rule_lines(tmp_path, "profile: gke\nauth: {dummy_trial: true}\nhub:\n  tls: {mode: ingress, "
                                 "email: a@b.example.edu}\nimages: {registry: eu.gcr.io/p}\n"
                                 "gcp: {project: uni-ds1, cluster: c}\nbuckets: {charts: gs://c-b, data: gs://d-b}\n")
    assert lines == [f"config/classroom.yaml:3: hub.domain: found an empty string; expected {HOSTNAME} "
                     "(required by profile: gke and hub.tls.mode: ingress)"]


def test_gke_refuses_a_registry_on_this_machine(tmp_path):
    base = ("profile: gke\nauth: {dummy_trial: true}\nhub: {domain: hub.example.edu}\n"
            "gcp: {project: uni-ds1, cluster: c}\nbuckets: {charts: gs://c-b, data: gs://d-b}\n")
    for local in ("localhost:5000/x", "127.0.0.1:5000/x"):
        assert rule_lines(tmp_path, base + f"images: {{registry: '{local}'}}\n") == [
            f"config/classroom.yaml:6: images.registry: found '{local}' (text); expected a registry the "
            "cluster can reach, not a local one (profile: gke)"]
    assert rule_lines(tmp_path, base + "images: {registry: registry.example.edu/localhost}\n") == []


def test_gke_names_each_bucket_on_disk(tmp_path):
    lines = rule_lines(tmp_path, "profile: gke\nauth: {dummy_trial: true}\nhub: {domain: hub.example.edu}\n"
                                 "gcp: {project: uni-ds1, cluster: c}\nimages: {registry: eu.gcr.io/p}\n"
                                 "buckets: {charts: gs://c-b, data: file:///srv/data}\n")
    assert lines == ["config/classroom.yaml:6: buckets.data: found 'file:///srv/data' (text); expected a "
                     "gs://BUCKET-NAME URL (profile: gke has no bucket on disk)"]


def test_ldap_without_search_user_needs_a_template(tmp_path):
    assert rule_lines(tmp_path, "auth:\n  type: ldap\n  ldap: {server: ldap.example.edu}\n") == [
        "config/classroom.yaml:3: auth.ldap.bind_dn_templates: found an empty list; expected an LDAP DN template "
        "containing {username}, such as uid={username},ou=people,dc=example,dc=edu (required by auth.type: ldap "
        "without auth.ldap.search_user)"]


def test_ldap_with_a_search_user_needs_no_template(tmp_path):
    text = ("auth:\n  type: ldap\n  ldap: {server: ldap.example.edu, search_user: 'cn=r,dc=x', "
            "user_search_base: 'ou=p,dc=x'}\n")
    assert rule_lines(tmp_path, text) == []


def test_ldap_rules_wait_for_ldap(tmp_path):
    # an LDAP section nobody uses: its half-filled keys are no problem while auth.type is dummy
    assert rule_lines(tmp_path, "auth:\n  ldap: {port: 389, search_user: 'cn=r,dc=x', user_attribute: ''}\n") == []


@pytest.mark.parametrize("strategy,port,right", [("on_connect", 389, 636), ("before_bind", 636, 389),
                                                  ("insecure", 636, 389)])
def test_ldap_port_of_the_other_strategy(tmp_path, strategy, port, right):
    lines = rule_lines(tmp_path, LDAP + f"    port: {port}\n    tls_strategy: {strategy}\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"config/classroom.yaml:6: auth.ldap.port: found {port} (an integer); expected "
                               f"{right} or 0 (= by tls_strategy) with auth.ldap.tls_strategy: {strategy} (")
    assert f"; {port} expects" in lines[0]
    # the right port, or "by strategy", is fine
    assert rule_lines(tmp_path, LDAP + f"    port: {right}\n    tls_strategy: {strategy}\n") == []
    assert rule_lines(tmp_path, LDAP + f"    port: 0\n    tls_strategy: {strategy}\n") == []


def test_dummy_login_on_a_public_deployment(tmp_path):
    public = ("hub:\n  domain: hub.example.edu\n  tls: {mode: autohttps, email: a@b.example.edu}\n")
    assert rule_lines(tmp_path, "auth: {type: dummy}\n" + public) == [
        "config/classroom.yaml:1: auth.type: found 'dummy' (text); expected ldap on a public deployment "
        "(hub.tls.mode: autohttps): dummy login lets any password in; set auth.dummy_trial: true only for a "
        "throwaway trial"]
    assert rule_lines(tmp_path, "auth: {type: dummy, dummy_trial: true}\n" + public) == []


def test_storage_class_needs_its_name(tmp_path):
    assert rule_lines(tmp_path, "exchange: {storage: nfs, storage_class: ''}\n") == []
    assert rule_lines(tmp_path, "exchange: {storage: storage_class, storage_class: ''}\n") == [
        "config/classroom.yaml:1: exchange.storage_class: found an empty string; expected a DNS-1123 label "
        "(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 "
        "characters) (required by exchange.storage: storage_class)"]


@pytest.mark.parametrize("guarantee,limit,refused", [(2, 1, True), (1, 1, False), (0.5, 2, False),
                                                     (1.5, 1.25, True)])
def test_cpu_guarantee_at_most_the_limit(tmp_path, guarantee, limit, refused):
    lines = rule_lines(tmp_path, f"resources: {{cpu_guarantee: {guarantee}, cpu_limit: {limit}}}\n")
    assert lines == ([f"config/classroom.yaml:1: resources.cpu_guarantee: found {guarantee} "
                      f"({'an integer' if isinstance(guarantee, int) else 'a number'}); expected at most "
                      f"resources.cpu_limit ({limit})"] if refused else [])


@pytest.mark.parametrize("guarantee,limit,refused", [
    ("3G", "2G", True), ("2048M", "2G", False),  # the same bytes in other words
    ("2049M", "2G", True), ("1G", "1073741823", True), ("1G", "1073741824", False),
    ("1.5G", "1610612736", False), ("512K", "1M", False)])
def test_memory_guarantee_at_most_the_limit_in_bytes(tmp_path, guarantee, limit, refused):
    lines = rule_lines(tmp_path, f"resources: {{memory_guarantee: '{guarantee}', memory_limit: '{limit}'}}\n")
    shown_limit = limit if limit[-1] in "KMGT" else int(limit)  # digits are read as a number of bytes
    assert lines == ([f"config/classroom.yaml:1: resources.memory_guarantee: found '{guarantee}' (text); "
                      f"expected at most resources.memory_limit ({shown_limit})"] if refused else [])


def test_names_are_unique_per_file_and_the_first_is_named(tmp_path):
    courses = COURSES + "  - {name: stats, repo: https://h.example/s.git, instructors: [bob]}\n" + \
        "  - {name: intro, repo: https://h.example/i2.git, instructors: [bob]}\n"
    data = DATA + "  - {name: flights, source: gs://bucket/other}\n"
    assert rule_lines(tmp_path, courses=courses, data=data) == [
        "config/courses.yaml:4: courses[2].name: found 'intro' (text) again; expected a unique course name "
        "('intro' is already courses[0])",
        "config/data.yaml:3: datasets[1].name: found 'flights' (text) again; expected a unique dataset name "
        "('flights' is already datasets[0])"]


def test_dataset_courses_must_be_defined(tmp_path):
    data = "datasets:\n  - {name: a, source: gs://bucket/a, courses: [intro]}\n  - {name: b, source: gs://bucket/b, " \
           "courses: [intro, nope, other]}\n"
    assert rule_lines(tmp_path, data=data) == [
        "config/data.yaml:3: datasets[1].courses[1]: found 'nope' (text); expected a course of courses.yaml (intro)",
        "config/data.yaml:3: datasets[1].courses[2]: found 'other' (text); expected a course of courses.yaml "
        "(intro)"]
    two = COURSES + "  - {name: algebra, repo: https://h.example/a.git, instructors: [bob]}\n"
    assert rule_lines(tmp_path, courses=two, data=data)[0].endswith("a course of courses.yaml (algebra, intro)")


def test_dataset_courses_when_courses_yaml_did_not_load(tmp_path):
    problems = Problems("config")
    data = load_text("datasets:\n  - {name: a, source: gs://bucket/a, courses: [intro]}\n")
    docs = {"classroom.yaml": None, "data.yaml": check_file("data.yaml", data, problems)}
    rules.check_all(docs, {"data.yaml": data}, problems, tmp_path)
    assert problems.lines == []  # courses.yaml's own problems say what is wrong


def test_local_dataset_source_must_exist(tmp_path):
    (tmp_path / "flights").mkdir()
    (tmp_path / "one.csv").write_text("a,b\n")
    data = ("datasets:\n  - {name: a, source: flights}\n  - {name: b, source: one.csv}\n"
            f"  - {{name: c, source: '{tmp_path}/flights'}}\n  - {{name: d, source: missing}}\n"
            "  - {name: e, source: https://h.example/r.git}\n")
    assert rule_lines(tmp_path, data=data) == [
        "config/data.yaml:5: datasets[3].source: found 'missing' (text), no such file or directory; expected an "
        f"existing path (relative paths start at {tmp_path})"]


def test_local_path_of_the_wrong_kind(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    data = "datasets:\n  - {name: a, source: pipe}\n  - {name: b, source: file/below}\n"
    assert rule_lines(tmp_path, data=data) == [
        "config/data.yaml:2: datasets[0].source: found 'pipe' (text), which is a FIFO (named pipe); expected a "
        "regular file or a directory",
        "config/data.yaml:3: datasets[1].source: found 'file/below' (text), which cannot be read (Not a "
        f"directory); expected a regular file or a directory this user can read (relative paths start at "
        f"{tmp_path})"]
    assert rule_lines(tmp_path, "build: {ca_bundle: dir}\n") == [
        "config/classroom.yaml:1: build.ca_bundle: found 'dir' (text), which is a directory; expected a "
        "regular file"]
    assert rule_lines(tmp_path, "build: {ca_bundle: file}\n") == []


def test_home_relative_paths_start_at_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "ca.pem").write_text("x")
    assert rule_lines(tmp_path, "build: {ca_bundle: ~/ca.pem}\n", project_dir=tmp_path / "elsewhere") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes every file")
def test_unreadable_local_path(tmp_path):
    (tmp_path / "secret.pem").write_text("x")
    (tmp_path / "secret.pem").chmod(0)
    assert rule_lines(tmp_path, "build: {ca_bundle: secret.pem}\n") == [
        "config/classroom.yaml:1: build.ca_bundle: found 'secret.pem' (text), which cannot be read "
        "(permission denied); expected a regular file this user can read"]


def test_state_file_where_doit_can_keep_it(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "old.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    expected = f"a file path whose directory exists or can be made (relative paths start at {tmp_path})"
    assert rules.state_file_problem("state/old.json", tmp_path) is None
    assert rules.state_file_problem("state/new/deeper/s.json", tmp_path) is None
    assert rules.state_file_problem("state", tmp_path) == ("'state' (text), which is a directory", expected)
    assert rules.state_file_problem("state/", tmp_path) == (
        "'state/' (text)", "a file path (not starting with '-', each part at most 255 bytes, at most 4095 bytes "
        "in all), naming a file")
    assert rules.state_file_problem("-state", tmp_path)[1].endswith(", naming a file")
    assert rules.state_file_problem("file/s.json", tmp_path) == (
        f"'file/s.json' (text): {tmp_path}/file is a regular file, not a directory", expected)
    assert rules.state_file_problem("file/a/s.json", tmp_path) == (
        f"'file/a/s.json' (text): {tmp_path}/file is a regular file, not a directory", expected)


def test_state_file_rule_reports_on_its_key(tmp_path):
    (tmp_path / "state").mkdir()
    assert rule_lines(tmp_path, "state: {dep_file: state}\n") == [
        "config/classroom.yaml:1: state.dep_file: found 'state' (text), which is a directory; expected a file "
        f"path whose directory exists or can be made (relative paths start at {tmp_path})"]


def test_state_file_through_a_loop_of_links(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    found, expected = rules.state_file_problem("loop/s.json", tmp_path)
    assert found.startswith("'loop/s.json' (text)") and "Too many levels of symbolic links" in found
    assert expected.startswith("a file path whose directory exists")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_state_file_in_a_directory_this_user_cannot_write(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert rules.state_file_problem("ro/s.json", tmp_path)[0] == (
        f"'ro/s.json' (text): {tmp_path}/ro is not writable by this user")


def test_rules_survive_documents_that_failed_their_schema(tmp_path):
    # a document that failed its schema may have any shape: the rules skip what they cannot read
    # and report only what is missing for the keys they can read
    missing = "found nothing (null); expected"
    gke = {"profile": "gke", "gcp": ["x"], "images": {"registry": 5}, "buckets": "gs://x", "hub": {"tls": None},
           "resources": {"cpu_guarantee": True, "cpu_limit": False, "memory_guarantee": "x", "memory_limit": None}}
    shapes = [(gke, ["gcp.project", "gcp.cluster", "hub.domain"]),
              ({"auth": {"type": "ldap", "ldap": {"port": True, "tls_strategy": "on_connect"}}},
               ["auth.ldap.server", "auth.ldap.bind_dn_templates"]),
              ({"resources": ["cpu"]}, []), ({"state": {"dep_file": 3}}, []), ({"build": {"ca_bundle": ""}}, []),
              ({"auth": {"type": "dummy", "dummy_trial": None}, "profile": "gke", "gcp": {"project": "p-1234",
                "cluster": "c"}, "hub": {"domain": "h.example.edu"}, "images": {"registry": "r.example.edu/x"}}, [])]
    for classroom, keys in shapes:
        problems = Problems("config")
        docs = {"classroom.yaml": classroom, "courses.yaml": {"courses": [None, {"name": 3}, "x"]},
                "data.yaml": {"datasets": [None, {"source": 3, "courses": "intro"}, {"courses": [1, "intro"]}]}}
        rules.check_all(docs, {name: None for name in docs}, problems, tmp_path)
        assert [line.split(f": {missing}")[0] for line in problems.lines[:-1]] == [
            f"config/classroom.yaml: {key}" for key in keys]
        # no course has a name: none can be named
        assert problems.lines[-1] == ("config/data.yaml: datasets[2].courses[1]: found 'intro' (text); expected a "
                                      "course of courses.yaml (none defined)")


def test_a_list_where_the_tls_strategy_belongs_is_no_crash(tmp_path):
    problems = Problems("config")
    docs = {"classroom.yaml": {"auth": {"type": "ldap", "ldap": {"port": 389, "tls_strategy": ["on_connect"]}}}}
    rules.check_all(docs, {"classroom.yaml": None}, problems, tmp_path)
    # no traceback, and no line about the port: the schema has said what is wrong with the strategy
    assert not [line for line in problems.lines if "auth.ldap.port" in line], problems.lines


GKE = ("profile: gke\nhub: {domain: hub.example.edu}\ngcp: {project: uni-ds1, cluster: c}\n"
       "buckets: {charts: gs://c-b, data: gs://d-b}\nimages: {registry: eu.gcr.io/p}\n")


def test_gke_needs_a_registry_and_says_why(tmp_path):
    text = "auth: {dummy_trial: true}\n" + GKE.replace("images: {registry: eu.gcr.io/p}\n", "")
    assert rule_lines(tmp_path, text) == [
        "config/classroom.yaml: images.registry: found an empty string; expected an image repository prefix "
        "naming its registry host, such as localhost:5000/classroom or us-central1-docker.pkg.dev/PROJECT/"
        "REPOSITORY (or \"\" to keep images in the local Docker Engine) (required by profile: gke, whose "
        "cluster pulls from it)"]


def test_gke_names_the_charts_bucket_on_disk(tmp_path):
    text = "auth: {dummy_trial: true}\n" + GKE.replace("charts: gs://c-b", "charts: file:///srv/charts")
    assert rule_lines(tmp_path, text) == [
        "config/classroom.yaml:5: buckets.charts: found 'file:///srv/charts' (text); expected a gs://BUCKET-NAME "
        "URL (profile: gke has no bucket on disk)"]


def test_ldap_needs_a_server(tmp_path):
    assert rule_lines(tmp_path, "auth:\n  type: ldap\n  ldap: {bind_dn_templates: ['uid={username},dc=x']}\n") == [
        f"config/classroom.yaml:3: auth.ldap.server: found an empty string; expected {HOSTNAME} (required by "
        "auth.type: ldap)"]


def test_a_search_user_needs_a_base_and_an_attribute(tmp_path):
    text = "auth:\n  type: ldap\n  ldap: {server: l.example.edu, search_user: 'cn=r,dc=x', user_attribute: ''}\n"
    assert rule_lines(tmp_path, text) == [
        "config/classroom.yaml:3: auth.ldap.user_search_base: found an empty string; expected an LDAP DN such as "
        "ou=people,dc=example,dc=edu (required by auth.ldap.search_user: each login is looked up under this base)",
        "config/classroom.yaml:3: auth.ldap.user_attribute: found an empty string; expected an LDAP attribute name "
        "such as uid or sAMAccountName (required by auth.ldap.search_user: the login is matched against this "
        "attribute)"]


@pytest.mark.parametrize("extra,public", [
    ("", "profile: gke"),
    ("  tls: {mode: ingress, email: a@b.example.edu}\n", "profile: gke and hub.tls.mode: ingress")])
def test_dummy_login_on_gke(tmp_path, extra, public):
    text = GKE.replace("hub: {domain: hub.example.edu}\n", "") + "hub:\n  domain: hub.example.edu\n" + extra
    assert rule_lines(tmp_path, "auth: {type: dummy}\n" + text) == [
        f"config/classroom.yaml:1: auth.type: found 'dummy' (text); expected ldap on a public deployment ({public}): "
        "dummy login lets any password in; set auth.dummy_trial: true only for a throwaway trial"]


def test_dummy_login_behind_ingress(tmp_path):
    text = "auth: {type: dummy}\nhub:\n  domain: hub.example.edu\n  tls: {mode: ingress, email: a@b.example.edu}\n"
    assert rule_lines(tmp_path, text)[0].endswith("public deployment (hub.tls.mode: ingress): dummy login lets any "
                                                  "password in; set auth.dummy_trial: true only for a throwaway trial")


def test_get_reads_only_what_is_there():
    assert rules._get({"a": [1, 2]}, "a", 1) == 2
    assert rules._get({"a": [1, 2]}, "a", 2) is None
    assert rules._get({"a": {0: "x"}}, "a", 0) is None  # an index into a mapping: not a list
    assert rules._get({"a": "text"}, "a", "b") is None
    assert rules._get(None, "a") is None


def test_values_the_schema_refused_are_no_crash_and_no_second_line(tmp_path):
    shapes = [{"auth": {"type": "ldap", "ldap": {"server": "l", "bind_dn_templates": ["t"], "port": 389,
                                                 "tls_strategy": "sometimes"}}},
              {"resources": {"cpu_guarantee": "x", "cpu_limit": 1}},
              {"resources": {"cpu_guarantee": 1, "cpu_limit": "x"}},
              {"resources": {"memory_guarantee": "x", "memory_limit": "1G"}},
              {"resources": {"memory_guarantee": "1G", "memory_limit": "x"}},
              {"resources": {"memory_guarantee": "1G", "memory_limit": 0}}]
    for classroom in shapes:
        problems = Problems("config")
        rules.check_all({"classroom.yaml": classroom}, {"classroom.yaml": None}, problems, tmp_path)
        assert problems.lines == [], classroom


def test_memory_of_one_byte(tmp_path):
    problems = Problems("config")
    rules.check_all({"classroom.yaml": {"resources": {"memory_guarantee": 2, "memory_limit": 1}}},
                    {"classroom.yaml": None}, problems, tmp_path)
    assert problems.lines == ["config/classroom.yaml: resources.memory_guarantee: found 2 (an integer); expected at "
                              "most resources.memory_limit (1)"]


def test_a_name_that_is_no_text_does_not_stop_the_duplicate_search(tmp_path):
    problems = Problems("config")
    courses = {"courses": [{"name": 3}, {"name": "a"}, {"name": "a"}]}
    rules.check_all({"courses.yaml": courses}, {"courses.yaml": None}, problems, tmp_path)
    assert problems.lines == ["config/courses.yaml: courses[2].name: found 'a' (text) again; expected a unique course "
                              "name ('a' is already courses[1])"]
