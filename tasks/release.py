"""Release stage: cluster preparation and the JupyterHub release, in graph order.

`cluster:ip` (gke: the regional static IP), `cluster:hub-node` (one node
labelled for the hub) and `release:jupyterhub` (the classroom chart at
exactly the version `chart:publish` produced).  A release is up to date when
the chart version, the semantic digest of its values and the namespace and
context are unchanged; with `cluster.check_cluster` (or
CLASSTOOLS_CHECK_CLUSTER=1) the deployed values are read back on every run
and a drift makes the task run again.  Secrets reach helm only in 0600 files.
"""

from __future__ import annotations

import json
import os

from doit.tools import result_dep

from tasks import contract, releasespec
from tasks.inputs import config_inputs, digest, value_inputs

# Where each secret goes in the values, and its name in the secret store. Secrets reach
# helm only through a 0600 values file of their own; in the cluster they live in Secrets
# (z2jh keeps hub.config and the tokens in its hub Secret; the chart makes classroom-db).
SECRETS = {
    ("jupyterhub", "proxy", "secretToken"): "proxy_secret_token",
    ("jupyterhub", "hub", "cookieSecret"): "hub_cookie_secret",
    ("classroom", "db", "rootPassword"): "db_root_password",
    ("jupyterhub", "hub", "config", "LDAPAuthenticator", "lookup_dn_search_password"): "ldap_bind_password",
}
SECRET_PATHS = tuple(SECRETS)


def deploying(config) -> bool:
    deploy = config.classroom["cluster"]["deploy"]
    return deploy == "always" or (deploy == "auto" and config.profile == "gke")


def check_cluster(config) -> bool:
    return config.classroom["cluster"]["check_cluster"] or os.environ.get("CLASSTOOLS_CHECK_CLUSTER") == "1"


def cluster_tasks(config):
    yield {
        "name": "hub-node",
        "doc": "Label one node for the hub (skipped when a node has the label)",
        "actions": [(label_hub_node, [config])],
        "uptodate": [config_inputs(config, "classroom.hub.node_label", "classroom.cluster.kube_context")],
        "clean": [(unlabel_hub_node, [config])],
        "verbosity": 2,
    }
    if config.profile == "gke":
        yield {
            "name": "ip",
            "doc": "Reserve (or find) the regional static IP of the hub",
            "actions": [(reserve_ip, [config])],
            "uptodate": [config_inputs(config, "classroom.hub.static_ip_name", "classroom.gcp")],
            "clean": [(free_ip, [config])],
            "verbosity": 2,
        }


def _where(config) -> dict:
    return {"release": config.classroom["release"], "kube_context": config.classroom["cluster"]["kube_context"]}


def release_tasks(config):
    gke = config.profile == "gke"
    ingress = config.classroom["hub"]["tls"]["mode"] == "ingress"
    cluster = config.classroom["cluster"]
    if ingress:
        yield {
            "name": "cert-manager",
            "doc": "Deploy cert-manager and its Let's Encrypt ClusterIssuer (TLS mode ingress)",
            "actions": [(deploy_cert_manager, [config])],
            "clean": [(uninstall, [config, "cert-manager", "cert-manager"])],
            "uptodate": [value_inputs({"chart": cluster["cert_manager_chart"],
                                       "values": releasespec.cert_manager_values(),
                                       "issuer": releasespec.cluster_issuer(config), **_where(config)})],
            "verbosity": 2,
        }
        yield {
            "name": "ingress",
            "doc": "Deploy the ingress controller (Traefik by default) on the static IP",
            "actions": [(deploy_ingress, [config])],
            "clean": [(uninstall, [config, cluster["ingress_chart"]["name"], cluster["ingress_chart"]["name"]])],
            "getargs": {"ip": ("cluster:ip", None)} if gke else {},
            "uptodate": [value_inputs({"chart": cluster["ingress_chart"],
                                       "values": releasespec.ingress_values(), **_where(config)})]
                        + ([result_dep("cluster:ip")] if gke else []),
            "verbosity": 2,
        }
    # The images reach the release only through the published chart (chart:package bakes them in).
    getargs = {"published": ("chart:publish", None)}
    task_dep = ["cluster:hub-node"] + (["release:ingress", "release:cert-manager"] if ingress else [])
    if gke:
        getargs["ip"] = ("cluster:ip", None)
        task_dep.append("cluster:ip")
    # Up to date = same chart (result of chart:publish, which also carries the image tags), same
    # values as computed from the config (a semantic digest: an edit that changes no value makes
    # no deploy, and the cert-manager email is not among them), same namespace and context.
    uptodate = [value_inputs({"values": releasespec.release_values(config), **_where(config)}),
                result_dep("chart:publish")]
    if check_cluster(config):
        uptodate.append(lambda task, values: _matches_cluster(config, values))
    yield {
        "name": "jupyterhub",
        "doc": "Deploy the classroom chart (the published version) with values from the config",
        "actions": [(deploy_jupyterhub, [config])],
        "clean": [(uninstall_hub, [config])],
        "getargs": getargs,
        "task_dep": task_dep,
        "uptodate": uptodate,
        "verbosity": 2,
    }


def _helm_release(config, task, release, chart_settings, namespace, values):
    from doit.exceptions import TaskFailed

    from tasks import helm, kube
    cluster = config.classroom["cluster"]
    try:
        helm.upgrade(release, chart_settings["name"], namespace, cluster["kube_context"], values,
                     cluster["helm_timeout"], repo=chart_settings["repository"],
                     version=chart_settings["version"])
    except kube.KubeError as exc:
        return TaskFailed(f"{task}: {exc}")
    return None


def deploy_cert_manager(config):
    from doit.exceptions import TaskFailed

    from tasks import kube
    chart = config.classroom["cluster"]["cert_manager_chart"]
    failed = _helm_release(config, "release:cert-manager", "cert-manager", chart, "cert-manager",
                           [releasespec.cert_manager_values()])
    if failed:
        return failed
    issuer = releasespec.cluster_issuer(config)
    try:
        kube.kubectl_apply(issuer, config.classroom["cluster"]["kube_context"])
    except kube.KubeError as exc:
        return TaskFailed(f"release:cert-manager: {exc}")
    print(f"release:cert-manager: cert-manager {chart['version']} and ClusterIssuer {issuer['metadata']['name']}")
    return {"version": chart["version"], "issuer": issuer["metadata"]["name"]}


def deploy_ingress(config, ip=None):
    chart = config.classroom["cluster"]["ingress_chart"]
    address = (ip or {}).get("address", "")
    failed = _helm_release(config, "release:ingress", chart["name"], chart, chart["name"],
                           [releasespec.ingress_values(address)])
    if failed:
        return failed
    print(f"release:ingress: {chart['name']} {chart['version']}" + (f" on {address}" if address else ""))
    return {"version": chart["version"], "address": address}


def label_hub_node(config):
    from doit.exceptions import TaskFailed

    from tasks import kube
    context = config.classroom["cluster"]["kube_context"]
    label = config.classroom["hub"]["node_label"]
    try:
        labelled = kube.kubectl("get", "nodes", "-l", label, "-o", "name", context=context).stdout.split()
        if labelled:
            print(f"cluster:hub-node: {labelled[0]} already has {label}")
            return {"node": labelled[0]}
        nodes = kube.kubectl("get", "nodes", "-o", "name", context=context).stdout.split()
        if not nodes:
            return TaskFailed("cluster:hub-node: the cluster has no nodes")
        kube.kubectl("label", nodes[0], label, context=context)
    except kube.KubeError as exc:
        return TaskFailed(f"cluster:hub-node: {exc}")
    print(f"cluster:hub-node: labelled {nodes[0]} {label}")
    return {"node": nodes[0]}


def reserve_ip(config):
    from doit.exceptions import TaskFailed

    from tasks import kube
    gcp, name = config.classroom["gcp"], config.classroom["hub"]["static_ip_name"]
    where = ["--region", gcp["region"], "--project", gcp["project"]]
    try:
        found = kube.gcloud("compute", "addresses", "describe", name, *where,
                            "--format=value(address)", check=False)
        if found.returncode != 0:
            if "not found" not in (found.stderr + found.stdout).lower():
                return TaskFailed(f"cluster:ip: gcloud could not look up {name}: {found.stderr.strip()[-300:]}")
            kube.gcloud("compute", "addresses", "create", name, *where)
            found = kube.gcloud("compute", "addresses", "describe", name, *where, "--format=value(address)")
    except kube.KubeError as exc:
        return TaskFailed(f"cluster:ip: {exc}")
    address = found.stdout.strip()
    print(f"cluster:ip: {name} is {address}")
    return {"address": address}


def hub_release_values(config, ip=None) -> tuple[dict, dict]:
    """(public, secret): exactly the two values documents `helm upgrade` of release:jupyterhub gets.

    `ip` is cluster:ip's result ({"address": ...}, gke) or the address itself, if any.
    The secret document holds every secret (SECRETS), read from the secret store
    (generated on first use); never print it.
    """
    address = ip.get("address", "") if isinstance(ip, dict) else (ip or "")
    public = releasespec.release_values(config, address)
    return public, _secret_values(config)


def _secret_values(config) -> dict:
    from tasks.secretstore import SecretStore, required
    store, needed = SecretStore(), set(required(config))
    values: dict = {}
    for path, name in SECRETS.items():
        if name in needed:
            node = values
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = store.get(name)
    return values


def chart_source(config, published) -> tuple[str, str, str]:
    """(chart, --repo, --version) for helm: the published version, from the bucket."""
    from tasks.chart import CHART_NAME
    repository, version = published["repository"], published["version"]
    if repository.startswith("file://"):  # a bucket on disk: helm reads the archive itself
        return f"{repository[len('file://'):]}/{CHART_NAME}-{version}.tgz", "", ""
    return CHART_NAME, repository, version


