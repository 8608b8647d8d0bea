"""The real images/ built by the real chain, then run: the checks a course's staff would make.

Slow on a cold machine (the base image installs the whole course stack from
PyPI: minutes, many more on a loaded machine); BuildKit's cache makes later
runs fast.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git(*args, cwd):
    subprocess.run(["git", "-c", "safe.directory=*", "-c", "user.name=Prof", "-c", "user.email=prof@example.edu", *args],
                   cwd=cwd, check=True, capture_output=True)


def _wait_http(url, seconds=120) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory):
    """A course repository on disk; the containers see it at the same path (read-only)."""
    repo = tmp_path_factory.mktemp("course") / "intro.git"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    (repo / "lab1.md").write_text("# Lab 1\nLoad the flights table.\n")
    _git("add", ".", cwd=repo)
    _git("commit", "-qm", "lab 1", cwd=repo)
    shutil.chown(repo.parent, 1000, 100)  # git in the container (uid 1000) refuses others' repos
    subprocess.run(["chown", "-R", "1000:100", str(repo)], check=True)
    return repo


@pytest.fixture(scope="module")
def real(tmp_path_factory, registry, course_repo):
    """A classroom of the real images/, built and pushed by `doit`."""
    from tests.conftest import Project
    project = Project(tmp_path_factory.mktemp("real") / "classroom")
    shutil.copytree(REPO / "config", project.config)
    shutil.copytree(REPO / "images", project.root / "images")
    shutil.copytree(REPO / "helm", project.root / "helm")
    text = (project.config / "classroom.yaml").read_text()
    text = text.replace('registry: ""', f'registry: "{registry}/real"')
    project.port = _free_port()
    text = text.replace("port: 8888", f"port: {project.port}")
    project.write("classroom.yaml", text)
    project.write("courses.yaml", f"""courses:
  - name: intro
    repo: file://{course_repo}
    instructors: [prof]
""")
    # A cold build of the four images on a busy 2-core machine takes many minutes: no fixed time
    # limit, doit is stopped only when it prints nothing for a long while (Project.doit).
    result = project.doit("--verbosity", "2", check=True)
    project.first_output = result.stdout + result.stderr
    project.values = {name: json.loads(project.dep_file.read_text())[f"image:{name}"]["_values_:"]
                      for name in ("base", "notebook", "local", "db")}
    return project


def test_all_four_are_in_the_registry_and_pull_back_by_digest(real, docker_client):
    for name, values in real.values.items():
        repository = values["ref"].rsplit(":", 1)[0]
        assert docker_client.images.pull(f"{repository}@{values['digest']}").id


def test_notebook_pulls_the_course_and_keeps_a_students_edit(real, docker_client, course_repo):
    image = real.values["notebook"]["ref"]
    home = f"classtools-test-home-{uuid.uuid4().hex[:8]}"
    mounts = {home: {"bind": "/home/jovyan", "mode": "rw"},
              str(course_repo): {"bind": str(course_repo), "mode": "ro"}}
    port = _free_port()

    def start():
        return docker_client.containers.run(
            image, ["classroom-start", "jupyter", "server", "--ip=0.0.0.0", "--port=8888",
                    "--ServerApp.token=test-token"],
            detach=True, volumes=mounts, ports={"8888/tcp": ("127.0.0.1", port)},
            environment={"JUPYTERHUB_USER": "student1"})

    container = start()
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/api/status?token=test-token") == 200
        assert "# Lab 1" in container.exec_run(["cat", "/home/jovyan/intro/lab1.md"]).output.decode()
        edit = container.exec_run(["sh", "-c", "echo 'my answer: 42' >> /home/jovyan/intro/lab1.md"])
        assert edit.exit_code == 0
    finally:
        container.remove(force=True)

    # the instructor publishes lab 2; the student's server starts again
    (course_repo / "lab2.md").write_text("# Lab 2\n")
    _git("add", ".", cwd=course_repo)
    _git("commit", "-qm", "lab 2", cwd=course_repo)
    container = start()
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/api/status?token=test-token") == 200
        lab1 = container.exec_run(["cat", "/home/jovyan/intro/lab1.md"]).output.decode()
        assert "my answer: 42" in lab1, "nbgitpuller must keep the student's edit"
        assert container.exec_run(["test", "-f", "/home/jovyan/intro/lab2.md"]).exit_code == 0
    finally:
        container.remove(force=True)
        docker_client.volumes.get(home).remove(force=True)


def test_formgrader_only_in_the_courses_grader_service(real, docker_client, course_repo):
    """nbgrader's multi-course form: the course's grader service grades; an instructor's own
    server lists courses (course_list) and a student's only assignments."""
    image = real.values["notebook"]["ref"]
    seen = {}
    for role, env in (("grader", {"CLASSROOM_GRADER_COURSE": "intro"}), ("prof", {"JUPYTERHUB_USER": "prof"}),
                      ("student1", {"JUPYTERHUB_USER": "student1"})):
        out = docker_client.containers.run(
            image, ["classroom-start", "jupyter", "server", "extension", "list"], remove=True,
            environment=env, network_mode="none",
            volumes={str(course_repo): {"bind": str(course_repo), "mode": "ro"}}, stderr=True).decode()
        out = re.sub(r"\x1b\[[0-9;]*m", "", out)
        # the first config dir listed is the user's: its setting wins
        seen[role] = {name: re.search(rf"^\s*nbgrader\.server_extensions\.{name} (enabled|disabled)$",
                                      out, re.M).group(1)
                      for name in ("formgrader", "course_list", "assignment_list")}
    assert seen == {
        "grader": {"formgrader": "enabled", "course_list": "disabled", "assignment_list": "disabled"},
        "prof": {"formgrader": "disabled", "course_list": "enabled", "assignment_list": "enabled"},
        "student1": {"formgrader": "disabled", "course_list": "disabled", "assignment_list": "enabled"},
    }


