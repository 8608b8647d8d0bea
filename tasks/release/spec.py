"""What the releases should be: pure functions from the config to helm values.

The JupyterHub release's values go on top of the packaged classroom chart,
which already carries what the classroom is (images, courses, the db
sidecar, the exchange and nbgrader mounts, the grader services and their
roles; tasks/chart/spec.py).  Here is who logs in and how the hub is reached:
the Authenticator (who is allowed, who is an admin), LDAP, groups, TLS, the
hub's node, the student servers' resources, culling.  No list-valued z2jh
key is set both here and in the packaged chart (helm replaces lists).
Secrets never appear as values: the release stage writes them into a
separate 0600 values file (tasks/release/factory.py).

Every hub setting is checked against the code that reads it: z2jh 4.4.0's
files/hub/jupyterhub_config.py, JupyterHub 5.5.0, KubeSpawner 7.0.0 and
jupyterhub-ldapauthenticator 2.0.2; the dataset volumes against GKE's Cloud
Storage FUSE CSI driver (github.com/GoogleCloudPlatform/gcs-fuse-csi-driver).
"""

from __future__ import annotations

import re

from tasks import contract

ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
INGRESS_CLASS = "traefik"
SSL_CERT_REQUIRED = 2  # ssl.CERT_REQUIRED, as ldap3.Tls(validate=...) takes it

# JupyterHub's load_groups only ever adds members: a student dropped from one course (still
# in another, so still a user) would stay in its group and keep seeing its assignments.
# Run by z2jh's jupyterhub_config.py (hub.extraConfig) before the hub starts: after
# JupyterHub loads the groups, members the config does not list are removed.
EXACT_GROUPS = """\
# Class Tools: the course groups hold exactly the people of courses.yaml.
from jupyterhub import orm as _orm
from jupyterhub.app import JupyterHub as _JupyterHub

_load_groups_adding_only = _JupyterHub.init_groups


async def _load_groups_exactly(self):
    await _load_groups_adding_only(self)
    for name, contents in self.load_groups.items():
        group = _orm.Group.find(self.db, name)
        listed = set(contents.get("users", []))
        for user in [u for u in group.users if u.name not in listed]:
            self.log.info("Removing %s from group %s: not listed in courses.yaml", user.name, name)
            group.users.remove(user)
    self.db.commit()


_JupyterHub.init_groups = _load_groups_exactly
"""


def admins(config) -> list[str]:
    """Hub admins: only auth.admin_users.  Instructors grade through their course's
    grader service; as admins they could open every student's server."""
    return sorted(set(config.classroom["auth"]["admin_users"]))


def allowed_users(config) -> list[str]:
    """Everyone allowed to log in by name: instructors, students and the admins.  The
    courses' grader accounts are hub users (their groups make them) but never log in."""
    people = set(admins(config))
    for course in config.courses:
        people |= set(course["instructors"]) | set(course["students"])
    return sorted(people)


def known_users(config) -> list[str]:
    """Every hub user the config makes: the allowed people and the grader accounts."""
    graders = {contract.grader_user(course["name"]) for course in config.courses}
    return sorted(set(allowed_users(config)) | graders)


def exact_username_pattern(names) -> str:
    """A username_pattern that only these names match."""
    return "^(?:" + "|".join(re.escape(name) for name in sorted(names)) + ")$"


def groups(config) -> dict:
    """`JupyterHub.load_groups`: nbgrader 0.9 across courses (names must keep their prefixes).

    formgrade-<c>: who may use the course's grader service (its instructors and
    its grader account); nbgrader-<c>: who sees the course's assignments.
    """
    load = {}
    for course in config.courses:
        name, instructors = course["name"], set(course["instructors"])
        load[contract.formgrade_group(name)] = {
            "users": sorted(instructors | {contract.grader_user(name)})}
        load[contract.nbgrader_group(name)] = {"users": sorted(instructors | set(course["students"]))}
    return load


def ldap_settings(ldap: dict) -> dict:
    """`LDAPAuthenticator` traits (jupyterhub-ldapauthenticator 2.0.2)."""
    from tasks.config.formats import ldap_port  # here: formats compiles its patterns, a no-op run needs none
    settings = {
        "server_address": ldap["server"],
        "server_port": ldap_port(ldap["port"], ldap["tls_strategy"]),
        "tls_strategy": ldap["tls_strategy"],  # 2.0 replaced use_ssl
    }
    if ldap["tls_strategy"] != "insecure":
        # ldap3 accepts any certificate unless told otherwise; the hub's system CA store
        # decides, or auth.ldap.ca_bundle (mounted into the hub, hub_values).
        settings["tls_kwargs"] = {"validate": SSL_CERT_REQUIRED}
        if ldap["ca_bundle"]:
            settings["tls_kwargs"]["ca_certs_file"] = contract.LDAP_CA_PATH
    if ldap["bind_dn_templates"]:
        # A list in 2.x; with lookup_dn and no template it binds as the DN it looked up.
        settings["bind_dn_template"] = list(ldap["bind_dn_templates"])
    if ldap["allowed_groups"]:
        settings["allowed_groups"] = list(ldap["allowed_groups"])
    if ldap["search_user"]:
        # resolve_username() searches user_search_base for (user_attribute=<login>) as the
        # search user and reads lookup_dn_user_dn_attribute from the entry it finds; with
        # that attribute unset it asks for attribute None and refuses every login, so it
        # defaults to the login attribute itself (the login name resolves to itself).
        settings.update(
            lookup_dn=True,
            lookup_dn_search_user=ldap["search_user"],
            user_search_base=ldap["user_search_base"],
            user_attribute=ldap["user_attribute"],
            lookup_dn_user_dn_attribute=ldap["lookup_dn_user_dn_attribute"] or ldap["user_attribute"],
        )
    return settings


def hub_config(config) -> dict:
    """`hub.config`: traitlets sections z2jh passes through to JupyterHub."""
    auth = config.classroom["auth"]
    authenticator = {
        "admin_users": admins(config),
        "allowed_users": allowed_users(config),
        # JupyterHub 5 defaults this to true once allowed_users is set: users
        # removed from courses.yaml would stay allowed.
        "allow_existing_users": False,
    }
    if not (auth["type"] == "ldap" and auth["ldap"]["allowed_groups"]):
        # courses.yaml is the only way in: at its next start the hub deletes every user the
        # config no longer names, and with it their sessions, API tokens and group memberships
        # (their home volumes stay).  With LDAP allowed_groups the directory decides instead.
        authenticator["username_pattern"] = exact_username_pattern(known_users(config))
        authenticator["delete_invalid_users"] = True
    settings = {
        "JupyterHub": {
            "authenticator_class": auth["type"],  # z2jh's short names: "dummy", "ldap"
            # Deprecated since JupyterHub 2 and without effect (z2jh's values still set it
            # to true): an admin holds JupyterHub's whole admin role, which opens every
            # student's server and every grader, and JupyterHub 5.5 refuses to narrow it
            # (roles.create_role). Hence only auth.admin_users are admins, never instructors.
            "admin_access": False,
            "load_groups": groups(config),
        },
        "Authenticator": authenticator,
    }
    if auth["type"] == "ldap":
        settings["LDAPAuthenticator"] = ldap_settings(auth["ldap"])
    return settings


def data_bucket(config) -> str:
    """The bucket name of buckets.data when the cluster can mount it (gs://), else ""."""
    url = config.classroom["buckets"]["data"]
    return url[len("gs://"):].rstrip("/") if url.startswith("gs://") else ""


def dataset_volume(bucket: str, dataset: str) -> dict:
    """One dataset as a CSI ephemeral volume of the Cloud Storage FUSE driver: read-only, and
    only the dataset's own folder of the bucket (data:upload puts it at <bucket>/<name>/).
    One volume per dataset, not the bucket: a bucket mount would show every course's data."""
    return {"name": contract.data_volume(dataset),
            "csi": {"driver": contract.GCSFUSE_DRIVER, "readOnly": True,
                    # implicit-dirs: folders exist only as object name prefixes in the bucket.
                    "volumeAttributes": {"bucketName": bucket,
                                         "mountOptions": f"implicit-dirs,only-dir={dataset}"}}}


def dataset_mount(dataset: str) -> dict:
    return {"name": contract.data_volume(dataset), "mountPath": contract.data_path(dataset), "readOnly": True}


def dataset_groups(config, dataset: dict) -> list[str]:
    """The hub groups whose members get the dataset; [] = everybody.

    A course's students and instructors are its nbgrader-<course> group (`groups`).  A course
    with no students listed is open to every user (classroom-start's rule), so its datasets
    go to everybody too.
    """
    open_courses = {c["name"] for c in config.courses if not c["students"]}
    names = dataset.get("courses") or []
    if not names or open_courses & set(names):
        return []
    return sorted(contract.nbgrader_group(name) for name in set(names))


