"""A student's and an instructor's server as KubeSpawner builds the pod, run on the Docker Engine.

The pod manifest is KubeSpawner 7.0's own get_pod_manifest() on the hub config the
real hub loaded from the rendered release (runtime/spawn.py); runtime/podrun.py
runs it as a kubelet would (init container, notebook + db sidecar in one network
namespace, the manifest's image/command/args/env/user/mounts, the db password from
the rendered Secret).  The hub is real (runtime/hub.py): the servers talk to it.

Classroom (runtime/fixtures.py): intro = prof + alice, bob; stats = prof2 + carol.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest

from tasks import contract
from tests.integration.runtime import nbgrader as nbg
from tests.integration.runtime.hub import secret_data

pytestmark = pytest.mark.integration

SERVER = "jupyterhub-singleuser"
HOME = contract.HOME_PATH


@pytest.fixture
def student(pods):
    return pods.server("alice")


@pytest.fixture
def instructor(pods):
    return pods.server("prof")


def _password(pods, key=contract.DB_USER_PASSWORD_KEY) -> str:
    """A password of the rendered db Secret: the notebook account's, or root's."""
    return secret_data(pods.rendered.find("Secret", contract.DB_SECRET))[key]


def _sql(server, statement: str) -> tuple[int, str]:
    """A statement with the mariadb CLI in the notebook, as its DB_* account (MYSQL_PWD from classroom-start)."""
    env = server.server_env()
    return server.exec(["mariadb", "-h", env["DB_HOST"], "-P", env["DB_PORT"], "-u", env["DB_USER"],
                        "--batch", "-e", statement, env["DB_NAME"]])


# ---- the pod as KubeSpawner makes it ------------------------------------------------------------

def test_the_image_command_runs_classroom_start(student):
    """Defect 2: z2jh's default singleuser.cmd replaced the image's CMD; classroom-start never ran."""
    manifest = student.manifest["spec"]["containers"][0]
    assert "args" not in manifest and "command" not in manifest, manifest.get("args")
    container = student.pod.containers["notebook"]
    container.reload()
    assert container.attrs["Config"]["Cmd"] == ["classroom-start", SERVER]   # the image's CMD
    logs = student.pod.logs("notebook", tail=400)
    assert "[classroom-start] user alice: student; courses: intro" in logs, logs
    # classroom-start exec'd the server in its own process, under tini (PID 1): what it exported
    # is in the server's environment
    pid = student.pod.pid_of("notebook", SERVER)
    assert pid, logs
    code, status = student.pod.exec("notebook", ["cat", f"/proc/{pid}/status"])
    assert re.search(r"^PPid:\s+1$", status, re.M), status
    assert "DATABASE_URL" in student.server_env()


def test_the_pod_is_kubespawners_with_the_db_sidecar_and_its_datadir(student):
    spec = student.manifest["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"notebook", "db"}
    init = [c["name"] for c in spec.get("initContainers") or []]
    # z2jh's privileged iptables block of the metadata server is off (its NetworkPolicy does that):
    # no container of the pod KubeSpawner makes is privileged
    assert init == ["prepare-db-dir"] and not student.pod.skipped, init
    privileged = [c["name"] for c in [*spec["initContainers"], *spec["containers"]]
                  if (c.get("securityContext") or {}).get("privileged")]
    assert privileged == [], privileged
    mounts = {m["mountPath"]: m for m in containers["db"].get("volumeMounts") or []}
    assert mounts["/var/lib/mysql"].get("subPath") == contract.DB_DATA_SUBPATH
    code, out = student.pod.exec("notebook", ["stat", "-c", "%a %U %G", f"{HOME}/{contract.DB_DATA_SUBPATH}"])
    assert out.split() == ["2770", "jovyan", "users"], out


def test_servers_answer_with_the_hub_checking_the_token(pods, student, instructor):
    for server in (student, instructor):
        assert server.get("api/status", pods.token(server.user)).status == 200
    # the hub decides: another user's real token is refused
    assert student.get("api/status", pods.token("prof"), expect_error=True).status == 403


def test_only_their_courses_are_pulled_into_the_home(student, pods):
    code, out = student.pod.exec("notebook", ["cat", f"{HOME}/intro/lab1.md"])
    assert code == 0 and "# Lab 1" in out, out + student.pod.logs("notebook", 200)
    code, _ = student.pod.exec("notebook", ["test", "-e", f"{HOME}/stats"])
    assert code != 0, "alice does not take stats"


def test_nbgrader_role_of_a_student_and_an_instructor(student, instructor):
    assert nbg.server_extensions(student) == {"assignment_list": True, "course_list": False,
                                              "formgrader": False}
    assert nbg.server_extensions(instructor) == {"assignment_list": True, "course_list": True,
                                                 "formgrader": False}
    for server in (student, instructor):
        config = nbg.effective_config(server)
        # the chart's ConfigMap, mounted at /etc/jupyter/nbgrader_config.py (defect 6)
        assert config["Exchange.root"] == contract.EXCHANGE_ROOT
        assert config["Exchange.path_includes_course"] is True
        assert config["Authenticator.plugin_class"].endswith("JupyterHubAuthPlugin")
        assert config["CourseDirectory.course_id"] == "", "no local course directory outside the grader"


def test_the_db_sidecar_runs_unprivileged_on_loopback(pods, student):
    code, status = student.pod.exec("db", ["cat", "/proc/1/status"])
    assert re.search(r"^Uid:\s+999\s", status, re.M), status
    connect = "import socket, sys; socket.create_connection((sys.argv[1], 3306), 5)"
    code, out = student.pod.exec("notebook", ["python3", "-c", connect, "127.0.0.1"])
    assert code == 0, out
    # not on the pod's address: another pod (here: a container beside it) cannot reach it
    image = student.pod.containers["notebook"].image.id
    probe = pods.client.containers.run(image, ["python3", "-c", connect, student.pod.pod_ip],
                                       entrypoint=[], detach=True, network_mode="bridge")
    try:
        assert probe.wait(timeout=60)["StatusCode"] != 0
        assert "Connection refused" in probe.logs().decode()
    finally:
        probe.remove(force=True)
    # every listening TCP socket of the pod's network namespace is the db's, on 127.0.0.1:3306 or
    # the notebook's server; none of the db's on another address (IPv6 included)
    code, tables = student.pod.exec("db", ["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    listening = {fields[1] for fields in (line.split() for line in tables.splitlines()[1:])
                 if len(fields) > 3 and fields[3] == "0A"}
    on_3306 = {address for address in listening if address.endswith(":0CEA")}
    assert on_3306 == {"0100007F:0CEA"}, listening


def test_the_notebooks_db_account_has_its_own_database_only(pods, student):
    """ALL on its database; nothing global: no mysql.*, no other database, no FILE, no GRANT."""
    env = student.server_env()
    assert (env["DB_USER"], env["DB_NAME"]) == (contract.DB_USER, contract.DB_NAME)
    table = f"t{uuid.uuid4().hex[:8]}"
    code, out = _sql(student, f"CREATE TABLE {table} (answer INT); INSERT INTO {table} VALUES (42); "
                              f"SELECT answer FROM {table}; DROP TABLE {table}")
    assert code == 0 and "42" in out, out
    refused = {
        "SELECT * FROM mysql.user": "SELECT command denied",
        "SELECT * FROM mysql.global_priv": "SELECT command denied",
        "CREATE DATABASE other": "Access denied",
        f"SELECT 1 INTO OUTFILE '/tmp/{table}'": "Access denied",
        f"GRANT SELECT ON {contract.DB_NAME}.* TO '{contract.DB_USER}'@'%'": "Access denied",
        "CREATE USER mallory IDENTIFIED BY 'x'": "Access denied",
        "SHUTDOWN": "Access denied",
    }
    outcomes = {statement: _sql(student, statement) for statement in refused}
    allowed = {s: out for s, (code, out) in outcomes.items() if code == 0 or refused[s] not in out}
    assert not allowed, allowed
    code, grants = _sql(student, "SHOW GRANTS")
    assert code == 0, grants
    lines = [line for line in grants.splitlines()[1:] if line]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"GRANT USAGE ON *.* TO `{contract.DB_USER}`@`%`"), lines
    assert lines[1] == f"GRANT ALL PRIVILEGES ON `{contract.DB_NAME}`.* TO `{contract.DB_USER}`@`%`", lines
    code, out = _sql(student, "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")
    assert code == 0 and out.split()[1:] == ["USAGE"], out
    # root: not from the notebook, even with its password (root is for the db's own socket)
    code, out = student.pod.exec("notebook", ["mariadb", "-h", "127.0.0.1", "-uroot", "-e", "select 1"],
                                 env={"MYSQL_PWD": _password(pods, contract.DB_PASSWORD_KEY)})
    assert code != 0 and "Access denied" in out, out


def test_roots_password_is_in_the_db_container_only(pods, student):
    root = _password(pods, contract.DB_PASSWORD_KEY)
    notebook = student.pod.containers["notebook"]
    notebook.reload()
    configured = "\n".join(notebook.attrs["Config"]["Env"])
    running = "\n".join(f"{k}={v}" for k, v in student.server_env().items())
    # booleans: an assertion must not print the password
    in_notebook = root in configured or root in running
    assert not in_notebook, "root's db password reached the notebook container"
    db = student.pod.containers["db"]
    db.reload()
    assert any(item == f"MYSQL_ROOT_PASSWORD={root}" for item in db.attrs["Config"]["Env"]), \
        "the db container has it (for a first start)"
    # and mariadbd's own environment has no password left (the entrypoint unsets it)
    server_env = student.pod.process_env("db")
    assert not [k for k in server_env if "PASSWORD" in k], sorted(server_env)


def test_percent_sql_connects_with_the_secret_password_and_data_survive_a_restart(pods, student):
    """Defect 7: no DB_* env, no DATABASE_URL, the sidecar's data lost at every stop."""
    env = student.server_env()
    # compared as booleans: an assertion must not print the password
    from_secret = env.get("DB_PASSWORD") == _password(pods)
    assert from_secret, "DB_PASSWORD must be the rendered Secret's value"
    expected = (f"mysql+pymysql://{contract.DB_USER}:{quote(_password(pods), safe='')}@127.0.0.1:3306/"
                f"{contract.DB_NAME}")
    url_with_it = env.get("DATABASE_URL") == expected
    assert url_with_it, "classroom-start must export DATABASE_URL with that password"
    table = f"t{uuid.uuid4().hex[:8]}"
    # %sql works in the account's own database, the URL's default
    out = nbg.run_cells(student, ["%load_ext sql",
                                  f"%sql CREATE TABLE {table} (answer INT)",
                                  f"%sql INSERT INTO {table} VALUES (42)",
                                  f"result = %sql SELECT answer FROM {table}",
                                  "print('ANSWER', result[0][0])"])
    assert "ANSWER 42" in out, out
    # a wrong password is refused: the password is what protects the data
    code, out = student.pod.exec("notebook", ["mariadb", "-h", "127.0.0.1", f"-u{contract.DB_USER}",
                                              "-e", "select 1"], env={"MYSQL_PWD": "wrong"})
    assert code != 0 and "Access denied" in out, out

    restarted = pods.restart("alice")
    out = nbg.run_cells(restarted, ["%load_ext sql", f"result = %sql SELECT answer FROM {table}",
                                    "print('ANSWER', result[0][0])"])
    assert "ANSWER 42" in out, out
