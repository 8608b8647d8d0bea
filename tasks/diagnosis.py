"""`doit diagnose [--user NAME]`: the old "a student sees a 500 error" checklist, read-only.

For one user: the server pod's status and events, the logs of its notebook
and db containers, and the tail of the hub's log.  For no user: the hub's
and the proxy's pods and the hub's log.  Nothing here changes the cluster.
"""

from __future__ import annotations

import string


def pod_name(user: str) -> str:
    """KubeSpawner's pod name for a user (z2jh default: jupyter-{username}, escaped)."""
    safe = "".join(c if c in string.ascii_lowercase + string.digits else f"-{ord(c):x}" for c in user)
    return f"jupyter-{safe}"


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


def diagnose(config, user=""):
    from tasks import kube
    namespace = config.classroom["release"]["namespace"]
    context = config.classroom["cluster"]["kube_context"]
    for title, args in steps(namespace, user):
        print(f"==== {title}: kubectl {' '.join(args)}")
        try:
            result = kube.kubectl(*args, context=context, check=False)
        except kube.KubeError as exc:
            print(f"(cannot run kubectl: {exc})")
            return True
        print((result.stdout + result.stderr).rstrip() or "(nothing)")
    return True


def task_dict(config) -> dict:
    return {
        "actions": [(diagnose, [config])],
        "params": [{"name": "user", "short": "u", "long": "user", "default": "",
                    "help": "the student or instructor whose server fails"}],
        "uptodate": [False],
        "verbosity": 2,
    }