def deploy_jupyterhub(config, published=None, ip=None):
    from doit.exceptions import TaskFailed

    from tasks import helm, kube
    from tasks.secretstore import MissingSecret

    if not published or "version" not in published:
        print(f"release:jupyterhub: skipped: no chart was published "
              f"({(published or {}).get('skipped', 'run chart:publish first')})")
        return {"skipped": True}
    release, namespace = config.classroom["release"]["name"], config.classroom["release"]["namespace"]
    context = config.classroom["cluster"]["kube_context"]
    chart, repo, version = chart_source(config, published)
    try:
        public, secret = hub_release_values(config, ip)
        helm.upgrade(release, chart, namespace, context, [public, secret],
                     config.classroom["cluster"]["helm_timeout"], repo=repo, version=version)
        health = kube.kubectl("get", "--raw",
                              f"/api/v1/namespaces/{namespace}/services/hub:8081/proxy/hub/health",
                              context=context, check=False)
    except (kube.KubeError, MissingSecret) as exc:
        return TaskFailed(f"release:jupyterhub: {exc}")
    if health.returncode != 0:
        return TaskFailed(f"release:jupyterhub: deployed {published['version']}, but the hub's health "
                          f"endpoint does not answer: {health.stderr.strip()[-300:]}")
    print(f"release:jupyterhub: {release} in {namespace} runs classroom {published['version']}; hub healthy")
    return {"chart_version": published["version"], "values_digest": digest(_without_secrets(public)),
            "namespace": namespace, "context": context}


def _without_secrets(values: dict) -> dict:
    values = json.loads(json.dumps(values))
    for path in SECRET_PATHS:
        node = values
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return _prune(values)


def _prune(node):
    if isinstance(node, dict):
        pruned = {k: _prune(v) for k, v in node.items()}
        return {k: v for k, v in pruned.items() if v != {}}
    return node


def _matches_cluster(config, saved) -> bool:
    """Drift check: are the deployed values the ones this config makes?"""
    from tasks import helm, kube
    if not saved.get("chart_version"):
        return False
    release, namespace = config.classroom["release"]["name"], config.classroom["release"]["namespace"]
    try:
        deployed = helm.user_values(release, namespace, config.classroom["cluster"]["kube_context"])
    except kube.KubeError as exc:
        print(f"release:jupyterhub: cannot read the deployed release ({exc}); deploying again")
        return False
    if deployed is None:
        print(f"release:jupyterhub: {release} is not deployed in {namespace}; deploying")
        return False
    if digest(_without_secrets(deployed)) != saved.get("values_digest"):
        print(f"release:jupyterhub: the deployed values of {release} differ from the config (drift); correcting")
        return False
    return True


# ---- teardown: `doit clean cluster release` (say what goes before it goes) ----------------

def _print_plan(lines):
    print("teardown: " + "\n teardown: ".join(lines))


def uninstall(config, release, namespace):
    from tasks import helm
    _print_plan([f"uninstalling helm release {release} (namespace {namespace})"])
    helm.uninstall(release, namespace, config.classroom["cluster"]["kube_context"])


def uninstall_hub(config):
    """Uninstall the hub release (the NFS server with it); keep homes unless CLASSTOOLS_DELETE_HOMES=1."""
    from tasks import helm, kube
    release, namespace = config.classroom["release"]["name"], config.classroom["release"]["namespace"]
    context = config.classroom["cluster"]["kube_context"]
    delete_homes = os.environ.get("CLASSTOOLS_DELETE_HOMES") == "1"
    plan = [f"uninstalling helm release {release} (namespace {namespace}): the hub, the proxy and the "
            "exchange's NFS server",
            f"keeping the exchange, the graders' homes and the db Secret ({contract.EXCHANGE_CLAIM}, "
            f"{', '.join(contract.grader_host(c['name']) for c in config.courses) or 'no graders'}, "
            f"{contract.DB_SECRET}: helm keep policy)"]
    plan.append("DELETING the students' home volumes (CLASSTOOLS_DELETE_HOMES=1)" if delete_homes
                else "keeping the students' home volumes (set CLASSTOOLS_DELETE_HOMES=1 to delete them)")
    _print_plan(plan)
    helm.uninstall(release, namespace, context)
    if delete_homes:
        kube.kubectl("delete", "pvc", "-n", namespace, "-l", "component=singleuser-storage", context=context)


def free_ip(config):
    from tasks import kube
    gcp, name = config.classroom["gcp"], config.classroom["hub"]["static_ip_name"]
    _print_plan([f"releasing the static IP {name} ({gcp['region']}, project {gcp['project']})"])
    kube.gcloud("compute", "addresses", "delete", name, "--region", gcp["region"], "--project", gcp["project"],
                check=False)


def unlabel_hub_node(config):
    from tasks import kube
    key = config.classroom["hub"]["node_label"].partition("=")[0]
    context = config.classroom["cluster"]["kube_context"]
    nodes = kube.kubectl("get", "nodes", "-l", config.classroom["hub"]["node_label"], "-o", "name",
                         context=context, check=False).stdout.split()
    if nodes:
        _print_plan([f"removing the label {key} from {', '.join(nodes)}"])
    for node in nodes:
        kube.kubectl("label", node, f"{key}-", context=context)
