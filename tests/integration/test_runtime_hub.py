"""Logging in to the real hub of the rendered release: who gets in, who is admin, which groups.

The hub is JupyterHub 5.5 with the image's exact libraries, running the z2jh
4.4.0 chart's own jupyterhub_config.py on the hub ConfigMap and Secret that
`helm template` made from the packaged chart and the release's values
(tests/integration/runtime/hub.py).  People log in through the hub's own
login form, behind configurable-http-proxy, against Debian's slapd over
StartTLS or LDAPS with a test CA (runtime/ldap.py).

Classroom (runtime/fixtures.py): intro = prof + alice, bob; stats = prof2 +
carol; admin_users = dean; mallory is in the directory but in no course.
"""

from __future__ import annotations

import pytest

from tasks import contract
from tests.integration.runtime.fixtures import ADMINS, COURSES, OUTSIDER, ldap_auth
from tests.integration.runtime.hub import LoginFailed

pytestmark = pytest.mark.integration

INSTRUCTORS = {"prof", "prof2"}
STUDENTS = {"alice", "bob", "carol"}


def _logs_in(hub, server, uid) -> dict:
    return hub.login(uid, server.password(uid)).whoami()


def _refused(hub, server, uid, password=None):
    with pytest.raises(LoginFailed):
        hub.login(uid, password or server.password(uid))


@pytest.fixture(scope="module")
def starttls_hub(runtime_classroom, ldap_server):
    """auth.ldap with StartTLS and no port: ldapauthenticator's choice for before_bind is 389."""
    hub = runtime_classroom.start({"auth": ldap_auth(ldap_server, "before_bind")})
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def admin_token(starttls_hub, ldap_server) -> str:
    """An API token of the one admin (auth.admin_users), made through the hub's own API."""
    session = starttls_hub.login(ADMINS[0], ldap_server.password(ADMINS[0]))
    assert session.whoami()["admin"] is True, "auth.admin_users must make an admin"
    return session.new_token()


def test_hub_venv_has_exactly_the_hub_image_pins(hub_venv):
    from tests.integration.runtime import hubenv
    pins = dict(pin.split("==") for pin in hubenv.HUB_PINS)
    assert hubenv.versions(hub_venv, *pins) == pins


# ---- StartTLS on the port by strategy (defect 4: the port was always 636) -------------------

def test_starttls_instructor_and_student_log_in(starttls_hub, ldap_server):
    assert _logs_in(starttls_hub, ldap_server, "prof")["name"] == "prof"
    assert _logs_in(starttls_hub, ldap_server, "alice")["name"] == "alice"


def test_starttls_outsider_and_wrong_password_are_refused(starttls_hub, ldap_server):
    _refused(starttls_hub, ldap_server, OUTSIDER)        # a valid LDAP account, in no course
    _refused(starttls_hub, ldap_server, "alice", password="not-her-password")


def test_admins_are_exactly_admin_users(starttls_hub, ldap_server, admin_token):
    """Defect 9's other half: instructors are graders, not hub admins (admin_access would
    open every student's server to them)."""
    for uid in INSTRUCTORS | {"alice"}:
        _logs_in(starttls_hub, ldap_server, uid)
    status, users = starttls_hub.api("/users", admin_token)
    assert status == 200, users
    admins = {u["name"] for u in users if u["admin"]}
    assert admins == set(ADMINS)
    assert not _logs_in(starttls_hub, ldap_server, "prof")["admin"]


@pytest.mark.parametrize("course", COURSES, ids=lambda c: c["name"])
def test_course_groups_have_the_configured_members(starttls_hub, admin_token, course):
    name = course["name"]
    status, formgrade = starttls_hub.api(f"/groups/{contract.formgrade_group(name)}", admin_token)
    assert status == 200, formgrade
    status, nbgrader = starttls_hub.api(f"/groups/{contract.nbgrader_group(name)}", admin_token)
    assert status == 200, nbgrader
    instructors, students = set(course["instructors"]), set(course["students"])
    # formgrade-<c>: the course's instructors and its grader account, nobody else
    assert set(formgrade["users"]) == instructors | {contract.grader_user(name)}
    # nbgrader-<c>: who takes part in the course
    assert instructors | students <= set(nbgrader["users"])
    assert not (set(nbgrader["users"]) - instructors - students - {contract.grader_user(name)})


def test_users_are_only_the_configured_people(starttls_hub, admin_token):
    status, users = starttls_hub.api("/users", admin_token)
    assert status == 200, users
    names = {u["name"] for u in users}
    assert OUTSIDER not in names
    assert names <= INSTRUCTORS | STUDENTS | set(ADMINS) | {contract.grader_user(c["name"]) for c in COURSES}


# ---- LDAPS ---------------------------------------------------------------------------------

def test_ldaps_instructor_and_student_log_in_outsider_does_not(runtime_classroom, ldap_server):
    hub = runtime_classroom.start({"auth": ldap_auth(ldap_server, "on_connect")})
    try:
        assert _logs_in(hub, ldap_server, "prof2")["name"] == "prof2"
        assert _logs_in(hub, ldap_server, "carol")["name"] == "carol"
        _refused(hub, ldap_server, OUTSIDER)
    finally:
        hub.stop()


