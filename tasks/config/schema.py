"""Cerberus schemas of the three config files, with their defaults.

Every key a course's staff may write is listed here; anything else is
rejected.  `fmt` names an entry of `tasks.config.formats.FORMATS`; the validator
turns it into a check with a readable expectation.  Quoting never changes
what a task sees: `port: "636"` is `port: 636` (the coercions below read
quoted numbers and booleans exactly, ASCII digits only).  The other way
round is the validator's job: a value YAML 1.1 reads as a number or boolean
where text is expected becomes that text only when it reads back as
written (`ref: 2024`); `ref: 1.10` (the number 1.1) is refused, not coerced.
"""

from __future__ import annotations

import re

# what quoted numbers may look like: plain decimal, no sign, no leading zero (`"0123"` is not 123)
_INTEGER_TEXT = re.compile(r" *(0|[1-9][0-9]{0,17}) *")
_NUMBER_TEXT = re.compile(r" *((?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?|\.[0-9]{1,15}) *")
INT32_MAX = 2**31 - 1  # where a key has no natural maximum: what every consumer can hold
MAX_BYTE_SIZE = 2**63 - 1  # formats.MAX_BYTE_SIZE: Kubernetes' and Go's int64


def _to_int(value):
    match = isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)
    return int(match.group(1)) if match else value


def _to_number(value):
    match = isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)
    if not match:
        return value
    text = match.group(1)
    return float(text) if "." in text else int(text)


def _to_byte_size(value):
    # JupyterHub reads an integer as bytes but the same digits as text as an error:
    # digits become the integer, whether or not they were quoted.
    if isinstance(value, bool):  # cerberus counts booleans as integers
        return "true" if value else "false"
    return _to_int(value)


def _to_bool(value):
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    return value


def string(fmt=None, *, default=None, required=False, empty=False, allowed=None):
    rule = {"type": "string", "empty": empty}
    if fmt:
        rule["check_with"] = fmt
    if allowed:
        rule["allowed"] = list(allowed)
    if required:
        rule["required"] = True
    elif default is not None:
        rule["default"] = default
    return rule


def optional(fmt=None):
    """A string that may be empty ("" = not set)."""
    return string(fmt, default="", empty=True)


def integer(default, minimum=None, maximum=INT32_MAX):
    rule = {"type": "integer", "coerce": _to_int, "default": default, "max": maximum}
    if minimum is not None:
        rule["min"] = minimum
    return rule


def number(default, minimum=0, maximum=None, hint=None):
    rule = {"type": "number", "coerce": _to_number, "default": default, "min": minimum}
    if maximum is not None:
        rule["max"] = maximum
    if hint:
        rule["meta"] = {"hint": hint}  # formats.HINTS[hint]: what to write instead
    return rule


def memory_size(default):
    """A memory size as JupyterHub's ByteSpecification reads it: 512M, 2G or bytes."""
    return {"type": ["integer", "string"], "coerce": _to_byte_size, "default": default,
            "check_with": "jupyterhub_bytes", "min": 1, "max": MAX_BYTE_SIZE,
            "meta": {"hint": "jupyterhub_bytes"}}


def boolean(default):
    return {"type": "boolean", "coerce": _to_bool, "default": default}


def string_list(fmt, *, default=(), minlength=None, required=False):
    rule = {"type": "list", "schema": string(fmt)}
    if required:
        rule["required"] = True
    else:
        rule["default"] = list(default)
    if minlength is not None:
        rule["minlength"] = minlength
    return rule


def section(schema):
    """A mapping whose keys all have defaults, so the whole section may be left out."""
    return {"type": "dict", "default": {}, "schema": schema}


