"""The one definition of every name shared by helm/classroom and the Python side.

z2jh allows one release per namespace and names its own objects without the
release name (`hub`, `proxy-public`); the classroom chart does the same.  The
chart's templates name their objects only from `.Values.classroom.names`,
which `chart_names()` writes into the packaged values, so a name changed here
changes on both sides at once.  Pure: standard library only.
"""

from __future__ import annotations

import hashlib

# Objects of the classroom chart (namespaced).
EXCHANGE_CLAIM = "classroom-exchange"            # RWX PVC: nbgrader's exchange
EXCHANGE_SERVER = "classroom-exchange-nfs"       # NFS server: Deployment, Service and its RWO disk
DB_SECRET = "classroom-db"                       # the db sidecar's passwords:
DB_PASSWORD_KEY = "root-password"                # root's (the db container's only) ...
DB_USER_PASSWORD_KEY = "user-password"           # ... and the notebook's account's
NBGRADER_CONFIGMAP = "classroom-nbgrader"        # nbgrader's global and per-course configs
NBGRADER_CONFIG_KEY = "nbgrader_config.py"       # the global config's key in that ConfigMap

# z2jh's own Secret (fullnameOverride "" in z2jh's defaults names it `hub`): it keeps
# each hub.services.<name>.apiToken it generated across upgrades.
HUB_SECRET = "hub"
HUB_API_URL = "http://hub:8081/hub/api"          # z2jh's hub Service, hub.baseUrl "/"

# Paths and volume names inside student servers and graders.
EXCHANGE_ROOT = "/srv/nbgrader/exchange"
NBGRADER_CONFIG_PATH = "/etc/jupyter/nbgrader_config.py"
LDAP_CA_PATH = "/usr/local/etc/classroom/ldap-ca.pem"   # auth.ldap.ca_bundle in the hub pod
HOME_VOLUME = "home"                             # singleuser.storage.dynamic.volumeNameTemplate
HOME_PATH = "/home/jovyan"                       # z2jh's singleuser.storage.homeMountPath
DB_DATA_SUBPATH = ".classroom-db"                # the db sidecar's datadir, inside the home volume
# The notebook's account in its db: ALL on this one database, no global privilege.
# Letters and digits only: the db entrypoint refuses anything it would have to quote.
DB_USER = "student"
DB_NAME = "student"
NOTEBOOK_UID = 1000                              # z2jh's singleuser.uid: every user and grader
USERS_GID = 100                                  # z2jh's singleuser.fsGid
GRADER_PORT = 8888
# Every grader pod carries this label (value "true"): the hub's and the proxy's
# NetworkPolicies reach the graders by it, and the graders admit only them.
GRADER_POD_LABEL = "classroom.jupyter.org/grader"
TLS_SECRET = "classroom-tls"                     # cert-manager's certificate of the hub (TLS mode ingress)

# Datasets: each one at DATA_DIR/<name>, in the local image (baked in) and in every student
# server of the cluster (a Cloud Storage FUSE CSI volume).  images/local/Dockerfile and
# images/shared/classroom-start hold the same path (tests/unit/test_releasespec.py checks).
DATA_DIR = "/srv/data"
DATA_LINK = "data"                               # classroom-start's link in the home, to DATA_DIR
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"    # GKE's Cloud Storage FUSE CSI driver (add-on)
GCSFUSE_ANNOTATION = "gke-gcsfuse/volumes"       # "true": GKE injects the gcsfuse sidecar
# The Kubernetes service account of the student servers when they mount datasets: the one
# principal that gets read access to the data bucket (Workload Identity).
USER_SERVICE_ACCOUNT = "classroom-user"


def grader_service(course: str) -> str:
    """The JupyterHub service that runs a course's formgrader: named as the nbgrader course id."""
    return course


def grader_user(course: str) -> str:
    """The hub user of a course's grader service (nbgrader's multi-class demo form)."""
    return f"grader-{course}"


def grader_host(course: str) -> str:
    """The Kubernetes Deployment, Service and PVC of a course's grader."""
    return f"grader-{course}"


def grader_url(course: str) -> str:
    return f"http://{grader_host(course)}:{GRADER_PORT}"


def formgrade_group(course: str) -> str:
    """Instructors and the grader account: the course's formgrader (nbgrader needs the prefix)."""
    return f"formgrade-{course}"


def nbgrader_group(course: str) -> str:
    """Instructors and students: the course's assignments (nbgrader needs the prefix)."""
    return f"nbgrader-{course}"


def data_path(dataset: str) -> str:
    return f"{DATA_DIR}/{dataset}"


def data_volume(dataset: str) -> str:
    """A dataset's volume in a pod: a DNS-1123 label (at most 63 characters) for any dataset
    name, which may itself be 63 long; distinct names give distinct volumes."""
    name = f"data-{dataset}"
    if len(name) <= 63:
        return name
    return f"{name[:54]}-{hashlib.sha256(dataset.encode()).hexdigest()[:8]}"


def issuer_name(namespace: str) -> str:
    """cert-manager's ClusterIssuer (cluster-wide: the namespace keeps classrooms apart)."""
    return f"{namespace}-letsencrypt"




def chart_names(courses: list[str]) -> dict:
    """`classroom.names` of the packaged chart: everything its templates name."""
    return {
        "exchangeClaim": EXCHANGE_CLAIM,
        "exchangeServer": EXCHANGE_SERVER,
        "dbSecret": DB_SECRET,
        "dbPasswordKey": DB_PASSWORD_KEY,
        "dbUserPasswordKey": DB_USER_PASSWORD_KEY,
        "nbgraderConfigMap": NBGRADER_CONFIGMAP,
        "nbgraderConfigKey": NBGRADER_CONFIG_KEY,
        "hubSecret": HUB_SECRET,
        "hubApiUrl": HUB_API_URL,
        "exchangeRoot": EXCHANGE_ROOT,
        "nbgraderConfigPath": NBGRADER_CONFIG_PATH,
        "homePath": HOME_PATH,
        "notebookUid": NOTEBOOK_UID,
        "usersGid": USERS_GID,
        "graderPort": GRADER_PORT,
        "graderPodLabel": GRADER_POD_LABEL,
        "userServiceAccount": USER_SERVICE_ACCOUNT,
        "gcsfuseAnnotation": GCSFUSE_ANNOTATION,
        "graders": {course: {"service": grader_service(course), "user": grader_user(course),
                             "host": grader_host(course), "formgradeGroup": formgrade_group(course),
                             "nbgraderGroup": nbgrader_group(course)}
                    for course in courses},
    }


def merge_values(base: dict, overlay: dict) -> dict:
    """Values documents layered as helm layers `-f` files and a chart's defaults: mappings
    merge, anything else in `overlay` replaces.  One rule for the packaged chart, the
    release and its render."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged
