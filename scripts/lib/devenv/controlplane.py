"""The dev Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes whose pods turn Running and Ready) on
127.0.0.1, plus this package's volume provisioner (provisioner.py).

Binaries come from cpbuild (built once per machine); state lives in
DEV_DIR/control-plane: pki/ (credentials, 0600), etcd/ (the cluster's data,
kept across down/up), volumes/ (what the provisioner's PVs hold), one log and
pid file per process, ports.json, and kubeconfig (admin, 0600).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import cpbuild, pki, realnode
from .core import (Context, DevEnvError, atomic_write, cmdline, free_port, http_ok, http_status, live_pid, log,
                   spawn, stop_pidfile, stop_service, wait_until, warn_strays)
from .kubeapi import ApiError, KubeApi
from .provisioner import STORAGE_CLASS

NODE_COUNT_DEFAULT = 2
START_TIMEOUT = 300       # a cold kube-apiserver on two loaded cores takes its time
NODES_READY_TIMEOUT = 300
# How long a running component may take to answer before it counts as wedged
# and is replaced: restarting the API server under other users' feet is worse
# than waiting a little on a loaded machine.
REUSE_PATIENCE = 20


@dataclass
class Component:
    name: str
    # pid-file marker: a path unique to this dev dir, so a recycled pid or
    # another dev dir's process never counts as ours
    marker: Callable[["ControlPlane"], str]
    command: Callable[["ControlPlane"], list[str]]
    healthy: Callable[["ControlPlane"], bool]
    url: Callable[["ControlPlane"], str]
    # restarted when the API server moved to another port (its kubeconfig changed)
    follows_apiserver: bool = True
    # restarted when it runs with other arguments than this version of the tool gives it
    # (cheap to restart, holds no state of its own)
    restart_on_new_command: bool = False
    program: str = ""  # argv[0]'s name, to tell the daemon from e.g. a `tail` of its files

    @property
    def executable(self) -> str:
        return self.program or self.name


def _insecure_tls_with(cp: "ControlPlane") -> ssl.SSLContext:
    # The controller manager and scheduler serve /healthz with a self-signed
    # certificate made at start; the question is only whether they answer.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cp.pki / "admin.crt"), str(cp.pki / "admin.key"))
    return ctx


class ControlPlane:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.dir = ctx.path("control-plane")
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "kubeconfig"
        self.ports: dict[str, int] = {}
        self.bins: Path | None = None
        self._load_ports()

    # ---------------------------------------------------------------- addresses

    def _load_ports(self) -> None:
        try:
            self.ports = {k: int(v) for k, v in json.loads((self.dir / "ports.json").read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.ports = {}

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.get('kube-apiserver', 0)}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.get('etcd', 0)}"

    def api(self, client: str = "admin") -> KubeApi:
        return KubeApi(self.server, self.pki / "ca.crt", self.pki / f"{client}.crt", self.pki / f"{client}.key")

    def node_names(self) -> list[str]:
        raw = self.ctx.env.get("CLASSTOOLS_KWOK_NODES", str(NODE_COUNT_DEFAULT))
        try:
            count = max(1, int(raw))
        except ValueError:
            raise DevEnvError(f"CLASSTOOLS_KWOK_NODES: found {raw!r}; expected a number of nodes") from None
        return [f"kwok-node-{i}" for i in range(count)]

    def bin(self, name: str) -> str:
        return str((self.bins or cpbuild.bin_dir(self.ctx.env)) / name)

    def pidfile(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def component_kubeconfig(self, client: str) -> Path:
        return self.dir / f"{client}.kubeconfig"

    # ---------------------------------------------------------------- life cycle

    def ensure(self) -> dict:
        self.bins = cpbuild.ensure_binaries(self.ctx.env)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if pki.ensure(self.pki):
            log("control plane: made new credentials (CA, serving and client certificates, "
                f"service-account keys) in {self.pki}")
            # New credentials: processes holding the old ones must restart.
            self.stop()
        # kwok reads ~/.kwok/kwok.yaml unless told otherwise: a user's own stages
        # there must not change how the dev nodes behave.
        atomic_write(self.dir / "kwok.yaml", "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
                     "kind: KwokConfiguration\noptions: {}\n")
        self._write_kubeconfigs()
        old_server = self.server
        restart_clients = False
        for comp in COMPONENTS:
            if comp.follows_apiserver and restart_clients:
                stop_pidfile(comp.name, self.pidfile(comp.name), comp.marker(self))
            pid = live_pid(self.pidfile(comp.name), comp.marker(self))
            if pid and comp.restart_on_new_command and cmdline(pid) != comp.command(self):
                log(f"control plane: restarting {comp.name}: its arguments changed")
                pid = None
            if pid and self._answers(comp):
                log(f"control plane: reusing {comp.name} at {comp.url(self)} (pid {pid})")
            else:
                self._start(comp)
            warn_strays(self.ctx, f"control plane: {comp.name}", self.pidfile(comp.name), comp.marker(self),
                        comp.executable)
            if comp.name == "kube-apiserver":
                # On another port: the clients' kubeconfigs changed under them.
                restart_clients = self.server != old_server
        self._guard_apiserver()
        self._ensure_nodes()
        self._ensure_storage_class()
        return self.facts()

    def _guard_apiserver(self) -> None:
        """An API server on all addresses answers only this machine and its pods."""
        if "--bind-address=0.0.0.0" in _apiserver_cmd(self):
            realnode.guard_apiserver(self.ports["kube-apiserver"])

    def _answers(self, comp: Component) -> bool:
        deadline = time.monotonic() + REUSE_PATIENCE
        while time.monotonic() < deadline:
            if comp.healthy(self):
                return True
            time.sleep(0.5)
        return False

    def _start(self, comp: Component) -> None:
        stop_pidfile(comp.name, self.pidfile(comp.name), comp.marker(self))
        if comp.name == "kube-apiserver" and "kube-apiserver" in self.ports:
            realnode.unguard_apiserver(self.ports["kube-apiserver"])  # it may move to another port
        for key in _ports_of(comp.name):
            self.ports[key] = free_port(self.ports.get(key), avoid={v for k, v in self.ports.items() if k != key})
        atomic_write(self.dir / "ports.json", json.dumps(self.ports, indent=2) + "\n")
        if comp.name == "kube-apiserver":
            self._write_kubeconfigs()
        if comp.name == "kube-apiserver":
            self._guard_apiserver()
        logfile = self.logfile(comp.name)
        t0 = time.monotonic()
        pid = spawn(comp.command(self), logfile, self.pidfile(comp.name), cwd=self.dir)
        log(f"control plane: starting {comp.name} (pid {pid}, log: {logfile})")
        try:
            wait_until(lambda: comp.healthy(self), START_TIMEOUT, f"control plane: {comp.name}",
                       pid=pid, logfile=logfile, interval=0.5, progress_every=30)
        except DevEnvError:
            stop_pidfile(comp.name, self.pidfile(comp.name), comp.marker(self))
            raise
        log(f"control plane: {comp.name} up at {comp.url(self)} in {time.monotonic() - t0:.1f}s")

    def _write_kubeconfigs(self) -> None:
        if "kube-apiserver" not in self.ports:
            return
        atomic_write(self.kubeconfig, pki.kubeconfig(self.pki, "admin", self.server, embed=True), 0o600)
        for client in ("controller-manager", "scheduler", "kwok"):
            atomic_write(self.component_kubeconfig(client),
                         pki.kubeconfig(self.pki, client, self.server, embed=False), 0o600)

    def _ensure_nodes(self) -> None:
        api = self.api()
        names = self.node_names()
        for name in names:
            if api.get_or_none(f"/api/v1/nodes/{name}") is None:
                api.create("/api/v1/nodes", _node(name))
                log(f"control plane: created kwok node {name}")

        def ready() -> bool:
            try:
                nodes = {n["metadata"]["name"]: n for n in api.get("/api/v1/nodes")["items"]}
            except ApiError:
                return False
            return all(name in nodes and _node_ready(nodes[name]) for name in names)
        wait_until(ready, NODES_READY_TIMEOUT, "control plane: kwok nodes Ready and without the "
                   "not-ready taint", pid=live_pid(self.pidfile("kwok"), COMPONENTS[4].marker(self)),
                   logfile=self.logfile("kwok"), interval=0.5, progress_every=30)
        log(f"control plane: nodes {', '.join(names)} Ready")

    def _ensure_storage_class(self) -> None:
        api = self.api()
        wait_until(lambda: _exists(api, f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}"), 60,
                   f"control plane: the provisioner's StorageClass {STORAGE_CLASS}",
                   pid=live_pid(self.pidfile("pv-provisioner"), _provisioner_marker(self)),
                   logfile=self.logfile("pv-provisioner"))

    def stop(self) -> list[str]:
        stopped = []
        for comp in reversed(COMPONENTS):
            if stop_service(self.ctx, comp.name, self.pidfile(comp.name), comp.marker(self), comp.executable,
                            timeout=30 if comp.name == "etcd" else 20):
                stopped.append(comp.name)
        if "kube-apiserver" in self.ports:
            realnode.unguard_apiserver(self.ports["kube-apiserver"])
        # The admin kubeconfig holds a client key; no key outlives the services it opens.
        self.kubeconfig.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[tuple[str, str, str, bool]]:
        lines = []
        missing = cpbuild.missing_binaries(self.ctx.env)
        if missing:
            lines.append(("control-plane", "missing",
                          f"not built: {', '.join(missing)} (`up` builds them into {cpbuild.bin_dir(self.ctx.env)})",
                          False))
            return lines
        for comp in COMPONENTS:
            pid = live_pid(self.pidfile(comp.name), comp.marker(self))
            if pid and comp.healthy(self):
                lines.append((comp.name, "running", f"{comp.url(self)} (pid {pid})", True))
            else:
                lines.append((comp.name, "stopped", comp.url(self) if self.ports else "", False))
        return lines

    def facts(self) -> dict:
        pids = {comp.name.replace("-", "_"): live_pid(self.pidfile(comp.name), comp.marker(self))
                for comp in COMPONENTS}
        return {
            "kubeconfig": str(self.kubeconfig),
            "control_plane": {
                "server": self.server,
                "etcd": self.etcd_url,
                "context": pki.CLUSTER_NAME,
                "nodes": self.node_names(),
                "storage_class": STORAGE_CLASS,
                "binaries": str(self.bins or cpbuild.bin_dir(self.ctx.env)),
                "dir": str(self.dir),
                "pids": pids,
            },
        }


def _ports_of(name: str) -> tuple[str, ...]:
    return {"etcd": ("etcd", "etcd-peer"), "pv-provisioner": ()}.get(name, (name,))



def _exists(api: KubeApi, path: str) -> bool:
    try:
        return api.get_or_none(path) is not None
    except ApiError:
        return False


def _node(name: str) -> dict:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            # kwok manages exactly the nodes carrying this annotation.
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "kubernetes.io/role": "agent"},
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }


def _node_ready(node: dict) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    # The node lifecycle controller taints a new node not-ready until it has
    # seen it Ready; pods without a toleration would stay Pending until then.
    tainted = any(t.get("key", "").startswith("node.kubernetes.io/") for t in node.get("spec", {}).get("taints") or [])
    return ready and not tainted


def _etcd_healthy(cp: ControlPlane) -> bool:
    return http_ok(f"{cp.etcd_url}/health")


def _apiserver_ready(cp: ControlPlane) -> bool:
    try:
        return cp.api().readyz()
    except (OSError, ssl.SSLError):
        return False


def _https_healthz(key: str) -> Callable[[ControlPlane], bool]:
    def check(cp: ControlPlane) -> bool:
        return http_status(f"https://127.0.0.1:{cp.ports.get(key, 0)}/healthz", _insecure_tls_with(cp))[0] == 200
    return check


def _provisioner_running(cp: ControlPlane) -> bool:
    return live_pid(cp.pidfile("pv-provisioner"), _provisioner_marker(cp)) is not None


def _provisioner_marker(cp: ControlPlane) -> str:
    return f"--volumes {cp.dir / 'volumes'}"


def _etcd_cmd(cp: ControlPlane) -> list[str]:
    client, peer = cp.etcd_url, f"http://127.0.0.1:{cp.ports['etcd-peer']}"
    return [cp.bin("etcd"), "--name", "classtools-dev", "--data-dir", str(cp.dir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"classtools-dev={peer}", "--log-level", "warn"]


def _apiserver_address(cp: ControlPlane) -> list[str]:
    """Where the API server listens and what the `kubernetes` Service points at.
    With the real node, pods reach it through that Service: it advertises the
    machine's address (kube-proxy forwards 10.96.0.1:443 there) and listens on all
    addresses, which realnode.guard_apiserver limits to this machine and its pods.
    Without it (kwok only), loopback and no endpoints: nothing in the cluster calls it."""
    address = realnode.host_ip() if realnode.runs_here(cp.ctx) else ""
    if not address:
        return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                # The "kubernetes" Service would point at 127.0.0.1, which Endpoints
                # validation rejects; nothing in the cluster needs it.
                "--endpoint-reconciler-type=none"]
    return ["--bind-address=0.0.0.0", f"--advertise-address={address}",
            # A node's name is no DNS name here: logs and exec go to its address.
            "--kubelet-preferred-address-types=InternalIP,Hostname"]


def _apiserver_cmd(cp: ControlPlane) -> list[str]:
    p = cp.pki
    return [cp.bin("kube-apiserver"), *_apiserver_address(cp),
            f"--secure-port={cp.ports['kube-apiserver']}",
            f"--etcd-servers={cp.etcd_url}",
            f"--cert-dir={cp.dir / 'apiserver-certs'}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false"]


def _controller_manager_cmd(cp: ControlPlane) -> list[str]:
    kc, p = cp.component_kubeconfig("controller-manager"), cp.pki
    return [cp.bin("kube-controller-manager"),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={cp.ports['kube-controller-manager']}",
            f"--cert-dir={cp.dir / 'controller-manager-certs'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
            f"--cluster-name={pki.CLUSTER_NAME}", "--profiling=false"]


def _scheduler_cmd(cp: ControlPlane) -> list[str]:
    kc = cp.component_kubeconfig("scheduler")
    return [cp.bin("kube-scheduler"),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={cp.ports['kube-scheduler']}",
            f"--cert-dir={cp.dir / 'scheduler-certs'}", "--leader-elect=false", "--profiling=false"]


def _kwok_cmd(cp: ControlPlane) -> list[str]:
    return [cp.bin("kwok"), f"--kubeconfig={cp.component_kubeconfig('kwok')}",
            f"--config={cp.dir / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--manage-nodes-with-label-selector=",
            # Heartbeats through node Leases, as kubelets send them. Without a lease duration
            # kwok 0.7 renews no Lease and refreshes a node's status only every 10-20 minutes,
            # so after the node monitor grace period (50 s) the node lifecycle controller
            # marks the nodes Unknown and their pods not Ready: Deployments lose their
            # availability a minute after start and `helm --wait` never succeeds.
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16", "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{cp.ports['kwok']}"]


def _provisioner_cmd(cp: ControlPlane) -> list[str]:
    # `python -m` from the package's parent directory: the daemon needs nothing
    # but the standard library and this package.
    return [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            "from devenv.provisioner import main; sys.exit(main(sys.argv[1:]))",
            "--server", cp.server, "--pki", str(cp.pki), "--volumes", str(cp.dir / "volumes")]


COMPONENTS: list[Component] = [
    Component("etcd", lambda cp: f"--data-dir {cp.dir / 'etcd'}", _etcd_cmd, _etcd_healthy,
              lambda cp: cp.etcd_url, follows_apiserver=False),
    # Restarted when its arguments change: the real node needs it on the machine's address.
    Component("kube-apiserver", lambda cp: f"--tls-cert-file={cp.pki / 'apiserver.crt'}", _apiserver_cmd,
              _apiserver_ready, lambda cp: cp.server, follows_apiserver=False, restart_on_new_command=True),
    Component("kube-controller-manager", lambda cp: f"--kubeconfig={cp.component_kubeconfig('controller-manager')}",
              _controller_manager_cmd, _https_healthz("kube-controller-manager"),
              lambda cp: f"https://127.0.0.1:{cp.ports.get('kube-controller-manager', 0)}"),
    Component("kube-scheduler", lambda cp: f"--kubeconfig={cp.component_kubeconfig('scheduler')}",
              _scheduler_cmd, _https_healthz("kube-scheduler"),
              lambda cp: f"https://127.0.0.1:{cp.ports.get('kube-scheduler', 0)}"),
    Component("kwok", lambda cp: f"--kubeconfig={cp.component_kubeconfig('kwok')}", _kwok_cmd,
              lambda cp: http_ok(f"http://127.0.0.1:{cp.ports.get('kwok', 0)}/healthz"),
              lambda cp: f"http://127.0.0.1:{cp.ports.get('kwok', 0)}", restart_on_new_command=True),
    Component("pv-provisioner", _provisioner_marker, _provisioner_cmd, _provisioner_running,
              lambda cp: f"StorageClass {STORAGE_CLASS}, volumes in {cp.dir / 'volumes'}",
              program=os.path.basename(sys.executable)),
]