def data_values(config) -> dict:
    """Which datasets every student server mounts, as hub values (empty without datasets or
    without a gs:// data bucket: a bucket on disk cannot reach the cluster).

    Datasets for everybody are z2jh's singleuser.storage.extraVolumes/extraVolumeMounts
    (dicts: helm merges them with the packaged exchange and nbgrader mounts).  A course's
    datasets are decided at spawn time by JupyterHub 5.5's `Spawner.group_overrides`: the
    volumes, mounts and annotation reach only members of the course's groups (dicts merged
    into KubeSpawner's own, in key order).  GKE injects the gcsfuse sidecar into a pod that
    has the annotation, so only a pod that mounts a dataset carries it.  JupyterHub merges an
    override into that user's spawner, which lives until the hub restarts: a user removed from
    a course loses its datasets at the hub's next start, which every courses.yaml edit makes.
    """
    bucket = data_bucket(config) if config.datasets else ""
    if not bucket:
        return {}
    annotation = {contract.GCSFUSE_ANNOTATION: "true"}
    volumes, mounts, overrides = {}, {}, {}
    for dataset in config.datasets:
        name, groups = dataset["name"], dataset_groups(config, dataset)
        volume, mount = dataset_volume(bucket, name), dataset_mount(name)
        if not groups:
            volumes[volume["name"]], mounts[volume["name"]] = volume, mount
            continue
        overrides[f"classroom-data-{name}"] = {
            "groups": groups,
            "spawner_override": {"volumes": {volume["name"]: volume},
                                 "volume_mounts": {volume["name"]: mount},
                                 "extra_annotations": annotation}}
    singleuser = {
        # The principal of the data bucket's one IAM binding (README: datasets); the chart makes
        # this service account when the release names it.
        "serviceAccountName": contract.USER_SERVICE_ACCOUNT,
        # The gcsfuse sidecar gets its token from the GKE metadata server (Workload Identity),
        # which z2jh's singleuser NetworkPolicy denies by default; the whole pod shares it.
        "networkPolicy": {"egressAllowRules": {"cloudMetadataServer": True}},
    }
    if volumes:
        singleuser["storage"] = {"extraVolumes": volumes, "extraVolumeMounts": mounts}
        singleuser["extraAnnotations"] = annotation
    # The service account gives the pod a cloud identity only: no Kubernetes API token in
    # the student's container (KubeSpawner would mount one for a named service account).
    spawner = {"automount_service_account_token": False}
    if overrides:
        spawner["group_overrides"] = overrides
    return {"singleuser": singleuser, "hub": {"config": {"KubeSpawner": spawner}}}


def grader_data(config) -> dict:
    """`classroom.data.graders`: per course, the datasets its grader mounts (the course's and
    everybody's), so that autograding a notebook that reads DATA_DIR works; {} when the
    servers mount none (data_values).  The chart's graders.yaml adds them to the Deployment."""
    bucket = data_bucket(config)
    if not bucket:
        return {}
    groups = {d["name"]: dataset_groups(config, d) for d in config.datasets}
    graders = {}
    for course in config.courses:
        group = contract.nbgrader_group(course["name"])
        names = [name for name, allowed in groups.items() if not allowed or group in allowed]
        if names:
            graders[course["name"]] = {"volumes": [dataset_volume(bucket, n) for n in names],
                                       "volumeMounts": [dataset_mount(n) for n in names]}
    return graders


def proxy_and_ingress(config, static_ip: str) -> dict:
    """How the hub is reached: z2jh's autohttps, an Ingress with cert-manager, or plain HTTP;
    on the static IP, unless an Ingress controller holds it."""
    hub = config.classroom["hub"]
    tls = hub["tls"]
    if tls["mode"] == "ingress":
        return {"proxy": {"https": {"enabled": False}, "service": {"type": "ClusterIP"}},
                "ingress": {"enabled": True, "hosts": [hub["domain"]], "ingressClassName": INGRESS_CLASS,
                            "annotations": {"cert-manager.io/cluster-issuer": issuer_name(config)},
                            "tls": [{"hosts": [hub["domain"]], "secretName": contract.TLS_SECRET}]}}
    proxy = {"https": {"enabled": False}}
    if tls["mode"] == "autohttps":
        proxy["https"] = {"enabled": True, "type": "letsencrypt", "hosts": [hub["domain"]],
                          "letsencrypt": {"contactEmail": tls["email"],
                                          "acmeServer": ACME_SERVERS[tls["acme_server"]]}}
    if static_ip:
        proxy["service"] = {"loadBalancerIP": static_ip}
    return {"proxy": proxy}