def test_db_takes_its_password_from_the_environment(real, docker_client):
    password = "pw-" + uuid.uuid4().hex
    db = docker_client.containers.run(real.values["db"]["ref"], detach=True,
                                      environment={"MYSQL_ROOT_PASSWORD": password})
    try:
        deadline = time.monotonic() + 120
        while db.reload() or db.attrs["State"].get("Health", {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, db.logs(tail=20).decode()
            time.sleep(2)
        query = ["mariadb", "-h", "127.0.0.1", "-uroot", "-e", "select 40 + 2"]
        good = db.exec_run(query, environment={"MYSQL_PWD": password})
        assert good.exit_code == 0 and "42" in good.output.decode()
        bad = db.exec_run(query, environment={"MYSQL_PWD": "wrong"})
        assert bad.exit_code != 0
    finally:
        db.remove(force=True, v=True)


def test_doit_local_serves_jupyter_with_its_database(real):
    result = real.doit("local")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        url = re.search(r"runs at (http://\S+)/lab\?token=(\w+)", result.stdout)
        assert url, result.stdout
        assert _wait_http(f"{url.group(1)}/api/status?token={url.group(2)}") == 200
    finally:
        real.doit("clean", "local")


def _local_or_pulled(docker_client, ref):
    import docker
    try:
        return docker_client.images.get(ref)
    except docker.errors.ImageNotFound:
        return docker_client.images.pull(ref)


def test_no_secret_in_any_image(real, docker_client):
    secrets = dict(line.split("=", 1) for line in real.secrets_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    assert set(secrets) >= {"db_root_password", "proxy_secret_token", "hub_cookie_secret"}
    for name, values in real.values.items():
        # Other tests may remove local images by id; the registry keeps the pushed ones.
        image = _local_or_pulled(docker_client, values["ref"])
        text = json.dumps(image.attrs) + json.dumps(docker_client.api.history(values["ref"]))
        assert "BEGIN CERTIFICATE" not in text, name
        for value in secrets.values():
            assert value not in text, f"a secret is in the {name} image's metadata"
    assert not any(value in real.first_output for value in secrets.values())
