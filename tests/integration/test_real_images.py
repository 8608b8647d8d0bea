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
        by_digest = f"{repository}@{values['digest']}"
        # the registry serves the digest doit recorded, and the engine files the image under it
        assert by_digest in docker_client.images.pull(by_digest).attrs["RepoDigests"]


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


def _healthy(db, seconds=120):
    deadline = time.monotonic() + seconds
    while db.reload() or db.attrs["State"].get("Health", {}).get("Status") != "healthy":
        assert db.status in ("created", "running"), db.logs(tail=20).decode()
        assert time.monotonic() < deadline, db.logs(tail=20).decode()
        time.sleep(2)


def _sql(db, statement, user="root", password=None, host=None):
    """mariadb in the db container as `nobody` (so the socket's root login needs the password)."""
    command = ["mariadb", f"-u{user}", "--batch", "-e", statement] + (["-h", host] if host else [])
    result = db.exec_run(command, user="65534", environment={"MYSQL_PWD": password} if password else {})
    return result.exit_code, result.output.decode(errors="replace")


def test_db_takes_its_root_password_from_the_environment_for_its_socket_only(real, docker_client):
    password = "pw-" + uuid.uuid4().hex
    db = docker_client.containers.run(real.values["db"]["ref"], detach=True,
                                      environment={"MYSQL_ROOT_PASSWORD": password})
    try:
        _healthy(db)
        code, out = _sql(db, "select 40 + 2", password=password)
        assert code == 0 and "42" in out, out
        assert _sql(db, "select 1", password="wrong")[0] != 0
        # no root account for any other host: not even from loopback over TCP
        code, out = _sql(db, "select 1", password=password, host="127.0.0.1")
        assert code != 0 and "Host '127.0.0.1' is not allowed to connect" in out, out
        code, out = _sql(db, "select concat(user, '@', host) as account from mysql.user order by 1", password=password)
        assert out.split()[1:] == ["mariadb.sys@localhost", "mysql@localhost", "root@localhost"], out
    finally:
        db.remove(force=True, v=True)


def test_db_gives_an_older_releases_datadir_the_account_and_drops_root_anywhere(real, docker_client):
    """An older release's datadir (root@'%' with everything, no student account) converges at the next start."""
    ref, volume = real.values["db"]["ref"], f"classtools-test-db-{uuid.uuid4().hex[:8]}"
    root, student = "root-" + uuid.uuid4().hex, "st-'\\" + uuid.uuid4().hex  # quotes: the entrypoint quotes
    data = {volume: {"bind": "/var/lib/mysql", "mode": "rw"}}
    old = docker_client.containers.run(ref, detach=True, volumes=data, environment={"MYSQL_ROOT_PASSWORD": root})
    try:
        _healthy(old)
        code, out = _sql(old, "CREATE USER 'root'@'%' IDENTIFIED BY 'old'; "
                              "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION", password=root)
        assert code == 0, out
    finally:
        old.remove(force=True)
    new = docker_client.containers.run(ref, ["--bind-address=0.0.0.0"], detach=True, volumes=data, environment={
        "MARIADB_USER": "student", "MARIADB_DATABASE": "student", "MARIADB_PASSWORD": student})
    try:
        _healthy(new)
        code, out = _sql(new, "select concat(user, '@', host) as account from mysql.user order by 1", password=root)
        assert out.split()[1:] == ["mariadb.sys@localhost", "mysql@localhost", "root@localhost",
                                   "student@%"], out
        code, out = _sql(new, "CREATE TABLE student.t (a INT); SELECT COUNT(*) FROM student.t", "student", student,
                         host="127.0.0.1")
        assert code == 0, out
        code, out = _sql(new, "SHOW GRANTS", "student", student, host="127.0.0.1")
        assert out.splitlines()[2:] == ["GRANT ALL PRIVILEGES ON `student`.* TO `student`@`%`"], out
        assert "FILE" not in out and "GRANT OPTION" not in out, out
        code, out = _sql(new, "CREATE DATABASE other", "student", student, host="127.0.0.1")
        assert code != 0 and "Access denied" in out, out
    finally:
        new.remove(force=True)
        docker_client.volumes.get(volume).remove(force=True)


