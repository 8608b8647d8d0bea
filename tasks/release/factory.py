"""Release stage: the JupyterHub release (and, for TLS mode ingress, cert-manager and Traefik).

`release:jupyterhub` deploys the classroom chart at exactly the version
`chart:publish` produced.  It is up to date when the cluster already runs
that chart version with exactly the values this config makes, read back from
the release's own record (`helm list` and `helm get values`: two cheap calls,
no dep-file state), so a lost or cold dep file, or a renamed kube context of
the same cluster, deploys nothing.  A change made out of band with helm shows
in that record; one made with kubectl does not, so with
`cluster.check_cluster` (or CLASSTOOLS_CHECK_CLUSTER=1) the release's
objects are also compared with its manifest by the API server (a server-side
dry-run apply) and any drift makes the task run again, which puts the config
back.  Secrets reach helm only in in-memory files (kube.private_values) and are
compared in memory only.  A helm killed midway (the run killed) leaves its release
pending, which helm refuses to touch again; the next run of this project undoes
that operation first (`undo_killed_upgrade`).
release:cert-manager and release:ingress are up to date the same way (their
chart version and values in the release's record; cert-manager's
ClusterIssuer as the config makes it).  A failed upgrade is rolled back by
helm and leaves the task not done.
Cluster preparation and teardown of the node label and IP: tasks/cluster/factory.py.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from doit.dependency import UptodateCalculator

from tasks import contract
from tasks.cluster.factory import check_cluster, identity_if_known, print_plan
from tasks.errors import ClassroomError, action
from tasks.release import spec as releasespec

# Where each secret goes in the values, and its name in the secret store. Secrets reach
# helm only through an in-memory values file of their own (never on disk); in the cluster they live in Secrets
# (z2jh keeps hub.config and the tokens in its hub Secret; the chart makes classroom-db).
SECRETS = {
    ("jupyterhub", "proxy", "secretToken"): "proxy_secret_token",
    ("jupyterhub", "hub", "cookieSecret"): "hub_cookie_secret",
    ("classroom", "db", "rootPassword"): "db_root_password",
    ("jupyterhub", "hub", "config", "LDAPAuthenticator", "lookup_dn_search_password"): "ldap_bind_password",
}
HEALTH_PATH = "/api/v1/namespaces/{namespace}/services/hub:8081/proxy/hub/health"


class AddonRelease(NamedTuple):
    """One of TLS mode ingress's extra releases, as deployed, checked, torn down and rendered."""
    release: str
    namespace: str
    chart: dict          # cluster.cert_manager_chart / cluster.ingress_chart
    values: list


def addon_releases(config, ip=None) -> dict[str, AddonRelease]:
    """Task name -> release: cert-manager (in its own namespace) and the ingress controller
    (named, and namespaced, after its chart), on cluster:ip's address when there is one."""
    cluster = config.classroom["cluster"]
    controller = cluster["ingress_chart"]
    address = ip.get("address", "") if isinstance(ip, dict) else (ip or "")
    return {
        "cert-manager": AddonRelease("cert-manager", "cert-manager", cluster["cert_manager_chart"],
                                     [releasespec.cert_manager_values()]),
        "ingress": AddonRelease(controller["name"], controller["name"], controller,
                                [releasespec.ingress_values(address)]),
    }


