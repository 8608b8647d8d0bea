"""What `doit render` masks: every secret value, and the secrets z2jh would invent at each render."""

from tasks.release.render import MARKER, generated_secrets, redacted


def test_every_leaf_becomes_the_marker_and_the_shape_stays():
    secret = {"jupyterhub": {"proxy": {"secretToken": "abc"}, "hub": {"cookieSecret": "00ff", "n": 3}},
              "classroom": {"db": {"rootPassword": "pw"}}, "keys": ["k1", "k2"]}
    assert redacted(secret) == {
        "jupyterhub": {"proxy": {"secretToken": MARKER}, "hub": {"cookieSecret": MARKER, "n": MARKER}},
        "classroom": {"db": {"rootPassword": MARKER}}, "keys": [MARKER, MARKER]}


def test_generated_secrets_cover_cryptkeeper_and_each_service_token():
    hub = generated_secrets(["sql-201", "ds-101"])["jupyterhub"]["hub"]
    assert hub["config"]["CryptKeeper"]["keys"] == [MARKER]
    assert hub["services"] == {"ds-101": {"apiToken": MARKER}, "sql-201": {"apiToken": MARKER}}
    assert "services" not in generated_secrets([])["jupyterhub"]["hub"]