def test_doit_local_serves_jupyter_with_its_database(real, docker_client):
    from tasks import contract
    from tasks.local import factory as local

    result = real.doit("local")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        url = re.search(r"runs at (http://\S+)/lab\?token=(\w+)", result.stdout)
        assert url, result.stdout
        assert _wait_http(f"{url.group(1)}/api/status?token={url.group(2)}") == 200
        server, db = docker_client.containers.get(local.SERVER), docker_client.containers.get(local.DB)
        # the passwords: in neither container's configuration nor command line (docker inspect)
        root = dict(line.split("=", 1) for line in real.secrets_file.read_text().splitlines()
                    if "=" in line)["db_root_password"]
        inspected = json.dumps([server.attrs, db.attrs])
        in_inspect = root in inspected
        assert not in_inspect, "the root password is in docker inspect"
        assert not [e for c in (server, db) for e in c.attrs["Config"]["Env"] if "PASSWORD=" in e]
        # but as files only their reader may read
        code, out = server.exec_run(["stat", "-c", "%a %u", f"{local.SECRETS_DIR}/db-password"])
        assert out.decode().split() == ["400", "1000"], out
        code, out = db.exec_run(["stat", "-c", "%a %u", f"{local.SECRETS_DIR}/user-password"])
        assert out.decode().split() == ["400", "0"], out
        # root's: deleted once the db served (only a first start needs it)
        assert db.exec_run(["test", "-e", f"{local.SECRETS_DIR}/root-password"]).exit_code != 0
        user_password = server.exec_run(["cat", f"{local.SECRETS_DIR}/db-password"]).output.decode()
        assert user_password not in inspected
        # the server's account works in its own database, over the private network, and is no root
        query = ["mariadb", "-h", local.DB, f"-u{contract.DB_USER}", "--batch", "-e"]
        made = server.exec_run([*query, "CREATE TABLE IF NOT EXISTS t (a INT); SELECT COUNT(*) FROM t",
                                contract.DB_NAME], environment={"MYSQL_PWD": user_password})
        assert made.exit_code == 0, made.output.decode()
        # a restart (the containers' restart policy) needs no root password: the datadir is made
        db.restart()
        deadline = time.monotonic() + 120
        while db.exec_run(["mariadb-admin", "ping", "--silent"]).exit_code != 0:
            assert time.monotonic() < deadline, db.logs(tail=20).decode()
            time.sleep(1)
        again = server.exec_run([*query, "SELECT COUNT(*) FROM t", contract.DB_NAME],
                                environment={"MYSQL_PWD": user_password})
        assert again.exit_code == 0, again.output.decode() + db.logs(tail=20).decode()
        denied = server.exec_run([*query, "SELECT * FROM mysql.user"], environment={"MYSQL_PWD": user_password})
        assert denied.exit_code != 0 and "denied" in denied.output.decode()
        as_root = server.exec_run(["mariadb", "-h", local.DB, "-uroot", "-e", "select 1"],
                                  environment={"MYSQL_PWD": root})
        assert as_root.exit_code != 0, "root is for the db container's own socket"
        # classroom-start made %sql's DATABASE_URL from the file
        environs = 'for p in /proc/[0-9]*; do tr "\\0" "\\n" < "$p/environ"; done 2> /dev/null'
        code, out = server.exec_run(["sh", "-c", environs])
        url_ok = f"mysql+pymysql://{contract.DB_USER}:{user_password}@{local.DB}:3306/{contract.DB_NAME}" \
            in out.decode()
        assert url_ok, "DATABASE_URL of the local server"
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