def release_tasks(config):
    gke = config.profile == "gke"
    ingress = config.classroom["hub"]["tls"]["mode"] == "ingress"
    if ingress:
        addons = addon_releases(config)
        cert_manager, controller = addons["cert-manager"], addons["ingress"]
        yield {
            "name": "cert-manager",
            "doc": "Deploy cert-manager and its Let's Encrypt ClusterIssuer (TLS mode ingress)",
            "actions": [action(deploy_cert_manager, config)],
            "clean": [(uninstall, [config, cert_manager.release, cert_manager.namespace])],
            "uptodate": [chart_runs(config, "cert-manager", issuer=releasespec.cluster_issuer(config))],
            "verbosity": 2,
        }
        # No getargs for the IP, as for release:jupyterhub below: the check reads cluster:ip's result.
        ingress_runs = chart_runs(config, "ingress")
        yield {
            "name": "ingress",
            "doc": "Deploy the ingress controller (Traefik by default) on the static IP",
            "actions": [action(_deploy_ingress_where_runs_found, config, ingress_runs)],
            "clean": [(uninstall, [config, controller.release, controller.namespace])],
            "task_dep": ["cluster:ip"] if gke else [],
            "uptodate": [ingress_runs],
            "verbosity": 2,
        }
    # The images reach the release only through the published chart (chart:package bakes them in).
    task_dep = ["cluster:hub-node", "chart:publish"] + (["release:ingress", "release:cert-manager"] if ingress else [])
    if gke:
        task_dep.append("cluster:ip")
    # Up to date = the cluster runs the published chart with these values (and, with
    # check_cluster, its objects are as the manifest says): asked of the cluster itself.
    # No getargs: doit would add a result_dep on chart:publish, and a cold dep file (where
    # chart:publish runs again, "already published") would redeploy an unchanged release.
    # The check reads chart:publish's (and cluster:ip's) values after they ran; the action
    # gets them from it.
    runs = cluster_runs(config)
    yield {
        "name": "jupyterhub",
        "doc": "Deploy the classroom chart (the published version) with values from the config",
        "actions": [action(_deploy_what_runs_found, config, runs)],
        "clean": [(uninstall_hub, [config])],
        "task_dep": task_dep,
        "uptodate": [runs],
        "verbosity": 2,
    }


def _deploy_what_runs_found(config, runs):
    return deploy_jupyterhub(config, runs.published(), runs.ip())


def _deploy_ingress_where_runs_found(config, runs):
    return deploy_ingress(config, runs.ip())


def _helm_release(config, addon: AddonRelease):
    cluster = config.classroom["cluster"]
    upgrade(addon.release, addon.chart["name"], addon.namespace, cluster["kube_context"], addon.values,
            cluster["helm_timeout"], repo=addon.chart["repository"], version=addon.chart["version"])


def upgrade(release: str, chart: str, namespace: str, context: str, values: list[dict], timeout_seconds: int,
            repo: str = "", version: str = ""):
    """helm upgrade --install, after undoing what a killed run of this project left half done."""
    from tasks import helm
    from tasks.run import runlock
    undo_killed_upgrade(release, namespace, context, timeout_seconds)
    with runlock.operation(_operation(namespace, release)):
        try:
            helm.upgrade(release, chart, namespace, context, values, timeout_seconds, repo=repo, version=version)
        except helm.HelmError as exc:
            why = _pods_failing(namespace, context)
            if not why:
                raise
            raise helm.HelmError(f"{exc}; pods that did not come up: {'; '.join(why[:5])}"
                                 f"{f' (and {len(why) - 5} more)' if len(why) > 5 else ''}; "
                                 f"`doit diagnose --user NAME` shows a student's server") from None


def _pods_failing(namespace: str, context: str) -> list[str]:
    """Why the release's pods did not come up, for a failed upgrade's message ([] if unknown)."""
    import json

    from tasks import kube
    from tasks.cluster.diagnosis import pod_problems
    listed = kube.kubectl("get", "pods", "-n", namespace, "-o", "json", context=context, check=False)
    if listed.returncode != 0:
        return []
    try:
        return pod_problems(json.loads(listed.stdout)["items"])
    except (ValueError, KeyError):
        return []


def _operation(namespace: str, release: str) -> str:
    return f"helm-upgrade.{namespace}.{release}"  # DNS labels: safe in a file name


