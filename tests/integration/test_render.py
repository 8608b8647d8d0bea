"""`doit render --out DIR`: the manifests `helm upgrade` would apply, from the real chain and the real z2jh chart.

The project is the committed config with the small test images (tests/integration/images)
and the real helm/classroom chart, packaged with the real z2jh 4.4.0 from ../shared/upstream.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from tasks.release.render import MARKER
from tests.integration.conftest import use_jupyterhub_chart

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
REPO = HERE.parents[1]


@pytest.fixture
def renderable(project, registry, jupyterhub_chart):
    shutil.copytree(HERE / "images", project.root / "images")
    shutil.copytree(REPO / "helm", project.root / "helm")
    text = (project.config / "classroom.yaml").read_text()
    text = text.replace('registry: ""', f'registry: "{registry}/r{uuid.uuid4().hex[:8]}"')
    project.write("classroom.yaml", use_jupyterhub_chart(text, jupyterhub_chart))
    return project


def _secrets(project) -> list[str]:
    lines = project.secrets_file.read_text().splitlines()
    return [line.split("=", 1)[1] for line in lines if "=" in line and not line.startswith("#")]


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_render_writes_the_hub_release_with_secrets_masked(renderable, tmp_path):
    out = tmp_path / "review"
    result = renderable.doit("render", "--out", str(out), check=True)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["classroom.yaml"], result.stdout
    text = (out / "classroom.yaml").read_text()
    docs = _docs(out / "classroom.yaml")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "hub") in kinds and ("Secret", "hub") in kinds
    for value in _secrets(renderable):
        assert value not in text, "a secret value reached the rendered file"
    hub_secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    decoded = {k: base64.b64decode(v).decode() for k, v in hub_secret["data"].items()}
    assert decoded["hub.config.JupyterHub.cookie_secret"] == MARKER
    assert decoded["hub.config.ConfigurableHTTPProxy.auth_token"] == MARKER


def test_render_is_the_same_bytes_every_time(renderable, tmp_path):
    renderable.doit("render", "--out", str(tmp_path / "a"), check=True)
    renderable.doit("render", "--out", str(tmp_path / "b"), check=True)
    assert (tmp_path / "a" / "classroom.yaml").read_bytes() == (tmp_path / "b" / "classroom.yaml").read_bytes()


def test_render_shows_a_values_edit(renderable, tmp_path):
    renderable.doit("render", "--out", str(tmp_path / "before"), check=True)
    text = (renderable.config / "classroom.yaml").read_text()
    renderable.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    renderable.doit("render", "--out", str(tmp_path / "after"), check=True)
    before, after = (_hub_config(tmp_path / name / "classroom.yaml") for name in ("before", "after"))
    assert before["Authenticator"]["admin_users"] == []
    assert after["Authenticator"]["admin_users"] == ["dean"]


def _hub_config(path: Path) -> dict:
    """hub.config as the hub reads it: z2jh keeps it in the hub Secret's values.yaml."""
    secret = next(d for d in _docs(path) if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))["hub"]["config"]


def test_render_without_out_says_how(renderable):
    result = renderable.doit("render")
    assert result.returncode != 0
    assert "doit render --out DIR" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_release_chart_writes_nothing(renderable, tmp_path):
    """TLS mode ingress adds cert-manager's and Traefik's releases, whose charts are not reachable here."""
    text = (renderable.config / "classroom.yaml").read_text()
    text = text.replace('domain: ""', "domain: hub.example.edu")
    text = text.replace("mode: none ", "mode: ingress ").replace('email: ""', "email: staff@example.edu")
    text = text.replace("dummy_trial: false", "dummy_trial: true")  # a public trial, knowingly
    renderable.write("classroom.yaml", text)
    out = tmp_path / "review"
    result = renderable.doit("render", "--out", str(out))
    assert result.returncode != 0
    assert "render: release cert-manager:" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing is written unless every release renders"