def test_ldaps_server_of_an_unknown_ca_is_refused(runtime_classroom, ldap_server, tmp_path):
    """A man in the middle with a certificate the hub does not trust must not get passwords:
    the hub must verify the LDAP server's certificate, which ldap3 does not do unless told to
    (ldapauthenticator 2.0.2 passes LDAPAuthenticator.tls_kwargs to ldap3.Tls, whose default is
    validate=CERT_NONE).  ldapauthenticator turns a failed handshake into a hub error, not a
    refused login: what matters is that nobody gets in and the hub says why."""
    from tests.integration.runtime.ldap import make_ca
    other_ca, _, _ = make_ca(tmp_path / "other-ca", "unrelated")
    hub = runtime_classroom.start({"auth": ldap_auth(ldap_server, "on_connect")},
                                  hub_env={"SSL_CERT_FILE": str(other_ca)})
    try:
        with pytest.raises(AssertionError):   # LoginFailed, or the hub's error page
            hub.login("carol", ldap_server.password("carol"))
        assert "CERTIFICATE_VERIFY_FAILED" in hub.log(lines=400)
    finally:
        hub.stop()


# ---- the search-user path (defect 3) -------------------------------------------------------

def test_search_user_path_logs_in(runtime_classroom, ldap_server):
    """auth.ldap.search_user: the DN is found by a search (anonymous search is refused by this
    directory), bound with the bind password the chain takes from CLASSTOOLS_LDAP_BIND_PASSWORD."""
    auth = ldap_auth(ldap_server, "before_bind", search_user=ldap_server.search_user_dn,
                     user_search_base=ldap_server.people_dn, user_attribute="uid")
    auth["ldap"]["bind_dn_templates"] = []   # the DN can only come from the search
    hub = runtime_classroom.start({"auth": auth},
                                  env={"CLASSTOOLS_LDAP_BIND_PASSWORD": ldap_server.search_user.password})
    try:
        assert _logs_in(hub, ldap_server, "alice")["name"] == "alice"
        assert _logs_in(hub, ldap_server, "prof")["name"] == "prof"
        _refused(hub, ldap_server, OUTSIDER)
    finally:
        hub.stop()


# ---- a student removed from courses.yaml (defect 5) ----------------------------------------

@pytest.fixture(scope="module")
def redeployed(runtime_classroom, ldap_server):
    """bob logs in (the hub's db knows him, his browser has a session, he made an API token),
    then courses.yaml drops him and the chain redeploys: a new chart and values, the hub
    restarted on the same sqlite db.  (LDAPS, so that this shows defect 5 alone on the
    values of before, whose StartTLS port was wrong.)"""
    auth = {"auth": ldap_auth(ldap_server, "on_connect")}
    hub = runtime_classroom.start(auth)
    bob = hub.login("bob", ldap_server.password("bob"))
    assert bob.whoami()["name"] == "bob"
    token = bob.new_token()
    # bob leaves the classroom; alice moves from intro to stats (she stays a user)
    moved = [dict(c, students=[s for s in c["students"] if s not in ("bob", "alice")]
                  + (["alice"] if c["name"] == "stats" else [])) for c in COURSES]
    runtime_classroom.redeploy(hub, auth, courses=moved)
    yield hub, bob, token
    hub.stop()


def test_removed_student_cannot_log_in_after_redeploy(redeployed, ldap_server):
    hub, _, _ = redeployed
    _refused(hub, ldap_server, "bob")
    assert _logs_in(hub, ldap_server, "alice")["name"] == "alice"


def test_removed_student_loses_his_session_and_tokens(redeployed):
    """Access is removed, not only new logins: the browser session he had and the tokens he
    made stop working (the cookie secret stays the same across releases)."""
    hub, bob, token = redeployed
    with pytest.raises(AssertionError):
        bob.whoami()
    status, _ = hub.api("/user", token)
    assert status in (401, 403, 404)


def test_removed_student_leaves_the_course_groups_after_redeploy(redeployed, ldap_server):
    """A student moved to another course must not keep the old course's assignments:
    JupyterHub's load_groups only ever adds members."""
    hub, _, _ = redeployed
    token = hub.login(ADMINS[0], ldap_server.password(ADMINS[0])).new_token()
    status, group = hub.api(f"/groups/{contract.nbgrader_group('intro')}", token)
    assert status == 200, group
    assert "bob" not in group["users"]


def test_a_student_moved_to_another_course_leaves_the_old_group(redeployed, ldap_server):
    """alice stays a user (she takes stats now), so only the groups can keep her out of intro."""
    hub, _, _ = redeployed
    token = hub.login(ADMINS[0], ldap_server.password(ADMINS[0])).new_token()
    groups = {}
    for course in ("intro", "stats"):
        status, group = hub.api(f"/groups/{contract.nbgrader_group(course)}", token)
        assert status == 200, group
        groups[course] = group["users"]
    assert "alice" not in groups["intro"] and "alice" in groups["stats"]


# ---- dummy login (local trials) ------------------------------------------------------------

def test_dummy_mode_logs_in_locally(runtime_classroom):
    hub = runtime_classroom.start({"auth": {"type": "dummy", "admin_users": ADMINS}})
    try:
        assert hub.login("alice", "any password").whoami()["name"] == "alice"
        assert hub.login("prof", "another").whoami()["admin"] is False
        with pytest.raises(LoginFailed):
            hub.login(OUTSIDER, "any password")   # allowed_users still decides who
    finally:
        hub.stop()