# z2jh 4.4.0's own images, by the values path of each one's name, and the last part of
# that name (what cluster.image_mirror holds it as). The notebook image is ours.
UPSTREAM_IMAGES = {
    ("hub", "image"): "k8s-hub",
    ("proxy", "chp", "image"): "configurable-http-proxy",
    ("proxy", "traefik", "image"): "traefik",
    ("proxy", "secretSync", "image"): "k8s-secret-sync",
    ("singleuser", "networkTools", "image"): "k8s-network-tools",
    ("scheduling", "userScheduler", "image"): "kube-scheduler",
    ("scheduling", "userPlaceholder", "image"): "pause",
    ("prePuller", "hook", "image"): "k8s-image-awaiter",
    ("prePuller", "pause", "image"): "pause",
}
# Every pod z2jh runs, by the values path of its pod settings, and the key of its own
# tolerations there (z2jh adds scheduling.corePods/userPods.tolerations to these).
Z2JH_PODS = {
    ("hub",): "tolerations",
    ("proxy", "chp"): "tolerations",
    ("proxy", "traefik"): "tolerations",
    ("singleuser",): "extraTolerations",
    ("scheduling", "userScheduler"): "tolerations",
    ("prePuller", "hook"): "tolerations",
}


def _nested(path: tuple, leaf: dict) -> dict:
    for key in reversed(path):
        leaf = {key: leaf}
    return leaf


def node_label(text: str) -> dict:
    key, _, value = text.partition("=")
    return {key: value}


def toleration(taint: str) -> dict:
    """The toleration of a node taint KEY[=VALUE]:EFFECT."""
    key_value, _, effect = taint.rpartition(":")
    key, has_value, value = key_value.partition("=")
    if has_value:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def node_pool_values(config) -> dict:
    """cluster.node_pool: every pod of the release on the pool's nodes (the hub also on
    hub.node_label's): z2jh's pods, the image pullers, the graders and the NFS server."""
    pool = config.classroom["cluster"]["node_pool"]
    selector = node_label(pool["label"]) if pool["label"] else {}
    tolerations = [toleration(pool["taint"])] if pool["taint"] else []
    jupyterhub: dict = {}
    classroom: dict = {}
    for path, key in Z2JH_PODS.items():
        settings = {}
        if selector:
            settings["nodeSelector"] = selector
        if tolerations:
            settings[key] = tolerations
        if settings:
            jupyterhub = contract.merge_values(jupyterhub, _nested(path, settings))
    if tolerations:
        # the continuous and hook pullers' DaemonSets
        jupyterhub = contract.merge_values(jupyterhub, {"prePuller": {"extraTolerations": tolerations}})
    for path in (("grader",), ("exchange", "nfs")):
        settings = {}
        if selector:
            settings["nodeSelector"] = selector
        if tolerations:
            settings["tolerations"] = tolerations
        if settings:
            classroom = contract.merge_values(classroom, _nested(path, settings))
    return {"jupyterhub": jupyterhub, "classroom": classroom}


def tolerates(node: dict, config) -> bool:
    """The classroom's pods may run on NODE: it takes new pods, carries the node pool's
    label (if any), and every taint that keeps pods off (NoSchedule, NoExecute) is the
    pool's. A Kubernetes Node object as `kubectl get nodes -o json` lists it."""
    pool = config.classroom["cluster"]["node_pool"]
    if node.get("spec", {}).get("unschedulable"):
        return False
    if pool["label"]:
        (key, value), = node_label(pool["label"]).items()
        if (node["metadata"].get("labels") or {}).get(key) != value:
            return False
    allowed = toleration(pool["taint"]) if pool["taint"] else None
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") == "PreferNoSchedule":
            continue
        if not allowed or taint.get("key") != allowed["key"] or taint.get("effect") != allowed["effect"]:
            return False
        if allowed["operator"] == "Equal" and taint.get("value", "") != allowed["value"]:
            return False
    return True