def undo_killed_upgrade(release: str, namespace: str, context: str, timeout_seconds: int):
    """A helm killed midway leaves the release `pending-install` (or `-upgrade`, `-rollback`) and
    helm refuses every later operation on it ("another operation is in progress"). If the
    operation was a killed run of this project (tasks/run/runlock.py), undo it: uninstall a release
    that never got installed, roll back to the previous revision otherwise. A pending operation
    that is not ours may still be running: say so, and touch nothing."""
    from tasks import helm
    from tasks.run import runlock
    record = helm.release_status(release, namespace, context)
    if record is None or not record["status"].startswith("pending-"):
        runlock.forget_operation(_operation(namespace, release))
        return
    if not runlock.killed_operation(_operation(namespace, release)):
        undo = "helm uninstall" if record["status"] == "pending-install" else "helm rollback"
        raise helm.HelmError(f"release {release} in {namespace} is {record['status']}: a helm operation that "
                             f"this project did not start is under way, or was killed; when none runs, "
                             f"`{undo} {release} --namespace {namespace}` ends it")
    if record["status"] == "pending-install":
        print(f"release {release}: a killed run left its first install pending; uninstalling what it made",
              flush=True)
        helm.uninstall(release, namespace, context)
    else:
        print(f"release {release}: a killed run left revision {record['revision']} {record['status']}; "
              "rolling back to the one before", flush=True)
        helm.rollback(release, namespace, context, timeout_seconds)
    runlock.forget_operation(_operation(namespace, release))


def deploy_cert_manager(config):
    from tasks import kube
    addon = addon_releases(config)["cert-manager"]
    _helm_release(config, addon)
    issuer = releasespec.cluster_issuer(config)
    kube.kubectl_apply(issuer, config.classroom["cluster"]["kube_context"])
    print(f"release:cert-manager: cert-manager {addon.chart['version']} and ClusterIssuer "
          f"{issuer['metadata']['name']}")
    return {"version": addon.chart["version"], "issuer": issuer["metadata"]["name"]}


def deploy_ingress(config, ip=None):
    addon = addon_releases(config, ip)["ingress"]
    address = (ip or {}).get("address", "")
    _helm_release(config, addon)
    print(f"release:ingress: {addon.release} {addon.chart['version']}" + (f" on {address}" if address else ""))
    return {"version": addon.chart["version"], "address": address}


def hub_release_values(config, ip=None) -> tuple[dict, dict]:
    """(public, secret): exactly the two values documents `helm upgrade` of release:jupyterhub gets.

    `ip` is cluster:ip's result ({"address": ...}, gke) or the address itself, if any.
    The secret document holds every secret (SECRETS), read from the secret store
    (generated on first use); never print it.
    """
    address = ip.get("address", "") if isinstance(ip, dict) else (ip or "")
    public = releasespec.release_values(config, address, ldap_ca(config))
    return public, _secret_values(config)


def ldap_ca(config) -> str:
    """The PEM text of auth.ldap.ca_bundle, "" when none is set."""
    name = config.classroom["auth"]["ldap"]["ca_bundle"]
    if not name:
        return ""
    try:
        text = config.path(name).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassroomError(f"auth.ldap.ca_bundle: cannot read {name}: {getattr(exc, 'strerror', exc)}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ClassroomError(f"auth.ldap.ca_bundle: {name} holds no PEM certificate "
                             "(expected -----BEGIN CERTIFICATE----- blocks)")
    return text


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


def chart_source(published) -> tuple[str, str, str]:
    """(chart, --repo, --version) for helm: the version chart:publish published, as its result says."""
    if published["archive"].startswith("file://"):  # a bucket on disk: helm reads the archive itself
        return published["archive"][len("file://"):], "", ""
    return published["chart"], published["repository"], published["version"]


