"""Secrets: generated once into a 0600 file, reused, never shown, never in doit's state."""

from __future__ import annotations

import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.secretstore import SECRETS, MissingSecret, SecretStore


def _values(project):
    lines = project.secrets_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_first_run_creates_0600_file_and_next_run_reuses_it(project):
    first = project.doit("secrets", check=True)
    assert "generated proxy_secret_token, hub_cookie_secret, db_root_password" in first.stdout
    mode = stat.S_IMODE(project.secrets_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(project.secrets_file.parent.stat().st_mode) == 0o700
    values = _values(project)
    assert set(values) == {"proxy_secret_token", "hub_cookie_secret", "db_root_password"}
    # 32 random bytes each, as lowercase hex; three separate draws, not one value three times
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in values.values()), "not 64 hex digits"
    assert len(set(values.values())) == 3

    os.remove(project.dep_file)  # even with doit's state gone, the secrets stay the same
    project.doit("secrets", check=True)
    assert _values(project) == values


def test_no_value_in_any_output_or_in_doit_state(project):
    outputs = [project.doit("--verbosity", "2", "secrets", check=True),
               project.doit("--verbosity", "2", "secrets", check=True),
               project.doit("info", "secrets"),
               project.doit("list", "--all", "--status"),
               project.doit("dumpdb")]
    values = _values(project).values()
    text = "".join(r.stdout + r.stderr for r in outputs) + project.dep_file.read_text()
    assert "secrets: 3 present" in text
    for value in values:
        assert value not in text


def test_environment_wins_and_is_not_written(project):
    env = project.env(CLASSTOOLS_DB_ROOT_PASSWORD="from-the-environment-123")
    project.doit("secrets", env=env, check=True)
    assert "db_root_password" not in _values(project)
    assert SecretStore(project.secrets_file, environ={"CLASSTOOLS_DB_ROOT_PASSWORD": "x"}).get(
        "db_root_password") == "x"


def test_ldap_bind_password_is_never_generated(project):
    project.write("classroom.yaml", "auth:\n  type: ldap\n  ldap:\n    server: ldap.example.edu\n"
                  "    bind_dn_templates: ['uid={username},dc=example,dc=edu']\n"
                  "    search_user: cn=hub,dc=example,dc=edu\n"
                  "    user_search_base: ou=people,dc=example,dc=edu\n")
    result = project.doit("secrets")
    assert result.returncode != 0
    assert "CLASSTOOLS_LDAP_BIND_PASSWORD" in result.stdout + result.stderr
    assert "ldap_bind_password" not in _values(project)

    ok = project.doit("secrets", env=project.env(CLASSTOOLS_LDAP_BIND_PASSWORD="s3cret-bind"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "s3cret-bind" not in ok.stdout + ok.stderr + project.dep_file.read_text()


def test_concurrent_first_use_generates_one_value(tmp_path):
    path = tmp_path / "s" / "secrets.env"
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: SecretStore(path, environ={}).get("hub_cookie_secret"), range(16)))
    assert len(set(got)) == 1


def test_unreadable_file_message_does_not_quote_it(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("proxy_secret_token=abcdef\nhub_cookie_secret: abcdef\n")
    with pytest.raises(MissingSecret) as caught:
        SecretStore(path, environ={}).get("proxy_secret_token")
    assert "abcdef" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_every_secret_has_a_purpose_and_an_env_var():
    for secret in SECRETS.values():
        assert secret.purpose and secret.env_var == "CLASSTOOLS_" + secret.name.upper()
