"""What the classroom chart should be: pure functions from config and image results.

The packaged chart is `helm/classroom` with three things written in: the
z2jh dependency at the pinned version, the values of `packaged_values` (the
image stage's references, the courses and the names of `tasks.contract`,
merged into values.yaml), and a version derived from all of it.  Its
archive is built byte for byte the same from the same inputs: sorted
entries, fixed times and owners, no gzip timestamp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile

import yaml

from tasks import contract

# Words that Go's YAML 1.1 reader (helm's) turns into booleans, but PyYAML writes bare.
_GO_BOOLEANS = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF")


class _HelmSafeDumper(yaml.SafeDumper):
    pass


def _represent_str(dumper, value):
    style = "'" if _GO_BOOLEANS.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_HelmSafeDumper.add_representer(str, _represent_str)


def dump_values(values: dict) -> bytes:
    """values.yaml text that helm reads back as the same values (a login `n` stays a string)."""
    return yaml.dump(values, Dumper=_HelmSafeDumper, sort_keys=False).encode()


FIXED_MTIME = 946684800  # 2000-01-01: any constant will do; 0 upsets some tar readers


DB_PORT = 3306
DB_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
DB_DATA_MOUNT = "/var/lib/mysql"


def _image(ref: str) -> dict:
    name, tag = ref.rsplit(":", 1)
    return {"name": name, "tag": tag}


def _db_secret(key: str) -> dict:
    """A password of the chart's db Secret, as a container's env reads it."""
    return {"valueFrom": {"secretKeyRef": {"name": contract.DB_SECRET, "key": key}}}


def db_sidecar(db_ref: str) -> dict:
    """The student's own MariaDB beside the notebook: reachable from the notebook only.

    It shares the pod's network with the notebook, so it listens on 127.0.0.1;
    its datadir lives in the home volume, so the data survives a server stop.
    Root's password stays in this container; at every start the entrypoint
    makes the notebook's account (contract.DB_USER) with rights on its own
    database only, whatever an older release's datadir holds.
    """
    return {
        "name": "db",
        "image": db_ref,
        # Options alone go to mariadbd (images/db/docker-entrypoint). The image binds to
        # 127.0.0.1 by itself; said here too, so that no image default can open it.
        "args": ["--bind-address=127.0.0.1"],
        "env": [{"name": "MYSQL_ROOT_PASSWORD", **_db_secret(contract.DB_PASSWORD_KEY)},
                {"name": "MARIADB_USER", "value": contract.DB_USER},
                {"name": "MARIADB_DATABASE", "value": contract.DB_NAME},
                {"name": "MARIADB_PASSWORD", **_db_secret(contract.DB_USER_PASSWORD_KEY)}],
        "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": contract.HOME_VOLUME, "mountPath": DB_DATA_MOUNT,
                          "subPath": contract.DB_DATA_SUBPATH}],
        "resources": DB_RESOURCES,
        # Through the socket: a TCP probe would knock on the pod IP, where nothing listens.
        "readinessProbe": {"exec": {"command": ["mariadb-admin", "ping", "--silent"]},
                           "periodSeconds": 5, "failureThreshold": 3},
    }


def prepare_db_dir(notebook_ref: str) -> dict:
    """Init container: the db's datadir in the home volume, group-writable for uid 999.

    Created by uid 1000 (the home's owner); mode 2770 and the pod's fsGroup (100, a
    supplementary group of every container) let the db write it.  KubeSpawner formats
    init containers with the user's name, so the command holds no braces.
    """
    datadir = f"{contract.HOME_PATH}/{contract.DB_DATA_SUBPATH}"
    return {
        "name": "prepare-db-dir",
        "image": notebook_ref,
        "command": ["sh", "-c", f"mkdir -p {datadir} && chmod 2770 {datadir}"],
        "securityContext": {"runAsUser": contract.NOTEBOOK_UID, "runAsGroup": contract.USERS_GID,
                            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": contract.HOME_VOLUME, "mountPath": contract.HOME_PATH}],
    }


def db_env() -> dict:
    """DB_* for classroom-start, which turns them into DATABASE_URL (%sql) and MYSQL_*.

    The notebook's own account and database, never root's password.  KubeSpawner
    drops non-string values of its environment: the port is a string.
    """
    return {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(DB_PORT),
        "DB_USER": contract.DB_USER,
        "DB_NAME": contract.DB_NAME,
        "DB_PASSWORD": _db_secret(contract.DB_USER_PASSWORD_KEY),
    }


def shared_volumes() -> tuple[dict, dict]:
    """(extraVolumes, extraVolumeMounts) as dicts: z2jh 4.4 merges dicts, where lists replace."""
    volumes = {
        "exchange": {"name": "exchange",
                     "persistentVolumeClaim": {"claimName": contract.EXCHANGE_CLAIM}},
        "nbgrader-config": {"name": "nbgrader-config",
                            "configMap": {"name": contract.NBGRADER_CONFIGMAP}},
    }
    mounts = {
        "exchange": {"name": "exchange", "mountPath": contract.EXCHANGE_ROOT},
        "nbgrader-config": {"name": "nbgrader-config", "mountPath": contract.NBGRADER_CONFIG_PATH,
                            "subPath": contract.NBGRADER_CONFIG_KEY, "readOnly": True},
    }
    return volumes, mounts


def grader_services(courses: list[str]) -> dict:
    """`hub.services`: per course the external service its grader Deployment runs.

    z2jh generates each service's API token into its hub Secret; users reach the
    service through the proxy at /services/<course>/ after JupyterHub's OAuth,
    which needs no confirmation page for a service that is part of the classroom.
    """
    return {contract.grader_service(c): {"url": contract.grader_url(c), "display": False,
                                         "oauth_no_confirm": True}
            for c in courses}


def grader_roles(courses: list[str]) -> dict:
    """`hub.loadRoles` (a dict in z2jh 4.4), nbgrader 0.9's multi-class form."""
    roles = {
        # Servers act with their owner's permissions, so the assignment and course
        # lists can read the owner's groups and find the grader services.
        "server": {"description": "A server acts with its owner's permissions (nbgrader lists)",
                   "scopes": ["inherit"]},
    }
    for c in courses:
        service = contract.grader_service(c)
        roles[contract.formgrade_group(c)] = {
            "description": f"Use the formgrader of {c}",
            "groups": [contract.formgrade_group(c)],
            "scopes": [f"access:services!service={service}"]}
        roles[contract.nbgrader_group(c)] = {
            "description": f"Find the course {c}",
            "groups": [contract.nbgrader_group(c)],
            "scopes": ["list:services", f"read:services!service={service}"]}
        # nbgrader's JupyterHubAuthPlugin in the grader reads its own user's groups.
        roles[contract.grader_user(c)] = {
            "description": f"The grader service of {c} reads its account's groups",
            "services": [service],
            "scopes": [f"read:users:groups!user={contract.grader_user(c)}",
                       f"read:users:name!user={contract.grader_user(c)}"]}
    return roles


def packaged_values(config, images: dict) -> dict:
    """Values written into the packaged chart: what the classroom is.

    Courses, images and the wiring between the hub, the student servers, the
    graders and the chart's objects.  How it is reached (TLS, domain) and who
    logs in belong to the release: editing them must not make a new chart, and
    the packaged chart renders on its own (TLS mode none).  Every list-valued
    z2jh key set here is set nowhere in the release values (helm replaces lists).
    """
    exchange = config.classroom["exchange"]
    notebook_ref, db_ref = images["notebook"]["ref"], images["db"]["ref"]
    courses = [c["name"] for c in config.courses]
    volumes, mounts = shared_volumes()
    return {
        "classroom": {
            "names": contract.chart_names(courses),
            "exchange": {"storage": exchange["storage"], "storageClass": exchange["storage_class"],
                         "size": exchange["size"]},
            "courses": [{"name": c["name"], "title": c["title"], "instructors": list(c["instructors"])}
                        for c in config.courses],
        },
        "jupyterhub": {
            "hub": {"services": grader_services(courses), "loadRoles": grader_roles(courses),
                    "networkPolicy": {"egress": [grader_egress()]}},
            "proxy": {"chp": {"networkPolicy": {"egress": [grader_egress()]}}},
            "singleuser": {
                "image": _image(notebook_ref),
                # Keep the image's CMD (classroom-start jupyterhub-singleuser): z2jh's
                # default cmd would replace it.  helm drops a null from z2jh's defaults, so
                # z2jh leaves KubeSpawner.cmd at its own default, None: the image's CMD.
                "cmd": None,
                "storage": {"dynamic": {"volumeNameTemplate": contract.HOME_VOLUME},
                            "extraVolumes": volumes, "extraVolumeMounts": mounts},
                "extraEnv": db_env(),
                "initContainers": [prepare_db_dir(notebook_ref)],
                "extraContainers": [db_sidecar(db_ref)],
                # z2jh's iptables block of the cloud metadata server is a PRIVILEGED init
                # container in every student pod.  z2jh's own singleuser NetworkPolicy
                # (on by default, egressAllowRules.cloudMetadataServer: false) already
                # denies that address on a cluster that enforces NetworkPolicy.
                "cloudMetadata": {"blockWithIptables": False},
            },
        },
    }


def grader_egress() -> dict:
    """The hub (which checks its services) and the proxy (which routes /services/<course>/)
    reach the graders by pod selector. z2jh's own egress to private addresses is an
    ipBlock, which Cilium (GKE Dataplane V2) does not match against pod addresses."""
    return {"to": [{"podSelector": {"matchLabels": {contract.GRADER_POD_LABEL: "true"}}}],
            "ports": [{"port": contract.GRADER_PORT, "protocol": "TCP"}]}


def chart_files(sources: dict[str, bytes], version: str, dependency_version: str,
                values: dict, dependency: tuple[str, bytes]) -> dict[str, bytes]:
    """The packaged chart's files: sources with Chart.yaml and values.yaml written in."""
    files = dict(sources)
    chart = yaml.safe_load(files["Chart.yaml"])
    chart["version"] = version
    for dep in chart.get("dependencies") or []:
        if dep.get("name") == "jupyterhub":
            dep["version"] = dependency_version
    files["Chart.yaml"] = yaml.safe_dump(chart, sort_keys=False).encode()
    defaults = yaml.safe_load(files.get("values.yaml", b"")) or {}
    # Comments of the source values.yaml are lost here; the source keeps them.
    files["values.yaml"] = dump_values(contract.merge_values(defaults, values))
    files[f"charts/{dependency[0]}"] = dependency[1]
    return files


def chart_version(base_version: str, sources: dict[str, bytes], values: dict,
                  dependency_version: str, dependency_digest: str) -> str:
    """SemVer 2: the source version with a pre-release part that is a content digest.

    A 'c' starts the identifier, as SemVer forbids leading zeros in numeric ones.
    """
    digest = hashlib.sha256()
    for rel in sorted(sources):
        digest.update(f"{rel}\0{hashlib.sha256(sources[rel]).hexdigest()}\n".encode())
    digest.update(yaml.safe_dump(values, sort_keys=True).encode())
    digest.update(f"{dependency_version}\0{dependency_digest}".encode())
    core = base_version.split("-", 1)[0].split("+", 1)[0]
    return f"{core}-c{digest.hexdigest()[:12]}"


def archive(files: dict[str, bytes], name: str) -> bytes:
    """A .tgz that only depends on `files`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size, info.mtime, info.mode = len(files[rel]), FIXED_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[rel]))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def index_entry(files: dict[str, bytes], digest: str, url: str, created: str) -> dict:
    """One entry of a helm repository's index.yaml, as `helm repo index` writes it."""
    chart = yaml.safe_load(files["Chart.yaml"])
    entry = {k: chart[k] for k in ("apiVersion", "name", "version", "appVersion", "description",
                                   "type", "dependencies", "keywords", "home") if k in chart}
    entry.update(created=created, digest=digest, urls=[url])
    return entry