def deploy_jupyterhub(config, published=None, ip=None):
    if not published or "version" not in published:
        print(f"release:jupyterhub: skipped: no chart was published "
              f"({(published or {}).get('skipped', 'run chart:publish first')})")
        return {"skipped": True}
    release, namespace = config.classroom["release"]["name"], config.classroom["release"]["namespace"]
    context = config.classroom["cluster"]["kube_context"]
    chart, repo, version = chart_source(published)
    public, secret = hub_release_values(config, ip)
    upgrade(release, chart, namespace, context, [public, secret],
            config.classroom["cluster"]["helm_timeout"], repo=repo, version=version)
    if config.classroom["cluster"]["health_probe"]:
        health = _probe(namespace, context)
        if health.returncode != 0:
            raise ClassroomError(f"deployed {published['version']}, but the hub's health endpoint does not "
                                 f"answer through the API server's service proxy: {health.stderr.strip()[-300:]}")
        state = "hub healthy"
    else:
        state = "hub health not probed (cluster.health_probe: false)"
    print(f"release:jupyterhub: {release} in {namespace} runs {published['chart']} {published['version']}; {state}")
    # which cluster, for `doit info` (the up-to-date check asks the cluster itself)
    return {"chart_version": published["version"], "namespace": namespace, **identity_if_known(config)}


def _probe(namespace: str, context: str):
    from tasks import kube
    return kube.kubectl("get", "--raw", HEALTH_PATH.format(namespace=namespace), context=context, check=False)


def hub_healthy(namespace: str, context: str) -> bool:
    """The hub answers /hub/health, asked through the API server's service proxy."""
    return _probe(namespace, context).returncode == 0


def desired_values(public: dict, secret: dict) -> dict:
    """The user-supplied values helm records for `upgrade -f public -f secret` (later files win,
    dicts merge, anything else replaces), as JSON would carry them."""
    return json.loads(json.dumps(contract.merge_values(public, secret)))


def differing_keys(deployed, desired, prefix="") -> list[str]:
    """Dotted paths where two values documents differ (names only: values may be secrets)."""
    if isinstance(deployed, dict) and isinstance(desired, dict):
        found = []
        for key in sorted(set(deployed) | set(desired)):
            found += differing_keys(deployed.get(key), desired.get(key), f"{prefix}{key}.")
        return found
    return [] if deployed == desired else [prefix.rstrip(".")]


class cluster_runs(UptodateCalculator):  # lower case, like doit's own uptodate helpers
    """doit `uptodate` of release:jupyterhub: the cluster already runs the published chart version
    with exactly the values this config makes, as the release's own record says; with
    check_cluster also no object of the release drifted from its manifest."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.reason = "not checked yet"
        self.note = ""  # said by the reporter when up to date (tasks/run/reporter.py)

    def __call__(self, task, values):
        from tasks import helm, kube
        from tasks.secretstore import MissingSecret
        up_to_date = False
        try:
            up_to_date = self._check(helm)
        except (kube.KubeError, MissingSecret) as exc:
            self.reason = f"cannot read the deployed release ({exc}); deploying"
        if not up_to_date:
            print(f"release:jupyterhub: {self.reason}")
        # Said at every no-op, and what a cold doit state (a new CI cache) shows: the cluster was asked.
        self.note = f"already deployed: {self.reason}" if up_to_date else ""
        return up_to_date

    def published(self) -> dict:
        """chart:publish's result ({"repository", "version"} or {"skipped": ...})."""
        return (self.get_val("chart:publish", "_values_:") or {}) if self.get_val else {}

    def ip(self) -> dict | None:
        """cluster:ip's result (gke), else None."""
        if self.config.profile != "gke" or not self.get_val:
            return None
        return self.get_val("cluster:ip", "_values_:") or None

    def _check(self, helm) -> bool:
        config = self.config
        published = self.published()
        if not {"chart", "version", "archive"} <= set(published):
            self.reason = "no chart published"
            return False
        release, namespace = config.classroom["release"]["name"], config.classroom["release"]["namespace"]
        context = config.classroom["cluster"]["kube_context"]
        record = helm.release_status(release, namespace, context)
        if record is None:
            self.reason = f"{release} is not deployed in {namespace}; deploying"
            return False
        if record["status"] != "deployed":
            self.reason = f"the last revision of {release} is {record['status']}; deploying again"
            return False
        wanted = f"{published['chart']}-{published['version']}"
        if record["chart"] != wanted:
            self.reason = f"{release} runs {record['chart']}, not {wanted}; upgrading"
            return False
        deployed = helm.user_values(release, namespace, context) or {}
        changed = differing_keys(deployed, desired_values(*hub_release_values(config, self.ip())))
        if changed:
            self.reason = (f"the deployed values of {release} differ from the config (drift) at "
                           f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}; correcting")
            return False
        if config.classroom["cluster"]["health_probe"] and not hub_healthy(namespace, context):
            # a deploy whose probe failed is not done, though helm recorded it as deployed
            self.reason = "the hub's health endpoint does not answer; deploying again"
            return False
        if check_cluster(config):
            drifted = helm.drifted_objects(release, namespace, context)
            if drifted:
                self.reason = (f"objects of {release} were changed in the cluster (drift): "
                               f"{', '.join(drifted[:5])}{' ...' if len(drifted) > 5 else ''}; correcting")
                return False
        self.reason = (f"{release} in {namespace} runs {record['chart']} with these values "
                       "(the release's record in the cluster)")
        return True

    def __repr__(self):
        return f"the cluster runs the published chart with these values ({self.reason})"


