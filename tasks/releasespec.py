"""What the JupyterHub release should be: pure functions from the config to helm values.

The values go on top of the packaged classroom chart (which already carries
the image references).  People, login and exposure live here: who may log
in (JupyterHub 5 admits nobody without an allow rule), who is an admin,
LDAP, TLS, the hub's node, the db sidecar, the exchange mount and culling.
Secrets never appear as values: the db password comes from the Secret the
chart makes (`secretKeyRef`), the LDAP bind password from an env var the hub
reads from a Secret.  The deploy-time secrets file is written separately.
"""

from __future__ import annotations

ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
EXCHANGE_ROOT = "/srv/nbgrader/exchange"
INGRESS_CLASS = "traefik"


def people(config) -> tuple[list[str], list[str]]:
    """(admins, everyone allowed in by name), sorted."""
    instructors = {u for c in config.courses for u in c["instructors"]}
    students = {u for c in config.courses for u in c["students"]}
    admins = instructors | set(config.classroom["auth"]["admin_users"])
    return sorted(admins), sorted(admins | students)


def groups(config) -> dict:
    """nbgrader 0.9 across courses: graders and takers of each course."""
    load = {}
    for course in config.courses:
        load[f"formgrade-{course['name']}"] = {"users": sorted(course["instructors"])}
        load[f"nbgrader-{course['name']}"] = {
            "users": sorted(set(course["instructors"]) | set(course["students"]))}
    return load


def auth_config(config) -> dict:
    auth = config.classroom["auth"]
    admins, allowed = people(config)
    authenticator = {"admin_users": admins, "allowed_users": allowed}
    if auth["type"] == "dummy":
        return {"JupyterHub": {"authenticator_class": "dummy"}, "Authenticator": authenticator}
    ldap = auth["ldap"]
    settings = {
        "server_address": ldap["server"],
        "server_port": ldap["port"],
        "bind_dn_template": list(ldap["bind_dn_templates"]),  # ldapauthenticator 2 takes a list
        "tls_strategy": ldap["tls_strategy"],                   # replaces use_ssl
    }
    if ldap["allowed_groups"]:
        settings["allowed_groups"] = list(ldap["allowed_groups"])
    if ldap["search_user"]:
        settings.update(lookup_dn=True, lookup_dn_search_user=ldap["search_user"])
    return {"JupyterHub": {"authenticator_class": "ldap"}, "Authenticator": authenticator,
            "LDAPAuthenticator": settings}


def tls_values(config, release: str) -> dict:
    hub = config.classroom["hub"]
    tls = hub["tls"]
    if tls["mode"] == "autohttps":
        return {"proxy": {"https": {"enabled": True, "type": "letsencrypt", "hosts": [hub["domain"]],
                                    "letsencrypt": {"contactEmail": tls["email"],
                                                    "acmeServer": ACME_SERVERS[tls["acme_server"]]}}}}
    if tls["mode"] == "ingress":
        issuer = issuer_name(config)
        return {"proxy": {"https": {"enabled": False}, "service": {"type": "ClusterIP"}},
                "ingress": {"enabled": True, "hosts": [hub["domain"]], "ingressClassName": INGRESS_CLASS,
                            "annotations": {"cert-manager.io/cluster-issuer": issuer},
                            "tls": [{"hosts": [hub["domain"]], "secretName": f"{release}-tls"}]}}
    return {"proxy": {"https": {"enabled": False}}}


def hub_values(config, db_image: str, static_ip: str = "") -> dict:
    """The `jupyterhub:` values of the release (no secrets)."""
    c = config.classroom
    release = c["release"]["name"]
    key, _, value = c["hub"]["node_label"].partition("=")
    resources = c["resources"]
    hub_config = auth_config(config)
    hub_config["JupyterHub"]["load_groups"] = groups(config)
    values = {
        "hub": {
            "nodeSelector": {key: value},
            "config": hub_config,
        },
        "singleuser": {
            "startTimeout": c["hub"]["start_timeout"],
            "cpu": {"limit": resources["cpu_limit"], "guarantee": resources["cpu_guarantee"]},
            "memory": {"limit": resources["memory_limit"], "guarantee": resources["memory_guarantee"]},
            "storage": {
                "capacity": resources["home_storage"],
                "extraVolumes": [{"name": "nbgrader-exchange",
                                  "persistentVolumeClaim": {"claimName": f"{release}-exchange"}}],
                "extraVolumeMounts": [{"name": "nbgrader-exchange", "mountPath": EXCHANGE_ROOT}],
            },
            "extraContainers": [{
                "name": "db",
                "image": db_image,
                "env": [{"name": "MYSQL_ROOT_PASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": f"{release}-db", "key": "root-password"}}}],
                "ports": [{"containerPort": 3306, "name": "mysql"}],
            }],
        },
        "cull": {"enabled": c["culling"]["enabled"], "timeout": c["culling"]["timeout"],
                 "every": c["culling"]["every"]},
    }
    if static_ip and c["hub"]["tls"]["mode"] != "ingress":  # with an Ingress, its controller holds the IP
        values["proxy"] = {"service": {"loadBalancerIP": static_ip}}
    tls = tls_values(config, release)
    for section, content in tls.items():
        values[section] = {**values.get(section, {}), **content}
    return values


def release_values(config, db_image: str, static_ip: str = "") -> dict:
    """Everything helm needs besides the packaged chart and the secrets file."""
    values = hub_values(config, db_image, static_ip)
    tls = config.classroom["hub"]["tls"]
    # The ClusterIssuer (and so the contact email) belongs to release:cert-manager.
    return {
        "jupyterhub": values,
        "classroom": {"tls": {"mode": tls["mode"], "acmeServer": tls["acme_server"],
                              "ingressClass": INGRESS_CLASS, "createIssuer": False}},
    }


def issuer_name(config) -> str:
    return f"{config.classroom['release']['name']}-letsencrypt"


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