CLASSROOM = {
    "profile": string(default="local", allowed=("local", "gke")),
    "release": section({
        "name": string("dns_label", default="classroom"),
        "namespace": string("dns_label", default="classroom"),
    }),
    "images": section({
        # "" keeps images in the local Docker Engine (local profile only).
        "registry": optional("registry"),
        "base_image": string("image_ref", default="debian:bookworm-slim"),
        "db_base_image": string("image_ref", default="debian:bookworm-slim"),
        # only used when images/hub/ exists: z2jh 4.x's own hub image has LDAP built in;
        # the same version as chart.jupyterhub_version (4.3.3 was a security release)
        "hub_base_image": string("image_ref", default="quay.io/jupyterhub/k8s-hub:4.4.0"),
        "sources": string("path", default="images"),  # the image source directories
    }),
    "build": section({
        "platform": string("platform", default="linux/amd64"),
        # An extra CA bundle for builds behind a TLS-intercepting (campus) proxy,
        # passed to BuildKit as a secret, never copied into a layer.
        "ca_bundle": optional("secret_file"),
        "args": {"type": "dict", "default": {},
                 "keysrules": string("build_arg_name"),
                 "valuesrules": string("text", empty=True)},
    }),
    "buckets": section({
        "charts": string("bucket_url", default="file://.classroom/buckets/charts"),
        "data": string("bucket_url", default="file://.classroom/buckets/data"),
        # The data bucket is ours alone: `data:upload` deletes the objects of removed files
        # and datasets.  Off by default: a shared bucket must not lose anybody else's objects.
        "prune_data": boolean(False),
    }),
    "chart": section({
        # z2jh, pinned: the classroom chart depends on exactly this version. 4.4.0 runs
        # JupyterHub 5.5.0; 4.3.3 was a security release, so nothing older is a safe default.
        "jupyterhub_version": string("semver", default="4.4.0"),
        # a local copy (.tgz) of that chart, for machines that cannot reach the repository
        "jupyterhub_chart": optional("path"),
        "jupyterhub_repository": string("http_url", default="https://hub.jupyter.org/helm-chart/"),
        # where `helm repo add` finds the charts bucket; "" = https://storage.googleapis.com/BUCKET
        "repository_url": optional("http_url"),
    }),
    "cluster": section({
        # auto: deploy in profile gke only; always: also from the local profile, to the
        # current kube context (a kind or k3s cluster); never: stop at the chart
        "deploy": string(default="auto", allowed=("auto", "always", "never")),
        "kube_context": optional("kube_context"),
        # read the deployed release back on every run and correct drift (or CLASSTOOLS_CHECK_CLUSTER=1)
        "check_cluster": boolean(False),
        "helm_timeout": integer(600, minimum=60, maximum=3600),
        # after a deploy, ask the hub's /hub/health through the API server's service proxy
        # (false only where the API server cannot reach pods, e.g. a control plane with fake nodes)
        "health_probe": boolean(True),
        # Dedicated nodes for the classroom: every pod of the release (hub, proxy, student
        # servers, graders, the NFS server, z2jh's helpers) selects the label and tolerates
        # the taint. "" = any node (hub.node_label still places the hub).
        "node_pool": section({
            "label": optional("node_label"),
            "taint": optional("node_taint"),
        }),
        # A registry holding copies of z2jh's upstream images (a cluster without access to
        # quay.io and registry.k8s.io): each is pulled as MIRROR/<its last path part>:<its tag>.
        "image_mirror": optional("registry"),
        # z2jh's pre-pull hook: before each upgrade, pull the notebook image onto every user
        # node (so no student waits for it), which makes upgrades slower. It needs z2jh's
        # k8s-image-awaiter image.
        "pre_pull_hook": boolean(True),
        # hub.tls.mode: ingress only
        "ingress_chart": section({
            "repository": string("http_url", default="https://traefik.github.io/charts"),
            "name": string("dns_label", default="traefik"),
            "version": string("semver", default="41.3.0"),
        }),
        "cert_manager_chart": section({
            "repository": string("http_url", default="https://charts.jetstack.io"),
            "name": string("dns_label", default="cert-manager"),
            "version": string("chart_version", default="v1.21.1"),
        }),
    }),
    "gcp": section({
        "project": optional("gcp_project"),
        "region": string("gcp_region", default="us-central1"),
        "zone": string("gcp_zone", default="us-central1-a"),
        "cluster": optional("gcp_name"),
    }),
    "hub": section({
        "domain": optional("hostname"),
        "static_ip_name": string("gcp_name", default="classroom-hub"),
        "node_label": string("node_label", default="hub-node=true"),
        "start_timeout": integer(300, minimum=30, maximum=3600),
        "tls": section({
            "mode": string(default="none", allowed=("autohttps", "ingress", "none")),
            "email": optional("email"),
            "acme_server": string(default="production", allowed=("production", "staging")),
        }),
    }),
    "auth": section({
        "type": string(default="dummy", allowed=("ldap", "dummy")),
        # dummy lets any password in; on a public deployment (profile gke or any TLS mode)
        # it is refused unless this says the deployment is a throwaway trial
        "dummy_trial": boolean(False),
        "admin_users": string_list("username"),
        "ldap": section({
            "server": optional("hostname"),
            # 0: by tls_strategy, as ldapauthenticator does (636 for on_connect, else 389)
            "port": integer(0, minimum=0, maximum=65535),
            "bind_dn_templates": string_list("bind_dn_template"),
            "tls_strategy": string(default="on_connect",
                                   allowed=("on_connect", "before_bind", "insecure")),
            # The CA bundle (PEM) that signed the directory's certificate, when the hub's system
            # store does not know it (a campus CA); "" = the system store.
            "ca_bundle": optional("path"),
            # Only for directories that refuse anonymous search: the DN to search as.
            # Its password is the secret ldap_bind_password, never a config value.
            # Set, it turns on ldapauthenticator's lookup_dn, which needs the next two keys.
            "search_user": optional("text"),
            "user_search_base": optional("ldap_dn"),
            "user_attribute": string("ldap_attribute", default="uid", empty=True),
            # the attribute whose value forms the bind DN after the lookup; "" = user_attribute
            "lookup_dn_user_dn_attribute": optional("ldap_attribute"),
            "allowed_groups": string_list("text"),
        }),
    }),
    "exchange": section({
        # The secure default: a managed RWX class (the NFS server is privileged, opt-in).
        "storage": string(default="storage_class", allowed=("nfs", "storage_class")),
        "storage_class": string("dns_label", default="standard-rwx", empty=True),
        "size": string("k8s_quantity", default="10Gi"),
    }),
    "culling": section({
        "enabled": boolean(True),
        "timeout": integer(3600, minimum=60),
        "every": integer(600, minimum=30),
    }),
    "resources": section({
        # JupyterHub's own units (its Spawner traits), not Kubernetes': CPUs as numbers
        # (0.5, not 500m), memory with K, M, G, T in powers of 1024 (2G, not 2Gi)
        "cpu_guarantee": number(0.25, maximum=4096, hint="cpu"),
        "cpu_limit": number(2, maximum=4096, hint="cpu"),
        "memory_guarantee": memory_size("512M"),
        "memory_limit": memory_size("2G"),
        "home_storage": string("k8s_quantity", default="10Gi"),  # a PVC size: Kubernetes units
    }),
    "local": section({  # `doit local`: where the laptop classroom listens
        "bind": string(default="127.0.0.1", allowed=("127.0.0.1", "0.0.0.0")),
        "port": integer(8888, minimum=1024, maximum=65535),
    }),
    "state": section({
        "dep_file": string("path", default=".doit/classroom.json"),
        "backend": string(default="json", allowed=("json", "dbm", "sqlite3")),
    }),
}

COURSES = {
    "courses": {
        "type": "list", "required": True,
        "schema": {"type": "dict", "schema": {
            "name": string("course_name", required=True),
            "title": optional("text"),
            "repo": string("git_url", required=True),
            "ref": string("git_ref", default="main"),
            "instructors": string_list("username", required=True, minlength=1),
            "students": string_list("username"),
            "packages": string_list("pip_requirement"),
        }},
    },
}

DATA = {
    "datasets": {
        "type": "list", "required": True,
        "schema": {"type": "dict", "schema": {
            "name": string("dns_label", required=True),
            "source": string("data_source", required=True),
            "description": optional("text"),
            # the courses whose students and instructors get it; none: everybody
            "courses": string_list("course_name"),
        }},
    },
}

FILES = {
    "classroom.yaml": CLASSROOM,
    "courses.yaml": COURSES,
    "data.yaml": DATA,
}
