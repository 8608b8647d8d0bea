"""The image stage against the real Docker Engine and registry, through the real doit.

These use small stand-in images (tests/integration/images) with the same
build args and staging as the real ones, so that each scenario takes seconds;
test_real_images.py builds the real images/.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).parent / "images"
ALL = {"image:base", "image:notebook", "image:local", "image:db"}


def _ran(result) -> set[str]:
    """Tasks doit executed (`.  name`), as opposed to found up to date (`-- name`)."""
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)$", result.stdout, re.M)}


def _built(result) -> set[str]:
    # the reporter's line after each executed image task (tasks/run/reporter.py)
    return {m.group(1) for m in re.finditer(r"^   image:(\S+): (?:built|pushed) ", result.stdout, re.M)}


@pytest.fixture
def classroom(project, registry):
    """A project whose images are the stand-ins, pushed under a registry path of its own."""
    shutil.copytree(IMAGES, project.root / "images")
    prefix = f"{registry}/t{uuid.uuid4().hex[:10]}"
    text = (project.config / "classroom.yaml").read_text()
    project.write("classroom.yaml", text.replace('registry: ""', f'registry: "{prefix}"'))
    project.prefix = prefix
    first = project.doit("image", check=True)
    assert _ran(first) >= ALL and _built(first) == {"base", "notebook", "local", "db"}
    return project


def test_no_change_runs_nothing(classroom):
    result = classroom.doit("image", check=True)
    assert _ran(result) == set()


def test_base_dockerfile_edit_rebuilds_base_and_its_children(classroom):
    dockerfile = classroom.root / "images" / "base" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "ENV COURSE_YEAR=2026\n")
    result = classroom.doit("image", check=True)
    assert _ran(result) == {"image:base", "image:notebook", "image:local"}
    assert _built(result) == {"base", "notebook", "local"}


def test_courses_edit_rebuilds_the_images_that_bake_courses(classroom):
    courses = classroom.config / "courses.yaml"
    courses.write_text(courses.read_text().replace("ref: main", "ref: fall-2026"))
    result = classroom.doit("image", check=True)
    assert _ran(result) == {"image:notebook", "image:local"}
    assert _built(result) == {"notebook", "local"}


def test_db_dockerfile_edit_rebuilds_db_only(classroom):
    dockerfile = classroom.root / "images" / "db" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("/opt/init.sql", "/opt/init-db.sql"))
    result = classroom.doit("image", check=True)
    assert _ran(result) == {"image:db"} and _built(result) == {"db"}


def test_edits_that_change_nothing_build_nothing(classroom):
    base = classroom.root / "images" / "base"
    # a comment in the Dockerfile does not count (BuildKit ignores it): nothing even runs
    (base / "Dockerfile").write_text((base / "Dockerfile").read_text() + "# why: a comment\n")
    assert _ran(classroom.doit("image", check=True)) == set()
    # a lost state: base re-checks its tag, finds it in the registry, and says so in one line
    # at every verbosity
    classroom.dep_file.unlink()
    for verbosity in ("0", "2"):
        result = classroom.doit("-v", verbosity, "image:base", check=True)
        assert _ran(result) == {"image:base"} and _built(result) == set()
        assert "   image:base: nothing built: " in result.stdout and "is already in the registry" in result.stdout
        classroom.dep_file.unlink()
    assert _built(classroom.doit("image", check=True)) == set()
    # mtime only, an ignored file, a YAML comment: nothing even runs
    (base / "hello.txt").touch()
    (base / "notes" / "draft.txt").write_text("ignored by .dockerignore\n")
    (base / "CHANGES.md").write_text("ignored by .dockerignore\n")
    courses = classroom.config / "courses.yaml"
    courses.write_text("# a comment\n" + courses.read_text())
    assert _ran(classroom.doit("image", check=True)) == set()


def test_admin_users_edit_touches_no_image(classroom):
    text = (classroom.config / "classroom.yaml").read_text()
    classroom.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]"))
    assert _ran(classroom.doit("image", check=True)) == set()


def test_wiped_state_with_images_in_the_registry_builds_nothing(classroom, docker_client):
    classroom.dep_file.unlink()
    for image in ("base", "notebook", "local", "db"):
        for tagged in docker_client.images.list(name=f"{classroom.prefix}/{image}"):
            docker_client.images.remove(tagged.id, force=True)
    result = classroom.doit("-n", "2", "image", check=True)
    assert _ran(result) >= ALL
    assert _built(result) == set()
    assert result.stdout.count("is already in the registry") == 4


def test_pull_back_by_digest(classroom, docker_client):
    import json
    state = json.loads(classroom.dep_file.read_text())
    for image in ("base", "notebook", "local", "db"):
        values = state[f"image:{image}"]["_values_:"]
        assert values["ref"].startswith(f"{classroom.prefix}/{image}:")
        pulled = docker_client.images.pull(f"{values['ref'].rsplit(':', 1)[0]}@{values['digest']}")
        assert pulled.id
    notebook = state["image:notebook"]["_values_:"]["ref"]
    out = docker_client.containers.run(notebook, ["cat", "/etc/classroom/courses.json", "/opt/hello.txt"],
                                       remove=True, network_mode="none").decode()
    assert '"name": "data-science-101"' in out and "hello from base" in out


def test_same_inputs_same_tag_in_another_checkout(classroom, tmp_path):
    import json

    from tests.conftest import Project
    other = Project(tmp_path / "elsewhere")
    shutil.copytree(classroom.root / "config", other.config)
    shutil.copytree(classroom.root / "images", other.root / "images")
    result = other.doit("image", check=True)
    assert _built(result) == set()
    mine = json.loads(classroom.dep_file.read_text())
    theirs = json.loads(other.dep_file.read_text())
    for image in ("base", "notebook", "local", "db"):
        assert mine[f"image:{image}"]["_values_:"]["tag"] == theirs[f"image:{image}"]["_values_:"]["tag"]


def test_parallel_builds_of_independent_images(classroom):
    for name in ("base", "db"):
        dockerfile = classroom.root / "images" / name / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + f"LABEL edu.example.rev={uuid.uuid4().hex}\n")
    result = classroom.doit("-n", "2", "image", check=True)
    assert _built(result) == {"base", "notebook", "local", "db"}
    assert classroom.doit("image", check=True).stdout.count(".  ") == 0


def test_failing_build_names_the_image_and_marks_nothing_done(classroom):
    dockerfile = classroom.root / "images" / "db" / "Dockerfile"
    good = dockerfile.read_text()
    dockerfile.write_text(good + "RUN exit 3\n")
    result = classroom.doit("image")
    assert result.returncode != 0
    assert "image:db: build of image db failed (exit 1)" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    dockerfile.write_text(good)  # the earlier image is intact and still current
    assert _built(classroom.doit("image", check=True)) == set()


def test_missing_dockerfile_is_a_clear_failure(classroom):
    (classroom.root / "images" / "db" / "Dockerfile").unlink()
    result = classroom.doit("image:db")
    assert result.returncode != 0
    assert f"image:db: no Dockerfile at {classroom.root / 'images' / 'db' / 'Dockerfile'}" in result.stdout


def test_unreachable_registry_is_a_clear_failure(classroom):
    text = (classroom.config / "classroom.yaml").read_text()
    classroom.write("classroom.yaml", re.sub(r'registry: "[^"]+"', 'registry: "127.0.0.1:9/nothing"', text))
    result = classroom.doit("image:db")
    assert result.returncode != 0
    assert "image:db: registry 127.0.0.1:9 is unreachable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_ca_bundle_is_a_build_secret_never_a_layer(classroom, docker_client):
    import json
    text = (classroom.config / "classroom.yaml").read_text()
    assert "ca_bundle: /etc/ssl/certs/ca-certificates.crt" in text  # the committed default
    # the bundle is how a build reaches the network, not what it builds: the tag ignores it
    classroom.write("classroom.yaml", text.replace("ca_bundle: /etc/ssl/certs/ca-certificates.crt",
                                                   'ca_bundle: ""'))
    assert _ran(classroom.doit("image:base", check=True)) == set()
    classroom.write("classroom.yaml", text)
    dockerfile = classroom.root / "images" / "base" / "Dockerfile"
    # change a step before the RUN, or BuildKit reuses its cached result (secrets are not cache keys)
    dockerfile.write_text(dockerfile.read_text().replace("/opt/hello.txt", "/opt/hello-ca.txt"))
    result = classroom.doit("image:base", check=True)
    assert _built(result) == {"base"}
    ref = json.loads(classroom.dep_file.read_text())["image:base"]["_values_:"]["ref"]
    assert docker_client.containers.run(ref, ["cat", "/opt/ca-seen"], remove=True, network_mode="none") == b"ca bundle: yes\n"
    assert docker_client.containers.run(ref, ["sh", "-c", "ls -A /run/secrets 2>/dev/null; true"],
                                        remove=True, network_mode="none") == b""
    history = json.dumps([layer for layer in docker_client.api.history(ref)])
    assert "BEGIN CERTIFICATE" not in history


@pytest.fixture
def locked_registry(tmp_path, dev_services):
    """A second real registry that demands a password we do not have."""
    import crypt  # bcrypt through libxcrypt: the registry's htpasswd wants $2b$ hashes
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request
    (tmp_path / "htpasswd").write_text(f"teacher:{crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "registry.yml").write_text(f"""version: 0.1
storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}
http: {{addr: 127.0.0.1:{port}, secret: test-only}}
auth: {{htpasswd: {{realm: classroom-test, path: {tmp_path / 'htpasswd'}}}}}
""")
    process = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except OSError:
                assert time.monotonic() < deadline, "the locked registry did not start"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_registry_auth_failure_is_a_clear_failure(classroom, locked_registry):
    text = (classroom.config / "classroom.yaml").read_text()
    classroom.write("classroom.yaml", re.sub(r'registry: "[^"]+"', f'registry: "{locked_registry}/c"', text))
    result = classroom.doit("image:db")
    assert result.returncode != 0
    assert (f"image:db: registry {locked_registry} refused our credentials for {locked_registry}/c/db:"
            in result.stdout)
    assert f"log in with `docker login {locked_registry}`" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