def hub_node(nodes: list[dict], config) -> str | None:
    """The node cluster:hub-node labels for the hub: the first by name the classroom may run on."""
    fit = sorted(n["metadata"]["name"] for n in nodes if tolerates(n, config))
    return fit[0] if fit else None


def image_mirror_values(config) -> dict:
    """cluster.image_mirror: z2jh's images from the mirror, each under its own tag."""
    mirror = config.classroom["cluster"]["image_mirror"]
    values: dict = {}
    if mirror:
        for path, name in UPSTREAM_IMAGES.items():
            values = contract.merge_values(values, _nested(path, {"name": f"{mirror}/{name}"}))
    if not config.classroom["cluster"]["pre_pull_hook"]:
        values = contract.merge_values(values, {"prePuller": {"hook": {"enabled": False}}})
    return values


def hub_values(config, static_ip: str, ldap_ca: str = "") -> dict:
    """The `jupyterhub:` values of the release (no secrets)."""
    c = config.classroom
    key, _, value = c["hub"]["node_label"].partition("=")
    resources = c["resources"]
    culling = c["culling"]
    values = {
        "hub": {
            "nodeSelector": {key: value},
            "config": hub_config(config),
            "extraConfig": {"classroom-exact-groups": EXACT_GROUPS},
            # Exactly these users hold the admin role (JupyterHub revokes it from anyone
            # else, e.g. instructors who were admins before): admin_users alone only adds.
            "loadRoles": {"admin": {"users": admins(config)}},
        },
        "singleuser": {
            "startTimeout": c["hub"]["start_timeout"],
            "cpu": {"limit": resources["cpu_limit"], "guarantee": resources["cpu_guarantee"]},
            # JupyterHub's byte specifications: K/M/G/T suffixes (validated in the config).
            "memory": {"limit": resources["memory_limit"], "guarantee": resources["memory_guarantee"]},
            "storage": {"capacity": resources["home_storage"]},
        },
        "cull": {"enabled": culling["enabled"], "timeout": culling["timeout"], "every": culling["every"]},
    }
    if config.classroom["auth"]["ldap"]["ca_bundle"]:
        # the CA that signed the directory's certificate (public), a file in the hub pod
        values["hub"]["extraFiles"] = {"ldap-ca": {"mountPath": contract.LDAP_CA_PATH, "stringData": ldap_ca}}
    values = contract.merge_values(values, proxy_and_ingress(config, static_ip))
    values = contract.merge_values(values, node_pool_values(config)["jupyterhub"])
    values = contract.merge_values(values, image_mirror_values(config))
    return contract.merge_values(values, data_values(config))


def release_values(config, static_ip: str = "", ldap_ca: str = "") -> dict:
    """Everything helm needs besides the packaged chart and the secrets file. LDAP_CA: the
    text of auth.ldap.ca_bundle (the release stage reads it)."""
    tls = config.classroom["hub"]["tls"]
    # The ClusterIssuer (and so the contact email) belongs to release:cert-manager.
    classroom = {"tls": {"mode": tls["mode"], "acmeServer": tls["acme_server"], "ingressClass": INGRESS_CLASS}}
    graders = grader_data(config)
    if graders:
        classroom["data"] = {"graders": graders}
    classroom = contract.merge_values(classroom, node_pool_values(config)["classroom"])
    return {"jupyterhub": hub_values(config, static_ip, ldap_ca), "classroom": classroom}


def issuer_name(config) -> str:
    return contract.issuer_name(config.classroom["release"]["namespace"])


def cluster_issuer(config) -> dict:
    """cert-manager's ClusterIssuer for Let's Encrypt (ACME v2, HTTP-01 through the ingress class)."""
    tls = config.classroom["hub"]["tls"]
    name = issuer_name(config)
    return {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "class-tools"}},
        "spec": {"acme": {"server": ACME_SERVERS[tls["acme_server"]], "email": tls["email"],
                          "privateKeySecretRef": {"name": f"{name}-account-key"},
                          "solvers": [{"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}]}},
    }


def cert_manager_values() -> dict:
    return {"crds": {"enabled": True}}


def ingress_values(static_ip: str = "") -> dict:
    """Traefik as the ingress controller, on the static IP when there is one."""
    values = {"ingressClass": {"enabled": True, "isDefaultClass": False, "name": INGRESS_CLASS}}
    if static_ip:
        values["service"] = {"spec": {"loadBalancerIP": static_ip}}
    return values
