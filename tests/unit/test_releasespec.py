"""The values the JupyterHub release computes (tasks/release/spec.py), branch by branch.

The expected values are the settings of the code that reads them (z2jh 4.4.0's
jupyterhub_config.py, JupyterHub 5.5.0, jupyterhub-ldapauthenticator 2.0.2),
written out here by hand from their documentation and source.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tasks import contract
from tasks.config.model import Config
from tasks.release import spec as releasespec

CLASSROOM = {
    "release": {"name": "classroom", "namespace": "classroom"},
    "hub": {"domain": "", "node_label": "hub-node=true", "start_timeout": 300,
            "tls": {"mode": "none", "email": "", "acme_server": "production"}},
    "auth": {"type": "dummy", "admin_users": [], "dummy_trial": False,
             "ldap": {"server": "", "port": 0, "bind_dn_templates": [], "tls_strategy": "on_connect", "ca_bundle": "",
                      "search_user": "", "allowed_groups": [], "user_search_base": "",
                      "user_attribute": "uid", "lookup_dn_user_dn_attribute": ""}},
    "culling": {"enabled": True, "timeout": 3600, "every": 600},
    "buckets": {"charts": "gs://class-charts", "data": "gs://class-data"},
    "gcp": {"project": "", "cluster": "", "zone": "us-central1-a", "region": "us-central1"},
    "resources": {"cpu_guarantee": 0.25, "cpu_limit": 2, "memory_guarantee": "512M",
                  "memory_limit": "2G", "home_storage": "10Gi"},
    "cluster": {"node_pool": {"label": "", "taint": ""}, "image_mirror": "", "pre_pull_hook": True},
}
COURSES = [
    {"name": "ds-101", "instructors": ["prof"], "students": ["ann", "bob"]},
    {"name": "sql-201", "instructors": ["prof", "ta"], "students": ["bob", "cy"]},
]
LDAP = {"type": "ldap", "admin_users": ["dean"],
        "ldap": {"server": "ldap.example.edu", "bind_dn_templates": ["uid={username},ou=people,dc=example,dc=edu"]}}


def _merge(base: dict, overlay: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) else value
    return merged


def make(courses=COURSES, **sections) -> Config:
    return Config(directory=Path("/nonexistent/config"), classroom=_merge(CLASSROOM, sections),
                  courses=copy.deepcopy(courses), datasets=[])


def hub_config(config) -> dict:
    return releasespec.release_values(config)["jupyterhub"]["hub"]["config"]


# ---- who: admins, allowed users, groups -------------------------------------------------

def test_admins_are_only_the_configured_admins_never_the_instructors():
    config = make(auth={"admin_users": ["dean", "it"]})
    values = releasespec.release_values(config)["jupyterhub"]["hub"]
    assert values["config"]["Authenticator"]["admin_users"] == ["dean", "it"]
    # the admin role is exact, so JupyterHub revokes it from earlier admins (instructors before)
    # exactly these, and JupyterHub's admin role unchanged (5.5 refuses a narrower one)
    assert values["loadRoles"] == {"admin": {"users": ["dean", "it"]}}
    assert releasespec.admins(make()) == []


def test_allowed_users_are_instructors_students_and_admins_never_graders():
    config = make(auth={"admin_users": ["dean"]})
    assert hub_config(config)["Authenticator"]["allowed_users"] == ["ann", "bob", "cy", "dean", "prof", "ta"]
    alone = make(courses=[{"name": "c", "instructors": ["i"], "students": []}])
    assert releasespec.allowed_users(alone) == ["i"]
    assert releasespec.known_users(alone) == ["grader-c", "i"]


def test_users_the_config_no_longer_names_are_deleted_at_the_next_start():
    authenticator = hub_config(make(auth={"admin_users": ["dean"]}))["Authenticator"]
    assert authenticator["delete_invalid_users"] is True
    pattern = authenticator["username_pattern"]
    assert pattern == "^(?:ann|bob|cy|dean|grader\\-ds\\-101|grader\\-sql\\-201|prof|ta)$"
    import re
    assert re.match(pattern, "grader-ds-101") and re.match(pattern, "dean")
    assert not re.match(pattern, "anna") and not re.match(pattern, "xann") and not re.match(pattern, "grader")


def test_with_ldap_groups_the_directory_decides_who_stays():
    ldap = _merge(LDAP, {"ldap": {"allowed_groups": ["cn=ds,ou=groups,dc=example,dc=edu"]}})
    authenticator = hub_config(make(auth=ldap))["Authenticator"]
    assert "username_pattern" not in authenticator and "delete_invalid_users" not in authenticator
    plain = hub_config(make(auth=LDAP))["Authenticator"]
    assert plain["delete_invalid_users"] is True


def test_exact_username_pattern_escapes_names():
    assert releasespec.exact_username_pattern(["b.c", "a"]) == "^(?:a|b\\.c)$"


def test_groups_are_made_exact_by_the_hub_config_snippet():
    hub = releasespec.release_values(make())["jupyterhub"]["hub"]
    snippet = hub["extraConfig"]["classroom-exact-groups"]
    assert snippet == releasespec.EXACT_GROUPS
    compile(snippet, "extraConfig", "exec")  # z2jh exec()s it: it must at least be Python
    assert "init_groups" in snippet and "group.users.remove" in snippet


def test_nobody_outside_the_lists_gets_in_and_admins_cannot_open_servers():
    config = hub_config(make())
    # JupyterHub 5 would default allow_existing_users to true once allowed_users is set
    assert config["Authenticator"]["allow_existing_users"] is False
    # z2jh sets admin_access: true in its own defaults
    assert config["JupyterHub"]["admin_access"] is False
    assert "allow_all" not in config["Authenticator"]


def test_groups_give_graders_to_instructors_and_courses_to_their_people():
    assert hub_config(make())["JupyterHub"]["load_groups"] == {
        "formgrade-ds-101": {"users": ["grader-ds-101", "prof"]},
        "nbgrader-ds-101": {"users": ["ann", "bob", "prof"]},
        "formgrade-sql-201": {"users": ["grader-sql-201", "prof", "ta"]},
        "nbgrader-sql-201": {"users": ["bob", "cy", "prof", "ta"]},
    }


def test_group_names_come_from_the_contract():
    groups = releasespec.groups(make())
    assert set(groups) == {contract.formgrade_group(c["name"]) for c in COURSES} | {
        contract.nbgrader_group(c["name"]) for c in COURSES}


# ---- login: dummy and LDAP ----------------------------------------------------------------

def test_dummy_login_has_no_ldap_section():
    config = hub_config(make())
    assert config["JupyterHub"]["authenticator_class"] == "dummy"
    assert set(config) == {"JupyterHub", "Authenticator"}


def test_ldap_without_search_user_binds_with_the_templates():
    config = hub_config(make(auth=LDAP))
    assert config["JupyterHub"]["authenticator_class"] == "ldap"
    assert config["LDAPAuthenticator"] == {
        "server_address": "ldap.example.edu",
        "server_port": 636,
        "tls_strategy": "on_connect",
        "tls_kwargs": {"validate": 2},  # ssl.CERT_REQUIRED: ldap3 would accept any certificate
        "bind_dn_template": ["uid={username},ou=people,dc=example,dc=edu"],
    }


@pytest.mark.parametrize("strategy,checked", [("on_connect", True), ("before_bind", True), ("insecure", False)])
def test_ldap_certificates_are_checked_whenever_tls_is_used(strategy, checked):
    settings = hub_config(make(auth=_merge(LDAP, {"ldap": {"tls_strategy": strategy}})))["LDAPAuthenticator"]
    assert ("tls_kwargs" in settings) is checked
    if checked:
        import ssl
        assert settings["tls_kwargs"] == {"validate": ssl.CERT_REQUIRED}


@pytest.mark.parametrize("strategy,port", [("on_connect", 636), ("before_bind", 389), ("insecure", 389)])
def test_ldap_port_zero_follows_the_tls_strategy(strategy, port):
    config = make(auth=_merge(LDAP, {"ldap": {"tls_strategy": strategy}}))
    settings = hub_config(config)["LDAPAuthenticator"]
    assert settings["server_port"] == port and settings["tls_strategy"] == strategy


@pytest.mark.parametrize("strategy", ["on_connect", "before_bind"])
def test_a_given_ldap_port_is_kept(strategy):
    config = make(auth=_merge(LDAP, {"ldap": {"port": 1636, "tls_strategy": strategy}}))
    assert hub_config(config)["LDAPAuthenticator"]["server_port"] == 1636


def test_ldap_allowed_groups_are_passed_on():
    groups = ["cn=ds,ou=groups,dc=example,dc=edu", "cn=staff,ou=groups,dc=example,dc=edu"]
    config = make(auth=_merge(LDAP, {"ldap": {"allowed_groups": groups}}))
    assert hub_config(config)["LDAPAuthenticator"]["allowed_groups"] == groups


SEARCH = {"search_user": "cn=hub,dc=example,dc=edu", "user_search_base": "ou=people,dc=example,dc=edu",
          "user_attribute": "uid", "bind_dn_templates": []}


def test_search_user_looks_the_user_up_under_the_search_base():
    settings = hub_config(make(auth=_merge(LDAP, {"ldap": SEARCH})))["LDAPAuthenticator"]
    assert settings == {
        "server_address": "ldap.example.edu",
        "server_port": 636,
        "tls_strategy": "on_connect",
        "tls_kwargs": {"validate": 2},
        "lookup_dn": True,
        "lookup_dn_search_user": "cn=hub,dc=example,dc=edu",
        "user_search_base": "ou=people,dc=example,dc=edu",
        "user_attribute": "uid",
        # 2.0.2 reads this attribute of the entry found; unset, every login fails
        "lookup_dn_user_dn_attribute": "uid",
    }
    assert "lookup_dn_search_password" not in settings, "a secret is never a public value"


def test_search_user_with_its_own_dn_attribute_and_templates():
    ldap = {**SEARCH, "user_attribute": "sAMAccountName", "lookup_dn_user_dn_attribute": "cn",
            "bind_dn_templates": ["cn={username},ou=people,dc=example,dc=edu"], "tls_strategy": "before_bind"}
    settings = hub_config(make(auth=_merge(LDAP, {"ldap": ldap})))["LDAPAuthenticator"]
    assert settings["user_attribute"] == "sAMAccountName"
    assert settings["lookup_dn_user_dn_attribute"] == "cn"
    assert settings["bind_dn_template"] == ["cn={username},ou=people,dc=example,dc=edu"]
    assert settings["server_port"] == 389


def test_no_search_user_no_lookup():
    settings = hub_config(make(auth=_merge(LDAP, {"ldap": {"user_search_base": "ou=x,dc=y"}})))["LDAPAuthenticator"]
    assert not {"lookup_dn", "lookup_dn_search_user", "user_search_base", "user_attribute",
                "lookup_dn_user_dn_attribute"} & set(settings)


def test_every_hub_config_section_is_a_configurable_class():
    """z2jh's jupyterhub_config.py exits when a hub.config key is not capitalised."""
    for config in (make(), make(auth=_merge(LDAP, {"ldap": SEARCH}))):
        assert all(section[:1].isupper() for section in hub_config(config))


