"""`doit diagnose [--user NAME]`: the old "a student sees a 500 error" checklist, read-only.

For one user: the server pod's status and events, the logs of its notebook
and db containers, and the tail of the hub's log.  For no user: the hub's
and the proxy's pods and the hub's log.  When the config mounts datasets
(a gs:// data bucket), first whether the cluster has GKE's Cloud Storage FUSE
CSI driver, without which no student server that mounts one starts.  Nothing
here changes the cluster.
"""

from __future__ import annotations

import string

from tasks.errors import action


def pod_name(user: str) -> str:
    """KubeSpawner's pod name for a user (z2jh default: jupyter-{username}, escaped)."""
    safe = "".join(c if c in string.ascii_lowercase + string.digits else f"-{ord(c):x}" for c in user)
    return f"jupyter-{safe}"


def pod_problems(pods: list[dict]) -> list[str]:
    """Why pods do not run, one short line each, as `kubectl get pods -o json` lists them:
    unschedulable (an unbound claim, no node that fits), a container waiting (image pull,
    crash loop, config error) or terminated with an error. Healthy pods say nothing."""
    problems = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        if status.get("phase") == "Succeeded" or pod["metadata"].get("deletionTimestamp"):
            continue
        unscheduled = [c for c in status.get("conditions") or []
                       if c.get("type") == "PodScheduled" and c.get("status") == "False"]
        if unscheduled:
            reason = unscheduled[0].get("reason") or "Unschedulable"
            problems.append(f"{name}: {reason}: {_short(unscheduled[0].get('message', ''))}")
            continue
        for kind in ("initContainerStatuses", "containerStatuses"):
            for container in status.get(kind) or []:
                state = container.get("state") or {}
                waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
                if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                    problems.append(f"{name}: container {container['name']}: {waiting['reason']}: "
                                    f"{_short(waiting.get('message', ''))}".rstrip(": "))
                elif terminated and terminated.get("exitCode", 0) != 0:
                    problems.append(f"{name}: container {container['name']} exited {terminated.get('exitCode')} "
                                    f"({terminated.get('reason', 'Error')})")
    return problems


def _short(message: str, limit: int = 200) -> str:
    """One line of a Kubernetes message, control characters out (it may quote an image name)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in message).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def steps(namespace: str, user: str) -> list[tuple[str, list[str]]]:
    """(title, kubectl arguments): what to look at, in the order a person would."""
    hub_log = ("hub log (last 50 lines)", ["logs", "-n", namespace, "deploy/hub", "--tail=50"])
    if not user:
        return [("hub and proxy pods", ["get", "pods", "-n", namespace, "-l", "component in (hub,proxy)",
                                        "-o", "wide"]), hub_log]
    pod = pod_name(user)
    return [
        (f"pod {pod}", ["get", "pod", pod, "-n", namespace, "-o", "wide"]),
        (f"events of {pod}", ["get", "events", "-n", namespace, "--field-selector",
                              f"involvedObject.name={pod}", "--sort-by=.lastTimestamp"]),
        ("notebook container log (last 100 lines)", ["logs", pod, "-n", namespace, "-c", "notebook",
                                                     "--tail=100"]),
        ("db container log (last 50 lines)", ["logs", pod, "-n", namespace, "-c", "db", "--tail=50"]),
        hub_log,
    ]


def enable_fuse_driver(config) -> str:
    """The gcloud command that enables GKE's Cloud Storage FUSE CSI driver add-on."""
    gcp = config.classroom["gcp"]
    return (f"gcloud container clusters update {gcp['cluster'] or 'CLUSTER'} "
            f"--project {gcp['project'] or 'PROJECT'} --location {gcp['zone']} "
            f"--update-addons GcsFuseCsiDriver=ENABLED (--location {gcp['region']} for a regional cluster)")


def fuse_driver_missing(config, found) -> str:
    """One line when the config mounts datasets and `kubectl get csidriver` did not find the
    driver (`found`: its CompletedProcess), else ""."""
    from tasks import contract
    if found.returncode == 0:
        return ""
    if "NotFound" not in found.stderr and "not found" not in found.stderr:
        return (f"cannot tell whether the cluster has the CSIDriver {contract.GCSFUSE_DRIVER}: "
                f"{found.stderr.strip()[-200:]}")
    return (f"the cluster has no CSIDriver {contract.GCSFUSE_DRIVER}: student servers that mount a dataset "
            f"cannot start; enable GKE's Cloud Storage FUSE CSI driver add-on: {enable_fuse_driver(config)}")


def check_fuse_driver(config, context: str) -> bool:
    """When the student servers mount datasets: is the CSI driver there?  False when kubectl cannot run."""
    from tasks import contract, kube
    from tasks.release import spec as releasespec
    if not releasespec.data_values(config):
        if config.datasets:
            print(f"==== datasets: not mounted in the cluster: buckets.data is "
                  f"{config.classroom['buckets']['data']}, not a gs:// bucket the cluster can read")
        return True
    print(f"==== datasets: kubectl get csidriver {contract.GCSFUSE_DRIVER}")
    try:
        found = kube.kubectl("get", "csidriver", contract.GCSFUSE_DRIVER, "-o", "name", context=context, check=False)
    except kube.KubeError as exc:
        print(f"(cannot run kubectl: {exc})")
        return False
    print(fuse_driver_missing(config, found) or found.stdout.strip())
    return True


def diagnose(config, user=""):
    from tasks import kube
    namespace = config.classroom["release"]["namespace"]
    context = config.classroom["cluster"]["kube_context"]
    if not check_fuse_driver(config, context):
        return True
    if user:
        _print_why(kube, namespace, context, pod_name(user))
    for title, args in steps(namespace, user):
        print(f"==== {title}: kubectl {' '.join(args)}")
        try:
            result = kube.kubectl(*args, context=context, check=False)
        except kube.KubeError as exc:
            print(f"(cannot run kubectl: {exc})")
            return True
        print((result.stdout + result.stderr).rstrip() or "(nothing)")
    return True


def _print_why(kube, namespace: str, context: str, pod: str) -> None:
    """First the short answer: why the pod does not run, if it does not."""
    import json
    try:
        found = kube.kubectl("get", "pod", pod, "-n", namespace, "-o", "json", context=context, check=False)
    except kube.KubeError:
        return
    if found.returncode != 0:
        return
    try:
        problems = pod_problems([json.loads(found.stdout)])
    except (ValueError, KeyError):
        return
    print(f"==== why {pod} does not run")
    print("\n".join(problems) if problems else "(it runs: nothing waits or failed)")


def task_dict(config) -> dict:
    return {
        "actions": [action(diagnose, config)],
        "params": [{"name": "user", "short": "u", "long": "user", "default": "",
                    "help": "the student or instructor whose server fails"}],
        "uptodate": [False],
        "verbosity": 2,
    }
