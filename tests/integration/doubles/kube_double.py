#!/usr/bin/env python3
"""TEST DOUBLE of helm (release side), kubectl and gcloud: no Kubernetes API server or cloud runs here.

It records every call (argv, and the values files helm was given, with their
modes and whether they were on disk at all: Class Tools passes in-memory files as /dev/fd/N) as JSON lines in $KUBE_DOUBLE_DIR/calls.jsonl, keeps just enough state
to answer later calls (deployed releases' values, nodes and their labels,
static addresses) and passes everything that needs no cluster (helm version,
lint, template, package, pull, repo, show) to the real helm in
$KUBE_DOUBLE_REAL_HELM.  Failures can be injected: KUBE_DOUBLE_FAIL=helm-upgrade
or KUBE_DOUBLE_FAIL=health.

For the releases named in $KUBE_DOUBLE_RENDER (comma-separated), `helm upgrade`
first renders the chart with the real `helm template` and the same chart,
repository, version and values files, as a real upgrade would before talking
to the API server: values the chart's schema refuses, or templates that fail,
fail the upgrade with helm's own error.  The manifests are kept in
$KUBE_DOUBLE_DIR/rendered/<namespace>_<release>.yaml.

RECORDER over the real tools (KUBE_DOUBLE_PASS=1): every call is recorded the
same way and then run by the real helm ($KUBE_DOUBLE_REAL_HELM) or kubectl
($KUBE_DOUBLE_REAL_KUBECTL) against the real API server, except what cannot
run here: the releases named in $KUBE_DOUBLE_FAKE_RELEASES (cert-manager's and
Traefik's charts cannot be fetched) and `kubectl apply` of a ClusterIssuer
(cert-manager's CRD is not installed), which the double plays as above.
gcloud is always the double.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["KUBE_DOUBLE_DIR"])
FAIL = os.environ.get("KUBE_DOUBLE_FAIL", "")


def load(name, default):
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name, data):
    (STATE / name).write_text(json.dumps(data, indent=1, sort_keys=True))


def record(tool, argv, files=None):
    with open(STATE / "calls.jsonl", "a") as log:
        log.write(json.dumps({"tool": tool, "argv": argv, "files": files or {}}) + "\n")


def option(argv, name, default=""):
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def merge(base, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


PASS = os.environ.get("KUBE_DOUBLE_PASS") == "1"


def on_disk(path) -> bool:
    """False for the in-memory values files Class Tools passes as /dev/fd/N (a memfd)."""
    return not str(path).startswith("/dev/fd/")


def inherited_fds(args) -> tuple:
    """The /dev/fd/N values files among args: the real helm must inherit them too."""
    return tuple(int(a[len("/dev/fd/"):]) for a in args if a.startswith("/dev/fd/") and a[len("/dev/fd/"):].isdigit())


def _operands(argv):
    """Positional arguments: after `--`, as tasks/helm.py and tasks/kube.py pass them."""
    return argv[argv.index("--") + 1:] if "--" in argv else []


def _release_name(argv):
    verb = argv[0] if argv else ""
    if verb != "list" and _operands(argv):
        return _operands(argv)[0]
    positional = [a for i, a in enumerate(argv[1:], 1)
                  if not a.startswith("-") and not (argv[i - 1].startswith("-") and "=" not in argv[i - 1]
                                                     and argv[i - 1] not in ("--install", "--all"))]
    if verb == "get":
        return positional[1] if len(positional) > 1 else ""
    if verb == "list":
        return option(argv, "--filter").strip("^$")
    return positional[0] if positional else ""


def _faked(argv) -> bool:
    fake = [name for name in os.environ.get("KUBE_DOUBLE_FAKE_RELEASES", "").split(",") if name]
    return argv[:1] in (["upgrade"], ["install"], ["get"], ["uninstall"], ["status"], ["list"]) \
        and _release_name(argv) in fake


def _files(argv):
    files = {}
    for i, arg in enumerate(argv):
        if arg in ("-f", "--values") and Path(argv[i + 1]).is_file():
            path = Path(argv[i + 1])
            files[str(path)] = {"mode": oct(stat.S_IMODE(path.stat().st_mode)),
                                "dir_mode": oct(stat.S_IMODE(path.parent.stat().st_mode)), "on_disk": on_disk(path),
                                "content": json.loads(path.read_text())}
    return files


def helm(argv):
    verb = argv[0] if argv else ""
    if PASS and not _faked(argv) and not (verb == "version" and os.environ.get("KUBE_DOUBLE_HELM_VERSION")):
        if verb not in ("version", "template", "lint", "package", "pull", "repo", "show"):
            record("helm", argv, _files(argv))
        os.execv(os.environ["KUBE_DOUBLE_REAL_HELM"], ["helm", *argv])
    if verb == "version" and os.environ.get("KUBE_DOUBLE_HELM_VERSION"):
        print(os.environ["KUBE_DOUBLE_HELM_VERSION"])  # to play an older helm
        return 0
    if verb not in ("upgrade", "install", "get", "uninstall", "status", "list"):
        os.execv(os.environ["KUBE_DOUBLE_REAL_HELM"], ["helm", *argv])
    files = {}
    values = {}
    for i, arg in enumerate(argv):
        if arg in ("-f", "--values"):
            path = Path(argv[i + 1])
            files[str(path)] = {"mode": oct(stat.S_IMODE(path.stat().st_mode)),
                                "dir_mode": oct(stat.S_IMODE(path.parent.stat().st_mode)), "on_disk": on_disk(path),
                                "content": json.loads(path.read_text())}
            merge(values, json.loads(path.read_text()))
    record("helm", argv, files)
    releases = load("releases.json", {})
    if verb == "upgrade":
        if FAIL == "helm-upgrade":
            print("Error: UPGRADE FAILED: context deadline exceeded (double)", file=sys.stderr)
            return 1
        name, namespace = _operands(argv)[0], option(argv, "--namespace", "default")
        if name in os.environ.get("KUBE_DOUBLE_RENDER", "").split(","):
            rendered = render(argv, name, namespace)
            if rendered.returncode != 0:
                cause = rendered.stderr.strip().removeprefix("Error: ")
                print(f"Error: UPGRADE FAILED: {cause}", file=sys.stderr)
                return 1
            out = STATE / "rendered"
            out.mkdir(exist_ok=True)
            (out / f"{namespace}_{name}.yaml").write_text(rendered.stdout)
        releases[f"{namespace}/{name}"] = {"values": values, "chart": _operands(argv)[1],
                                           "version": option(argv, "--version")}
        save("releases.json", releases)
        print(f'Release "{name}" has been upgraded. Happy Helming! (double)')
        return 0
    if verb == "list":
        name = _release_name(argv)
        found = releases.get(f"{option(argv, '--namespace', 'default')}/{name}")
        print(json.dumps([{"name": name, "status": "deployed", "revision": "1",
                           "chart": f"{found['chart']}-{found['version']}"}] if found else []))
        return 0
    if verb == "get":
        key = f"{option(argv, '--namespace', 'default')}/{_operands(argv)[0]}"
        if key not in releases:
            print("Error: release: not found", file=sys.stderr)
            return 1
        print(json.dumps(releases[key]["values"]))
        return 0
    if verb == "uninstall":
        releases.pop(f"{option(argv, '--namespace', 'default')}/{_operands(argv)[0]}", None)
        save("releases.json", releases)
        return 0
    return 0


def render(argv, name, namespace) -> subprocess.CompletedProcess:
    """The real `helm template` of what `helm upgrade argv` would install."""
    args = ["template", "--namespace", namespace]
    for flag in ("--repo", "--version"):
        if option(argv, flag):
            args += [flag, option(argv, flag)]
    for i, arg in enumerate(argv):
        if arg in ("-f", "--values"):
            args += ["-f", argv[i + 1]]
    args += ["--", name, _operands(argv)[1]]
    return subprocess.run([os.environ["KUBE_DOUBLE_REAL_HELM"], *args], capture_output=True, text=True,
                          pass_fds=inherited_fds(args))


def kubectl(argv):
    files = {}
    if "-f" in argv and Path(argv[argv.index("-f") + 1]).is_file():
        path = Path(argv[argv.index("-f") + 1])
        files[str(path)] = {"mode": oct(stat.S_IMODE(path.stat().st_mode)), "on_disk": on_disk(path),
                            "content": json.loads(path.read_text())}
    record("kubectl", argv, files)
    issuer = any(entry["content"].get("kind") == "ClusterIssuer" for entry in files.values())
    args = [a for i, a in enumerate(argv) if a != "--context" and (i == 0 or argv[i - 1] != "--context")]
    if args[:2] == ["get", "clusterissuer"]:  # what `apply` of a ClusterIssuer recorded
        found = load("applied.json", {}).get(f"ClusterIssuer/{args[2]}")
        if not found:
            print(f'Error from server (NotFound): clusterissuers "{args[2]}" not found', file=sys.stderr)
            return 1
        print(json.dumps(found))
        return 0
    if PASS and not issuer:  # only cert-manager's ClusterIssuer has no CRD to go to
        os.execv(os.environ["KUBE_DOUBLE_REAL_KUBECTL"], ["kubectl", *argv])
    nodes = load("nodes.json", {"node/pool-a-1": {}, "node/pool-a-2": {}})
    if args[:2] == ["get", "nodes"]:
        selector = option(args, "-l")
        if selector:
            key, _, value = selector.partition("=")
            names = [n for n, labels in sorted(nodes.items()) if labels.get(key) == value]
        else:
            names = sorted(nodes)
        if option(args, "-o") == "json":  # a NodeList, as the API server gives it
            print(json.dumps({"kind": "NodeList", "items": [
                {"metadata": {"name": n.removeprefix("node/"), "labels": nodes[n]}, "spec": {}} for n in names]}))
            return 0
        print("\n".join(names))
        return 0
    if args[0] == "label":
        node, label = _operands(args)
        key, _, value = label.partition("=")
        nodes[node][key] = value
        save("nodes.json", nodes)
        return 0
    if args[0] == "apply":
        applied = load("applied.json", {})
        for entry in files.values():
            manifest = entry["content"]
            applied[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
        save("applied.json", applied)
        return 0
    if args[:2] == ["get", "--raw"]:
        if FAIL == "health":
            print("Error from server (ServiceUnavailable): the server is currently unable to handle the request",
                  file=sys.stderr)
            return 1
        print('{"status": "ok"}')
        return 0
    if args[0] in ("get", "describe", "logs", "delete"):  # read-only views and deletions: canned
        print(f"(double) kubectl {' '.join(args)}")
        return 0
    print(f"kube double: unsupported kubectl call {args}", file=sys.stderr)
    return 2


def gcloud(argv):
    record("gcloud", argv)
    addresses = load("addresses.json", {})
    argv = argv[:3] + _operands(argv)  # `compute addresses VERB [flags] -- NAME` as VERB NAME
    if argv[:3] == ["compute", "addresses", "describe"]:
        if argv[3] not in addresses:
            print(f"ERROR: (gcloud.compute.addresses.describe) Could not fetch resource: The resource "
                  f"'{argv[3]}' was not found", file=sys.stderr)
            return 1
        print(addresses[argv[3]])
        return 0
    if argv[:3] == ["compute", "addresses", "delete"]:
        addresses.pop(argv[3], None)
        save("addresses.json", addresses)
        return 0
    if argv[:3] == ["compute", "addresses", "create"]:
        addresses[argv[3]] = f"203.0.113.{10 + len(addresses)}"
        save("addresses.json", addresses)
        return 0
    print(f"kube double: unsupported gcloud call {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    tool = Path(sys.argv[0]).name
    sys.exit({"helm": helm, "kubectl": kubectl, "gcloud": gcloud}[tool](sys.argv[1:]))
