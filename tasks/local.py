"""`doit local`: the classroom on one machine: the local image and its own database.

Two containers on a private docker network: `classroom-local-db` (the db
image, data in a named volume) and `classroom-local` (the local image, the
home directory in a named volume so that work survives a restart).  The db
password comes from the secret store at run time and reaches the containers
as environment, never an image.  The Jupyter token is made per start and
printed in the URL: that is how one opens the server.
"""

from __future__ import annotations

import time

NETWORK = "classroom-local"
DB = "classroom-local-db"
SERVER = "classroom-local"
VOLUMES = {"db": "classroom-local-db-data", "home": "classroom-local-home"}


def task_dict(config) -> dict:
    return {
        "actions": [(start, [config])],
        "getargs": {"local": ("image:local", None), "db": ("image:db", None)},
        "task_dep": ["image:local", "image:db"],
        "uptodate": [False],  # asked for explicitly: always (re)starts
        "clean": [stop],
        "verbosity": 2,
    }


def start(config, local, db, wait_seconds=180):
    from doit.exceptions import TaskFailed

    import secrets

    from tasks import docker_engine as engine
    from tasks.secretstore import MissingSecret, SecretStore

    settings = config.classroom["local"]
    try:
        password = SecretStore().get("db_root_password")
        client = engine.client()
        _network(client)
        _replace(client, DB, db["ref"], network=NETWORK, environment={"MYSQL_ROOT_PASSWORD": password},
                 volumes={VOLUMES["db"]: {"bind": "/var/lib/mysql", "mode": "rw"}})
        token = secrets.token_hex(24)
        _replace(client, SERVER, local["ref"], network=NETWORK,
                 environment={"JUPYTER_TOKEN": token, "DB_HOST": DB, "DB_PORT": "3306",
                              "DB_USER": "root", "DB_PASSWORD": password},
                 volumes={VOLUMES["home"]: {"bind": "/home/jovyan", "mode": "rw"}},
                 ports={"8888/tcp": (settings["bind"], settings["port"])})
    except (engine.EngineError, MissingSecret) as exc:
        return TaskFailed(f"local: {exc}")
    except Exception as exc:  # docker SDK errors: say which step, no traceback
        return TaskFailed(f"local: cannot start the containers: {str(exc).splitlines()[0][:300]}")

    base = f"http://{settings['bind']}:{settings['port']}"
    if not _wait_ready(f"{base}/api/status?token={token}", wait_seconds):
        logs = client.containers.get(SERVER).logs(tail=20).decode(errors="replace")
        return TaskFailed(f"local: the server did not answer at {base} within {wait_seconds}s; "
                          f"last log lines:\n{logs}")
    print(f"local: the classroom runs at {base}/lab?token={token}")
    print(f"local: stop it with `doit clean local` (the volumes {', '.join(VOLUMES.values())} are kept)")
    return True


def _network(client):
    import docker.errors
    try:
        client.networks.get(NETWORK)
    except docker.errors.NotFound:
        client.networks.create(NETWORK, driver="bridge")


def _replace(client, name, image, **options):
    import docker.errors
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    client.containers.run(image, name=name, detach=True, restart_policy={"Name": "unless-stopped"},
                          **options)


def _wait_ready(url, seconds) -> bool:
    import urllib.error
    import urllib.request  # ~15 ms of imports: not at `doit` start-up

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    return False


def stop():
    """Remove the two containers; keep the volumes (a student's work, the data)."""
    import docker.errors

    from tasks import docker_engine as engine
    client = engine.client()
    for name in (SERVER, DB):
        try:
            client.containers.get(name).remove(force=True)
            print(f"local: removed container {name}")
        except docker.errors.NotFound:
            pass