# ---- how it is reached: TLS and the static IP ---------------------------------------------

def test_tls_none_serves_plain_http_on_the_static_ip():
    values = releasespec.release_values(make(), "203.0.113.7")
    assert values["jupyterhub"]["proxy"] == {"service": {"loadBalancerIP": "203.0.113.7"},
                                             "https": {"enabled": False}}
    assert "ingress" not in values["jupyterhub"]
    assert values["classroom"] == {"tls": {"mode": "none", "acmeServer": "production", "ingressClass": "traefik"}}


def test_no_static_ip_no_load_balancer_ip():
    assert releasespec.release_values(make())["jupyterhub"]["proxy"] == {"https": {"enabled": False}}


@pytest.mark.parametrize("server,url", [("staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
                                        ("production", "https://acme-v02.api.letsencrypt.org/directory")])
def test_autohttps_is_z2jhs_lets_encrypt(server, url):
    config = make(hub={"domain": "hub.example.edu",
                       "tls": {"mode": "autohttps", "email": "staff@example.edu", "acme_server": server}})
    values = releasespec.release_values(config, "203.0.113.7")
    assert values["jupyterhub"]["proxy"] == {
        "service": {"loadBalancerIP": "203.0.113.7"},
        "https": {"enabled": True, "type": "letsencrypt", "hosts": ["hub.example.edu"],
                  "letsencrypt": {"contactEmail": "staff@example.edu", "acmeServer": url}}}
    assert values["classroom"]["tls"] == {"mode": "autohttps", "acmeServer": server, "ingressClass": "traefik"}


def test_ingress_uses_cert_manager_and_leaves_the_ip_to_the_controller():
    config = make(hub={"domain": "hub.example.edu", "tls": {"mode": "ingress", "email": "staff@example.edu"}},
                  release={"namespace": "ds"})
    values = releasespec.release_values(config, "203.0.113.7")["jupyterhub"]
    assert values["proxy"] == {"https": {"enabled": False}, "service": {"type": "ClusterIP"}}
    assert values["ingress"] == {
        "enabled": True, "hosts": ["hub.example.edu"], "ingressClassName": "traefik",
        "annotations": {"cert-manager.io/cluster-issuer": "ds-letsencrypt"},
        "tls": [{"hosts": ["hub.example.edu"], "secretName": contract.TLS_SECRET}]}


def test_cluster_issuer_is_cert_managers_with_the_email():
    config = make(hub={"tls": {"mode": "ingress", "email": "staff@example.edu", "acme_server": "staging"}},
                  release={"namespace": "ds"})
    assert releasespec.cluster_issuer(config) == {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "ds-letsencrypt", "labels": {"app.kubernetes.io/managed-by": "class-tools"}},
        "spec": {"acme": {"server": "https://acme-staging-v02.api.letsencrypt.org/directory",
                          "email": "staff@example.edu",
                          "privateKeySecretRef": {"name": "ds-letsencrypt-account-key"},
                          "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]}}}
    assert releasespec.issuer_name(config) == contract.issuer_name("ds")


def test_cert_manager_and_traefik_values():
    assert releasespec.cert_manager_values() == {"crds": {"enabled": True}}
    ingress_class = {"enabled": True, "isDefaultClass": False, "name": "traefik"}
    assert releasespec.ingress_values() == {"ingressClass": ingress_class}
    assert releasespec.ingress_values("203.0.113.7") == {
        "ingressClass": ingress_class, "service": {"spec": {"loadBalancerIP": "203.0.113.7"}}}


# ---- the servers: node, resources, culling ------------------------------------------------

def test_hub_node_resources_and_start_timeout():
    config = make(hub={"node_label": "pool=hub", "start_timeout": 600},
                  resources={"cpu_guarantee": 0.5, "cpu_limit": 1.5, "memory_guarantee": "768M",
                             "memory_limit": "3G", "home_storage": "5Gi"})
    values = releasespec.release_values(config)["jupyterhub"]
    assert values["hub"]["nodeSelector"] == {"pool": "hub"}
    assert values["singleuser"] == {
        "startTimeout": 600,
        "cpu": {"limit": 1.5, "guarantee": 0.5},
        # JupyterHub's ByteSpecification: K/M/G/T, passed on as configured
        "memory": {"limit": "3G", "guarantee": "768M"},
        "storage": {"capacity": "5Gi"},
    }


@pytest.mark.parametrize("enabled", [True, False])
def test_culling(enabled):
    config = make(culling={"enabled": enabled, "timeout": 1800, "every": 300})
    assert releasespec.release_values(config)["jupyterhub"]["cull"] == {
        "enabled": enabled, "timeout": 1800, "every": 300}




# ---- datasets: one read-only Cloud Storage FUSE volume each, per course -------------------

DATASETS = [
    {"name": "flights", "source": "config/datasets/flights", "description": "for all"},
    {"name": "genomes", "source": "gs://elsewhere/genomes", "courses": ["ds-101"]},
    {"name": "orders", "source": "https://git.example.edu/orders.git", "courses": ["sql-201", "ds-101"]},
]
OPEN_COURSE = {"name": "open-1", "instructors": ["olga"], "students": []}


def with_data(datasets=DATASETS, bucket="gs://class-data", courses=COURSES) -> Config:
    config = make(courses=courses, buckets={"data": bucket})
    config.datasets.extend(copy.deepcopy(datasets))
    return config


def data_volumes(values: dict) -> tuple[dict, dict]:
    storage = values["jupyterhub"]["singleuser"].get("storage", {})
    return storage.get("extraVolumes", {}), storage.get("extraVolumeMounts", {})


def overrides(values: dict) -> dict:
    return values["jupyterhub"]["hub"]["config"].get("KubeSpawner", {}).get("group_overrides", {})


def test_a_dataset_is_a_read_only_fuse_volume_of_its_own_folder_at_the_shared_path():
    volume = releasespec.dataset_volume("class-data", "flights")
    assert volume == {"name": "data-flights",
                      "csi": {"driver": "gcsfuse.csi.storage.gke.io", "readOnly": True,
                              "volumeAttributes": {"bucketName": "class-data",
                                                   "mountOptions": "implicit-dirs,only-dir=flights"}}}
    assert releasespec.dataset_mount("flights") == {"name": "data-flights", "mountPath": "/srv/data/flights",
                                                    "readOnly": True}
    assert contract.data_path("flights") == f"{contract.DATA_DIR}/flights"


def test_datasets_for_everybody_are_extra_volumes_of_every_server_with_the_annotation():
    values = releasespec.release_values(with_data())
    volumes, mounts = data_volumes(values)
    assert sorted(volumes) == sorted(mounts) == ["data-flights"]
    assert volumes["data-flights"]["csi"]["volumeAttributes"]["mountOptions"] == "implicit-dirs,only-dir=flights"
    assert volumes["data-flights"]["csi"]["volumeAttributes"]["bucketName"] == "class-data"
    assert mounts["data-flights"]["mountPath"] == "/srv/data/flights"
    singleuser = values["jupyterhub"]["singleuser"]
    assert singleuser["extraAnnotations"] == {"gke-gcsfuse/volumes": "true"}
    assert singleuser["serviceAccountName"] == contract.USER_SERVICE_ACCOUNT
    # the sidecar's token comes from the GKE metadata server, which z2jh's policy denies
    assert singleuser["networkPolicy"] == {"egressAllowRules": {"cloudMetadataServer": True}}
    assert values["jupyterhub"]["hub"]["config"]["KubeSpawner"]["automount_service_account_token"] is False
    # the rest of singleuser is untouched
    assert singleuser["storage"]["capacity"] == CLASSROOM["resources"]["home_storage"]


def test_a_courses_dataset_reaches_only_its_groups_at_spawn_time():
    values = releasespec.release_values(with_data())
    found = overrides(values)
    assert sorted(found) == ["classroom-data-genomes", "classroom-data-orders"]
    genomes, orders = found["classroom-data-genomes"], found["classroom-data-orders"]
    assert genomes["groups"] == ["nbgrader-ds-101"]
    assert orders["groups"] == ["nbgrader-ds-101", "nbgrader-sql-201"]
    override = genomes["spawner_override"]
    assert override == {
        "volumes": {"data-genomes": releasespec.dataset_volume("class-data", "genomes")},
        "volume_mounts": {"data-genomes": releasespec.dataset_mount("genomes")},
        "extra_annotations": {"gke-gcsfuse/volumes": "true"}}
    assert "data-genomes" not in data_volumes(values)[0]
    # nbgrader-<course> holds the course's students and instructors (instructors get it too)
    groups = releasespec.groups(with_data())
    assert set(groups["nbgrader-ds-101"]["users"]) == {"prof", "ann", "bob"}


def test_no_dataset_for_everybody_no_annotation_on_every_server():
    values = releasespec.release_values(with_data([d for d in DATASETS if d.get("courses")]))
    singleuser = values["jupyterhub"]["singleuser"]
    assert "extraAnnotations" not in singleuser
    assert data_volumes(values) == ({}, {})
    assert overrides(values)  # they come with the course's override instead
    assert all(o["spawner_override"]["extra_annotations"] == {"gke-gcsfuse/volumes": "true"}
               for o in overrides(values).values())


def test_a_course_open_to_everybody_shares_its_datasets_with_everybody():
    """classroom-start: a course without students is every user's; so are its datasets."""
    courses = COURSES + [OPEN_COURSE]
    config = with_data([{"name": "maps", "source": "x", "courses": ["open-1"]},
                        {"name": "mixed", "source": "x", "courses": ["ds-101", "open-1"]},
                        {"name": "closed", "source": "x", "courses": ["ds-101"]}], courses=courses)
    values = releasespec.release_values(config)
    assert sorted(data_volumes(values)[0]) == ["data-maps", "data-mixed"]
    assert sorted(overrides(values)) == ["classroom-data-closed"]


@pytest.mark.parametrize("bucket", ["file://.classroom/buckets/data", "file:///srv/buckets/data"])
def test_a_bucket_on_disk_mounts_nothing_in_the_cluster(bucket):
    values = releasespec.release_values(with_data(bucket=bucket))
    assert releasespec.data_values(with_data(bucket=bucket)) == {}
    assert "KubeSpawner" not in values["jupyterhub"]["hub"]["config"]
    assert "serviceAccountName" not in values["jupyterhub"]["singleuser"]
    assert "networkPolicy" not in values["jupyterhub"]["singleuser"]


def test_no_datasets_mount_nothing_and_leave_the_metadata_server_closed():
    values = releasespec.release_values(with_data([]))
    assert releasespec.data_values(with_data([])) == {}
    assert set(values["jupyterhub"]["singleuser"]) == {"startTimeout", "cpu", "memory", "storage"}
    assert "KubeSpawner" not in values["jupyterhub"]["hub"]["config"]


def test_each_grader_mounts_its_courses_datasets_and_everybodys():
    graders = releasespec.release_values(with_data())["classroom"]["data"]["graders"]
    assert sorted(graders) == ["ds-101", "sql-201"]
    ds = graders["ds-101"]
    assert [m["mountPath"] for m in ds["volumeMounts"]] == ["/srv/data/flights", "/srv/data/genomes",
                                                             "/srv/data/orders"]
    assert ds["volumes"] == [releasespec.dataset_volume("class-data", n) for n in ("flights", "genomes", "orders")]
    assert ds["volumeMounts"] == [releasespec.dataset_mount(n) for n in ("flights", "genomes", "orders")]
    assert [m["name"] for m in graders["sql-201"]["volumeMounts"]] == ["data-flights", "data-orders"]


def test_a_grader_without_datasets_gets_no_entry_and_no_datasets_no_section():
    only_ds = with_data([{"name": "genomes", "source": "x", "courses": ["ds-101"]}])
    assert sorted(releasespec.release_values(only_ds)["classroom"]["data"]["graders"]) == ["ds-101"]
    assert "data" not in releasespec.release_values(with_data([]))["classroom"]
    assert "data" not in releasespec.release_values(with_data(bucket="file://x"))["classroom"]


# ---- doit diagnose: the CSI driver the datasets need ---------------------------------------

def test_diagnose_names_the_add_on_and_its_gcloud_command_when_the_driver_is_missing():
    import subprocess

    from tasks.cluster import diagnosis
    config = make(gcp={"project": "p1", "cluster": "c1", "zone": "us-central1-a", "region": "us-central1"})
    missing = subprocess.CompletedProcess([], 1, "", 'Error from server (NotFound): csidrivers.storage.k8s.io '
                                                     '"gcsfuse.csi.storage.gke.io" not found\n')
    line = diagnosis.fuse_driver_missing(config, missing)
    assert "gcsfuse.csi.storage.gke.io" in line and "\n" not in line
    assert ("gcloud container clusters update c1 --project p1 --location us-central1-a "
            "--update-addons GcsFuseCsiDriver=ENABLED") in line
    present = subprocess.CompletedProcess([], 0, "csidriver.storage.k8s.io/gcsfuse.csi.storage.gke.io\n", "")
    assert diagnosis.fuse_driver_missing(config, present) == ""
    refused = subprocess.CompletedProcess([], 1, "", "error: You must be logged in to the server (Unauthorized)")
    assert diagnosis.fuse_driver_missing(config, refused).startswith("cannot tell whether")


def test_only_a_datasets_name_and_courses_reach_the_release():
    """A dataset's files, source or description change the upload (and image:local), not the hub."""
    edited = [{**d, "source": "gs://other/place", "description": "changed"} for d in DATASETS]
    assert releasespec.release_values(with_data(edited)) == releasespec.release_values(with_data())
    recoursed = [{**d, "courses": ["sql-201"]} if d["name"] == "genomes" else d for d in DATASETS]
    changed = releasespec.release_values(with_data(recoursed))
    assert overrides(changed)["classroom-data-genomes"]["groups"] == ["nbgrader-sql-201"]


def test_the_bucket_name_is_the_url_without_scheme_or_trailing_slash():
    assert releasespec.data_bucket(with_data(bucket="gs://class-data/")) == "class-data"
    assert releasespec.data_bucket(with_data(bucket="file://x")) == ""


def test_volume_names_are_dns_labels_for_every_dataset_name():
    import re
    longest = "d" * 63
    names = [contract.data_volume(n) for n in ("a", "x" * 58, "x" * 59, longest, "d" * 62 + "e")]
    assert names[:2] == ["data-a", "data-" + "x" * 58]
    assert all(len(n) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names)
    assert len(set(names)) == len(names)


# ---- cluster.node_pool, cluster.image_mirror, cluster.pre_pull_hook -------------------

POOL = {"node_pool": {"label": "pool=classroom", "taint": "dedicated=classroom:NoSchedule"},
        "image_mirror": "", "pre_pull_hook": True}


def _pods_of(values: dict) -> dict:
    """Every pod's settings in the release values, by where they live."""
    hub = values["jupyterhub"]
    return {
        "hub": (hub["hub"], "tolerations"),
        "proxy": (hub["proxy"]["chp"], "tolerations"),
        "autohttps": (hub["proxy"]["traefik"], "tolerations"),
        "servers": (hub["singleuser"], "extraTolerations"),
        "user-scheduler": (hub["scheduling"]["userScheduler"], "tolerations"),
        "pre-pull hook": (hub["prePuller"]["hook"], "tolerations"),
        "graders": (values["classroom"]["grader"], "tolerations"),
        "nfs": (values["classroom"]["exchange"]["nfs"], "tolerations"),
    }


def test_a_node_pool_holds_every_pod_of_the_release():
    values = releasespec.release_values(make(cluster=POOL))
    wanted = {"key": "dedicated", "operator": "Equal", "value": "classroom", "effect": "NoSchedule"}
    for where, (pod, key) in _pods_of(values).items():
        assert pod["nodeSelector"]["pool"] == "classroom", where
        assert pod[key] == [wanted], where
    assert values["jupyterhub"]["prePuller"]["extraTolerations"] == [wanted]
    # the hub keeps its own node label as well
    assert values["jupyterhub"]["hub"]["nodeSelector"] == {"hub-node": "true", "pool": "classroom"}


def test_a_taint_without_a_value_is_tolerated_whatever_its_value():
    values = releasespec.release_values(make(cluster={**POOL, "node_pool": {"label": "", "taint": "gpu:NoExecute"}}))
    assert values["jupyterhub"]["singleuser"]["extraTolerations"] == [
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]
    assert "nodeSelector" not in values["jupyterhub"]["singleuser"]
    assert values["jupyterhub"]["hub"]["nodeSelector"] == {"hub-node": "true"}


def test_no_node_pool_sets_no_scheduling_values():
    values = releasespec.release_values(make())
    assert "scheduling" not in values["jupyterhub"] and "prePuller" not in values["jupyterhub"]
    assert "grader" not in values["classroom"] and "exchange" not in values["classroom"]
    assert "tolerations" not in values["jupyterhub"]["hub"]


def test_an_image_mirror_names_every_upstream_image_and_keeps_their_tags():
    values = releasespec.release_values(make(cluster={**POOL, "image_mirror": "127.0.0.1:5000/up"}))["jupyterhub"]
    names = {}
    for path, short in releasespec.UPSTREAM_IMAGES.items():
        node = values
        for key in path:
            node = node[key]
        assert set(node) == {"name"}, path  # the chart's tag stays
        names[path] = node["name"]
    assert names[("hub", "image")] == "127.0.0.1:5000/up/k8s-hub"
    assert names[("proxy", "chp", "image")] == "127.0.0.1:5000/up/configurable-http-proxy"
    assert names[("prePuller", "pause", "image")] == "127.0.0.1:5000/up/pause"
    assert len(set(names.values())) == len(releasespec.UPSTREAM_IMAGES) - 1  # two pause images
    assert "singleuser" not in values or "image" not in values["singleuser"]


def test_the_pre_pull_hook_is_on_unless_turned_off():
    assert "prePuller" not in releasespec.release_values(make())["jupyterhub"]
    off = releasespec.release_values(make(cluster={**POOL, "pre_pull_hook": False}))["jupyterhub"]
    assert off["prePuller"]["hook"]["enabled"] is False


def _node(name, labels=None, taints=(), unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": list(taints), **({"unschedulable": True} if unschedulable else {})}}


REAL_TAINT = {"key": "dedicated", "value": "classroom", "effect": "NoSchedule"}


def test_the_hub_node_is_one_the_classroom_may_run_on():
    nodes = [_node("a-tainted", taints=[REAL_TAINT]), _node("b-cordoned", unschedulable=True),
             _node("c-plain"), _node("d-plain")]
    assert releasespec.hub_node(nodes, make()) == "c-plain"
    # a soft taint keeps nobody off
    soft = [_node("a-soft", taints=[{**REAL_TAINT, "effect": "PreferNoSchedule"}]), _node("b")]
    assert releasespec.hub_node(soft, make()) == "a-soft"
    assert releasespec.hub_node([_node("x", taints=[REAL_TAINT])], make()) is None


def test_with_a_node_pool_the_hub_node_is_in_the_pool():
    pool = make(cluster=POOL)
    nodes = [_node("a-other"), _node("b-pool", {"pool": "classroom"}, [REAL_TAINT]),
             _node("c-pool-other-taint", {"pool": "classroom"}, [{**REAL_TAINT, "key": "gpu"}]),
             _node("d-pool-wrong-value", {"pool": "classroom"}, [{**REAL_TAINT, "value": "exam"}]),
             _node("e-wrong-label", {"pool": "exam"})]
    assert releasespec.hub_node(nodes, pool) == "b-pool"
    assert [n["metadata"]["name"] for n in nodes if releasespec.tolerates(n, pool)] == ["b-pool"]
    any_value = make(cluster={**POOL, "node_pool": {"label": "", "taint": "dedicated:NoSchedule"}})
    assert releasespec.tolerates(nodes[3], any_value) and not releasespec.tolerates(nodes[2], any_value)


# ---- why pods do not come up (tasks/cluster/diagnosis.pod_problems) --------------------

def _pod(name, phase="Pending", conditions=(), init=(), containers=(), deleting=False):
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"phase": phase, "conditions": list(conditions),
                                         "initContainerStatuses": list(init), "containerStatuses": list(containers)}}


def _waiting(name, reason, message=""):
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def test_pod_problems_name_the_pod_the_container_and_the_reason():
    from tasks.cluster.diagnosis import pod_problems
    pods = [
        _pod("jupyter-ann", containers=[_waiting("notebook", "ImagePullBackOff", "Back-off pulling image \"x:1\"\n")]),
        _pod("hub-1", phase="Running", containers=[_waiting("hub", "CrashLoopBackOff", "back-off 40s")]),
        _pod("grader-a", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": "0/3 nodes are available: pod has unbound immediate "
                                                 "PersistentVolumeClaims."}]),
        _pod("init-broken", init=[{"name": "prepare", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]),
        _pod("creating", containers=[_waiting("notebook", "ContainerCreating")]),
        _pod("fine", phase="Running", containers=[{"name": "notebook", "state": {"running": {}}}]),
        _pod("done", phase="Succeeded"),
        _pod("going", containers=[_waiting("x", "ErrImagePull")], deleting=True),
    ]
    assert pod_problems(pods) == [
        "grader-a: Unschedulable: 0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
        "hub-1: container hub: CrashLoopBackOff: back-off 40s",
        "init-broken: container prepare exited 2 (Error)",
        'jupyter-ann: container notebook: ImagePullBackOff: Back-off pulling image "x:1"',
    ]


def test_pod_problems_keep_one_short_line_of_a_long_or_hostile_message():
    from tasks.cluster.diagnosis import pod_problems
    [line] = pod_problems([_pod("p", containers=[_waiting("c", "ErrImagePull", "a\x1b[31m\r\nb " + "x" * 500)])])
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert line.startswith("p: container c: ErrImagePull: a [31m b ") and len(line) < 260


def test_a_directory_ca_goes_into_the_hub_pod_and_ldap3_checks_against_it():
    config = make(auth={**LDAP, "ldap": {**LDAP["ldap"], "ca_bundle": "campus-ca.pem"}})
    values = releasespec.release_values(config, ldap_ca="-----BEGIN CERTIFICATE-----\nMII\n")["jupyterhub"]
    assert values["hub"]["extraFiles"]["ldap-ca"] == {"mountPath": contract.LDAP_CA_PATH,
                                                       "stringData": "-----BEGIN CERTIFICATE-----\nMII\n"}
    tls = values["hub"]["config"]["LDAPAuthenticator"]["tls_kwargs"]
    assert tls == {"validate": releasespec.SSL_CERT_REQUIRED, "ca_certs_file": contract.LDAP_CA_PATH}
    plain = releasespec.release_values(make(auth=LDAP))["jupyterhub"]
    assert "extraFiles" not in plain["hub"]
    assert plain["hub"]["config"]["LDAPAuthenticator"]["tls_kwargs"] == {"validate": releasespec.SSL_CERT_REQUIRED}
