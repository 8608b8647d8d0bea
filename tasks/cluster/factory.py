"""Cluster stage: what the releases need from the cluster, and taking it down again.

`cluster:hub-node` labels one node for the hub; `cluster:ip` (gke) reserves
the hub's regional static IP.  cluster:hub-node is up to date when a node of
the cluster carries the label, asked of the cluster itself: a lost dep file
or a renamed kube context of the same cluster does no work.

A cluster is known by what it is, not by what a kube context is called: its
API server and the UID of its kube-system namespace (`identity`, recorded in
the results of cluster:hub-node and release:jupyterhub), which a new cluster
behind the same address does not share.

Teardown (`doit clean cluster release`) says what goes before it goes.
"""

from __future__ import annotations

import os

from tasks.checks import config_inputs
from tasks.errors import ClassroomError, action


def deploying(config) -> bool:
    deploy = config.classroom["cluster"]["deploy"]
    return deploy == "always" or (deploy == "auto" and config.profile == "gke")


def check_cluster(config) -> bool:
    """Compare the release's objects in the cluster with its manifest on every run (drift by kubectl)."""
    return config.classroom["cluster"]["check_cluster"] or os.environ.get("CLASSTOOLS_CHECK_CLUSTER") == "1"


def context(config) -> str:
    return config.classroom["cluster"]["kube_context"]


def identity(config) -> dict:
    """{"server", "kube_system_uid"}: which cluster the kube context reaches (raises KubeError)."""
    from tasks import kube
    server = kube.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}",
                          context=context(config)).stdout.strip()
    uid = kube.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}",
                       context=context(config)).stdout.strip()
    return {"server": server, "kube_system_uid": uid}


def identity_if_known(config) -> dict:
    """`identity`, or {} when the cluster cannot say: for a task's result (`doit info`), which
    must not fail a task whose work is done."""
    from tasks import kube
    try:
        return identity(config)
    except kube.KubeError:
        return {}


def _labelled_nodes(config) -> list[str]:
    from tasks import kube
    return kube.kubectl("get", "nodes", "-l", config.classroom["hub"]["node_label"], "-o", "name",
                        context=context(config)).stdout.split()


class hub_node_labelled:  # lower case, like doit's own uptodate helpers
    """doit `uptodate` of cluster:hub-node: a node of the cluster has the label (one kubectl call)."""

    def __init__(self, config):
        self.config = config
        self.found = "not asked yet"

    def __call__(self, task, values):
        from tasks import kube
        try:
            nodes = _labelled_nodes(self.config)
        except kube.KubeError as exc:
            self.found = f"cannot ask the cluster ({exc})"
            return False  # the action reports the cluster's error
        self.found = f"{nodes[0]} has it" if nodes else "no node has it"
        return bool(nodes)

    def __repr__(self):
        return f"a node labelled {self.config.classroom['hub']['node_label']}: {self.found}"


def cluster_tasks(config):
    yield {
        "name": "hub-node",
        "doc": "Label one node for the hub (skipped when a node has the label)",
        "actions": [action(label_hub_node, config)],
        "uptodate": [hub_node_labelled(config)],
        "clean": [(unlabel_hub_node, [config])],
        "verbosity": 2,
    }
    if config.profile == "gke":
        yield {
            "name": "ip",
            "doc": "Reserve (or find) the regional static IP of the hub",
            "actions": [action(reserve_ip, config)],
            "uptodate": [config_inputs(config, "classroom.hub.static_ip_name", "classroom.gcp")],
            "clean": [(free_ip, [config])],
            "verbosity": 2,
        }


def label_hub_node(config):
    from tasks import kube
    label = config.classroom["hub"]["node_label"]
    labelled = _labelled_nodes(config)
    if labelled:
        print(f"cluster:hub-node: {labelled[0]} already has {label}")
        return {"node": labelled[0]}
    import json

    from tasks.release import spec
    nodes = json.loads(kube.kubectl("get", "nodes", "-o", "json", context=context(config)).stdout)["items"]
    if not nodes:
        raise ClassroomError("the cluster has no nodes")
    chosen = spec.hub_node(nodes, config)
    if chosen is None:
        pool = config.classroom["cluster"]["node_pool"]
        raise ClassroomError(
            f"no node of the cluster can run the hub: each is cordoned, lacks the node pool's label "
            f"({pool['label'] or 'none set'}) or has a taint the classroom does not tolerate "
            f"(cluster.node_pool.taint: {pool['taint'] or 'none set'})")
    kube.kubectl("label", "--", f"node/{chosen}", label, context=context(config))
    print(f"cluster:hub-node: labelled node/{chosen} {label}")
    return {"node": f"node/{chosen}", **identity_if_known(config)}


def reserve_ip(config):
    from tasks import kube
    gcp, name = config.classroom["gcp"], config.classroom["hub"]["static_ip_name"]
    where = ["--region", gcp["region"], "--project", gcp["project"]]
    found = kube.gcloud("compute", "addresses", "describe", *where, "--format=value(address)",
                        operands=[name], check=False)
    if found.returncode != 0:
        if "not found" not in (found.stderr + found.stdout).lower():
            raise ClassroomError(f"gcloud could not look up {name}: {found.stderr.strip()[-300:]}")
        kube.gcloud("compute", "addresses", "create", *where, operands=[name])
        found = kube.gcloud("compute", "addresses", "describe", *where, "--format=value(address)",
                            operands=[name])
    address = found.stdout.strip()
    print(f"cluster:ip: {name} is {address}")
    return {"address": address}


# ---- teardown: `doit clean cluster release` (say what goes before it goes) ----------------

def print_plan(lines):
    print("teardown: " + "\n teardown: ".join(lines))


def free_ip(config):
    from tasks import kube
    gcp, name = config.classroom["gcp"], config.classroom["hub"]["static_ip_name"]
    print_plan([f"releasing the static IP {name} ({gcp['region']}, project {gcp['project']})"])
    kube.gcloud("compute", "addresses", "delete", "--region", gcp["region"], "--project", gcp["project"],
                operands=[name], check=False)


def unlabel_hub_node(config):
    from tasks import kube
    key = config.classroom["hub"]["node_label"].partition("=")[0]
    nodes = kube.kubectl("get", "nodes", "-l", config.classroom["hub"]["node_label"], "-o", "name",
                         context=context(config), check=False).stdout.split()
    if nodes:
        print_plan([f"removing the label {key} from {', '.join(nodes)}"])
    for node in nodes:
        kube.kubectl("label", "--", node, f"{key}-", context=context(config))