class chart_runs(UptodateCalculator):  # lower case, like doit's own uptodate helpers
    """doit `uptodate` of release:cert-manager and release:ingress: the cluster runs that chart
    version with these values (the release's record) and, for cert-manager, the ClusterIssuer
    as the config makes it."""

    def __init__(self, config, task: str, issuer: dict | None = None):
        super().__init__()
        addon = addon_releases(config)[task]
        self.config, self.task, self.release, self.chart = config, task, addon.release, addon.chart
        self.issuer = issuer
        self.note = ""  # said by the reporter when up to date (tasks/run/reporter.py)

    def __call__(self, task, values):
        from tasks import helm, kube
        namespace, context = self.release, self.config.classroom["cluster"]["kube_context"]
        try:
            reason = self._differs(helm, kube, namespace, context)
        except kube.KubeError as exc:
            reason = f"cannot read the deployed release ({exc}); deploying"
        if reason:
            print(f"release:{self.task}: {reason}")
        self.note = "" if reason else (f"already deployed: {self.release} in {namespace} runs "
                                       f"{self.chart['name']}-{self.chart['version']} with these values")
        return not reason

    def _differs(self, helm, kube, namespace, context) -> str:
        record = helm.release_status(self.release, namespace, context)
        wanted = f"{self.chart['name']}-{self.chart['version']}"
        if record is None or record["status"] != "deployed" or record["chart"] != wanted:
            return f"the cluster does not run {wanted} as {self.release} in {namespace}; deploying"
        deployed = helm.user_values(self.release, namespace, context) or {}
        wanted_values = addon_releases(self.config, self.ip())[self.task].values[0]
        changed = differing_keys(deployed, desired_values(wanted_values, {}))
        if changed:
            return f"the deployed values of {self.release} differ from the config at {', '.join(changed[:5])}"
        if self.issuer:
            name = self.issuer["metadata"]["name"]
            found = kube.kubectl("get", "clusterissuer", name, "-o", "json", context=context, check=False)
            if found.returncode != 0 or json.loads(found.stdout or "{}").get("spec") != self.issuer["spec"]:
                return f"the ClusterIssuer {name} is missing or differs from the config"
        return ""

    def ip(self) -> dict | None:
        """cluster:ip's result (gke), else None."""
        if self.config.profile != "gke" or not self.get_val:
            return None
        return self.get_val("cluster:ip", "_values_:") or None

    def __repr__(self):
        return f"the cluster runs {self.chart['name']} {self.chart['version']} with these values"


# ---- teardown: `doit clean cluster release` (say what goes before it goes) ----------------

def uninstall(config, release, namespace):
    from tasks import helm
    print_plan([f"uninstalling helm release {release} (namespace {namespace})"])
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
    print_plan(plan)
    helm.uninstall(release, namespace, context)
    if delete_homes:
        kube.kubectl("delete", "pvc", "-n", namespace, "-l", "component=singleuser-storage", context=context)
