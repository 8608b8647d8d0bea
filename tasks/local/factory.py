"""`doit local`: the classroom on one machine: the local image and its own database.

Two containers on a private docker network: `classroom-local-db` (the db
image, data in a named volume) and `classroom-local` (the local image, the
home directory in a named volume so that work survives a restart).  The db
root password comes from the secret store at run time and reaches the db
container only; the server gets an account of its own (contract.DB_USER, rights
on its own database only) with a password made per start.  Both passwords
reach the containers as files (0400, owned by the reader) copied into the
created container before it starts: not on a command line, not in the
container's configuration (`docker inspect`), not in a file on this machine;
root's is deleted once the db serves (only a first start needs it), the
account's goes with the container.  The Jupyter token is made per start and
printed in the URL: that is how one opens the server.
"""

from __future__ import annotations

import time

from tasks.errors import ClassroomError, action

NETWORK = "classroom-local"
DB = "classroom-local-db"
SERVER = "classroom-local"
VOLUMES = {"db": "classroom-local-db-data", "home": "classroom-local-home"}
SECRETS_DIR = "/run/classroom-secrets"           # in each container, made before it starts
DB_UID, SERVER_UID = 0, 1000                     # who reads them: the db entrypoint (before it
                                                 # drops to mysql), the notebook user


def task_dict(config) -> dict:
    return {
        "actions": [action(start, config)],
        "getargs": {"local": ("image:local", None), "db": ("image:db", None)},
        "task_dep": ["image:local", "image:db"],
        "uptodate": [False],  # asked for explicitly: always (re)starts
        "clean": [stop],
        "verbosity": 2,
    }


def start(config, local, db, wait_seconds=180):
    import secrets

    from tasks import contract
    from tasks.images import engine
    from tasks.secretstore import SecretStore

    settings = config.classroom["local"]
    with engine.refusals("cannot start the containers"):
        root_password = SecretStore().get("db_root_password")
        # The db sets the account's password at every start: a new one each time will do.
        user_password = secrets.token_hex(32)
        client = engine.client()
        _network(client)
        _replace(client, DB, db["ref"], network=NETWORK,
                 secret_files=({"root-password": root_password, "user-password": user_password}, DB_UID),
                 # The server reaches it over the private network, not on loopback.
                 command=["--bind-address=0.0.0.0"],
                 environment={"MARIADB_ROOT_PASSWORD_FILE": f"{SECRETS_DIR}/root-password",
                              "MARIADB_USER": contract.DB_USER, "MARIADB_DATABASE": contract.DB_NAME,
                              "MARIADB_PASSWORD_FILE": f"{SECRETS_DIR}/user-password"},
                 volumes={VOLUMES["db"]: {"bind": "/var/lib/mysql", "mode": "rw"}})
        token = secrets.token_hex(24)
        _replace(client, SERVER, local["ref"], network=NETWORK,
                 secret_files=({"db-password": user_password}, SERVER_UID),
                 environment={"JUPYTER_TOKEN": token, "DB_HOST": DB, "DB_PORT": "3306",
                              "DB_USER": contract.DB_USER, "DB_NAME": contract.DB_NAME,
                              "DB_PASSWORD_FILE": f"{SECRETS_DIR}/db-password"},
                 volumes={VOLUMES["home"]: {"bind": "/home/jovyan", "mode": "rw"}},
                 ports={"8888/tcp": (settings["bind"], settings["port"])})

    base = f"http://{settings['bind']}:{settings['port']}"
    if not _wait_ready(f"{base}/api/status?token={token}", wait_seconds):
        logs = client.containers.get(SERVER).logs(tail=20).decode(errors="replace")
        raise ClassroomError(f"the server did not answer at {base} within {wait_seconds}s; "
                             f"last log lines:\n{logs}")
    if not _forget_root_password(client.containers.get(DB), wait_seconds):
        logs = client.containers.get(DB).logs(tail=20).decode(errors="replace")
        raise ClassroomError(f"the db did not come up within {wait_seconds}s; last log lines:\n{logs}")
    print(f"local: the classroom runs at {base}/lab?token={token}")
    print(f"local: stop it with `doit clean local` (the volumes {', '.join(VOLUMES.values())} are kept)")
    return True


def _network(client):
    import docker.errors
    try:
        client.networks.get(NETWORK)
    except docker.errors.NotFound:
        client.networks.create(NETWORK, driver="bridge")


def _replace(client, name, image, secret_files, **options):
    """(Re)create the container, copy its secret files in, then start it."""
    import docker.errors
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    container = client.containers.create(image, name=name, detach=True,
                                         restart_policy={"Name": "unless-stopped"}, **options)
    files, uid = secret_files
    if not container.put_archive("/", _secrets_tar(files, uid)):
        raise RuntimeError(f"cannot copy the secret files into {name}")
    container.start()


def _forget_root_password(db, seconds) -> bool:
    """Once the db serves (its datadir initialised), delete root's password file: only a first
    start needs it.  The account's password stays: the db sets it at every start."""
    deadline = time.monotonic() + seconds
    while db.exec_run(["mariadb-admin", "ping", "--silent"]).exit_code != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return db.exec_run(["rm", "-f", "--", f"{SECRETS_DIR}/root-password"], user="0").exit_code == 0


def _secrets_tar(files: dict[str, str], uid: int) -> bytes:
    """SECRETS_DIR (0500) with one 0400 file per secret, owned by `uid`, as a tar in memory."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo(SECRETS_DIR.lstrip("/"))
        directory.type, directory.mode, directory.uid, directory.gid = tarfile.DIRTYPE, 0o500, uid, 0
        tar.addfile(directory)
        for file_name, value in sorted(files.items()):
            data = value.encode()
            info = tarfile.TarInfo(f"{directory.name}/{file_name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, uid, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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

    from tasks.images import engine
    client = engine.client()
    for name in (SERVER, DB):
        try:
            client.containers.get(name).remove(force=True)
            print(f"local: removed container {name}")
        except docker.errors.NotFound:
            pass
