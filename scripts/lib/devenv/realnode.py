"""One real node of the dev cluster, beside the kwok pool: pods on it really run.

    containerd   a second instance (Debian's 1.6, CRI v1), its own socket and root
                 under DEV_DIR/real-node; the Docker Engine's containerd is not touched
    CNI          Debian's bridge/host-local/portmap plugins: bridge BRIDGE, pods in POD_CIDR
    kubelet      v1.34 (cgroupfs driver: cgroup v1, PID 1 not systemd), registered as
                 NODE_NAME with the label NODE_LABEL and the taint NODE_TAINT, so only
                 pods that ask for this node land here; kwok's nodes stay for tests of scale
    kube-proxy   iptables mode (this kernel has no IPVS)
    CoreDNS      a Deployment on this node behind the Service DNS_SERVICE_IP (kube-dns):
                 z2jh wires the proxy and the servers to the hub by Service name
    pause        the dev registry mirror's (mirror.py): k8s' own build/pause, compiled static

Pods reach the API server through the `kubernetes` Service: the control plane
advertises the machine's address (controlplane.py), kube-proxy forwards there.
Everything stays on this machine: the pod network is a bridge here, and the
kubelet's port and the API server answer only this machine and its pods
(iptables rules tagged RULE_COMMENT, which `down` removes).

One real node per machine: the kubelet's ports, the iptables rules and the
bridge are the machine's. CLASSTOOLS_REAL_NODE=0 skips the node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import cpbuild, pins, pki
from .core import (Context, DevEnvError, as_root, atomic_write, cmdline, http_status, live_pid, log, port_is_free,
                   run_logged, spawn, stop_service, wait_until, warn_strays)
from .kubeapi import ApiError, KubeApi

NODE_NAME = "classtools-node"
# What a classroom's pods select and tolerate to run here (config: cluster.node_pool).
NODE_LABEL = ("classtools.dev/node", "real")
NODE_TAINT = ("classtools.dev/node", "real", "NoSchedule")
POD_CIDR = "10.88.0.0/16"          # not kwok's 10.244.0.0/16: kwok hands out fake pod IPs there
POD_GATEWAY = "10.88.0.1"
BRIDGE = "classtools0"
DNS_SERVICE_IP = "10.96.0.10"      # in pki.SERVICE_CIDR
CLUSTER_DOMAIN = "cluster.local"
RULE_COMMENT = "classtools-node"
KUBELET_PORT = 10250
# Ports the node's processes listen on (loopback, except the kubelet's API on the node IP).
NODE_PORTS = {"kubelet": KUBELET_PORT, "kubelet-healthz": 10248, "kube-proxy-healthz": 10256,
              "kube-proxy-metrics": 10249}
MACHINE_LOCK = Path("/run/classtools-real-node.owner")
READY_TIMEOUT = 180
DNS_READY_TIMEOUT = 180


def enabled(ctx: Context) -> bool:
    return ctx.env.get("CLASSTOOLS_REAL_NODE", "1") != "0"


def machine_owner() -> str:
    """The dev dir whose real node runs on this machine, "" if none does."""
    try:
        owner = MACHINE_LOCK.read_text().strip()
    except OSError:
        return ""
    if not owner:
        return ""
    kubelet = Path(owner, "real-node")
    return owner if live_pid(kubelet / "kubelet.pid", str(kubelet / "kubelet.yaml")) else ""


def runs_here(ctx: Context) -> bool:
    """This dev dir has (or may start) the machine's real node: enabled, and no other
    dev dir's node runs here (a private dev dir of the tests, a second checkout)."""
    return enabled(ctx) and machine_owner() in ("", str(ctx.dev_dir))


def host_ip() -> str:
    """The machine's own address (the default route's source): the kubelet refuses a
    loopback node IP, and pods reach the API server there. "" without a route."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True,
                             timeout=5).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out[out.index("src") + 1] if "src" in out else ""


def label_selector() -> str:
    return "=".join(NODE_LABEL)


def taint_text() -> str:
    key, value, effect = NODE_TAINT
    return f"{key}={value}:{effect}"


def toleration() -> dict:
    key, value, effect = NODE_TAINT
    return {"key": key, "operator": "Equal", "value": value, "effect": effect}


def _iptables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(as_root(["iptables", "-w", *args]), capture_output=True, text=True)


def _node_rules() -> list[list[str]]:
    """(chain, rule...) the node adds; each carries RULE_COMMENT."""
    tag = ["-m", "comment", "--comment", RULE_COMMENT]
    return [
        # Docker sets FORWARD's policy to DROP: the pod network forwards its own traffic.
        ["FORWARD", "-s", POD_CIDR, *tag, "-j", "ACCEPT"],
        ["FORWARD", "-d", POD_CIDR, *tag, "-j", "ACCEPT"],
        # The kubelet's API trusts its callers (AlwaysAllow: the dev API server has no
        # kubelet client certificate): only this machine reaches it, not its pods.
        ["INPUT", "-p", "tcp", "--dport", str(KUBELET_PORT), "!", "-i", "lo", *tag, "-j", "DROP"],
    ]


def _apiserver_rule(port: int) -> list[str]:
    # The API server listens on all addresses so that pods reach it; nobody else may.
    return ["INPUT", "-p", "tcp", "--dport", str(port), "!", "-i", BRIDGE, "-m", "addrtype", "!", "--src-type",
            "LOCAL", "-m", "comment", "--comment", f"{RULE_COMMENT} apiserver", "-j", "DROP"]


def _insert(rule: list[str]) -> None:
    chain, *spec = rule
    if _iptables("-C", chain, *spec).returncode == 0:
        return
    proc = _iptables("-I", chain, "1", *spec)
    if proc.returncode != 0:
        raise DevEnvError(f"real node: iptables -I {chain} failed: {proc.stderr.strip()}")


def _delete(rule: list[str]) -> None:
    chain, *spec = rule
    while _iptables("-C", chain, *spec).returncode == 0:
        _iptables("-D", chain, *spec)


def guard_apiserver(port: int) -> None:
    """Before an API server listens on all addresses: only this machine and its pods reach it."""
    _insert(_apiserver_rule(port))


def unguard_apiserver(port: int) -> None:
    _delete(_apiserver_rule(port))


class RealNode:
    name = "real-node"
    one_time = False

    # ---------------------------------------------------------------- paths

    def dir(self, ctx: Context) -> Path:
        return ctx.path("real-node")

    def pidfile(self, ctx: Context, name: str) -> Path:
        return self.dir(ctx) / f"{name}.pid"

    def logfile(self, ctx: Context, name: str) -> Path:
        return self.dir(ctx) / f"{name}.log"

    def marker(self, ctx: Context, name: str) -> str:
        return {"containerd": str(self.dir(ctx) / "containerd.toml"),
                "kubelet": str(self.dir(ctx) / "kubelet.yaml"),
                "kube-proxy": str(self.dir(ctx) / "kube-proxy.yaml")}[name]

    def socket(self, ctx: Context) -> Path:
        return self.dir(ctx) / "containerd.sock"

    # ---------------------------------------------------------------- up

    def ensure(self, ctx: Context, facts: dict) -> None:
        facts["real_node"] = None
        if not enabled(ctx):
            log("real node: skipped (CLASSTOOLS_REAL_NODE=0)")
            return
        if not runs_here(ctx):
            # One per machine: the kubelet's ports, the bridge and the iptables rules are the machine's.
            log(f"real node: skipped: the dev environment in {machine_owner()} runs this machine's real node "
                "(one per machine); this one has kwok's nodes only")
            return
        t0 = time.monotonic()
        node_ip = host_ip()
        if not node_ip:
            raise DevEnvError("real node: this machine has no default route, so no address for the node "
                              "(the kubelet refuses a loopback one); CLASSTOOLS_REAL_NODE=0 skips the node")
        self._claim_machine(ctx)
        self._preflight(ctx)
        bins = cpbuild.ensure_binaries(ctx.env, cpbuild.REAL_NODE)
        dns_bin = cpbuild.ensure_binaries(ctx.env, cpbuild.COREDNS) / "coredns"
        cp = facts["control_plane"]
        registry = facts["registry"]
        d = self.dir(ctx)
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        pause = facts["upstream_images"]["images"]["pause"]["ref"]  # mirror.py: k8s' own pause
        coredns = self._image(ctx, registry, "classtools-dev/coredns", pins.COREDNS_VERSION,
                              lambda tmp: self._coredns_context(tmp, dns_bin))
        cp_dir = Path(cp["dir"])
        changed = self._write_configs(ctx, registry, pause, node_ip, cp_dir / "pki", cp["server"])
        self._start(ctx, "containerd", ["containerd", "--config", str(d / "containerd.toml")],
                    lambda: self.socket(ctx).is_socket() and self._crictl_ok(ctx), "containerd" in changed)
        for rule in _node_rules():
            _insert(rule)
        self._start(ctx, "kubelet", [str(bins / "kubelet"), f"--config={d / 'kubelet.yaml'}",
                                     f"--kubeconfig={d / 'kubelet.kubeconfig'}", f"--root-dir={d / 'kubelet'}",
                                     f"--cert-dir={d / 'kubelet-pki'}", f"--hostname-override={NODE_NAME}",
                                     f"--node-ip={node_ip}", f"--node-labels={label_selector()}", "--v=1"],
                    lambda: http_status(f"http://127.0.0.1:{NODE_PORTS['kubelet-healthz']}/healthz")[0] == 200,
                    "kubelet" in changed)
        self._start(ctx, "kube-proxy", [str(bins / "kube-proxy"), f"--config={d / 'kube-proxy.yaml'}",
                                        f"--hostname-override={NODE_NAME}", "--v=1"],
                    lambda: http_status(f"http://127.0.0.1:{NODE_PORTS['kube-proxy-healthz']}/healthz")[0] == 200,
                    "kube-proxy" in changed)
        api = KubeApi(cp["server"], cp_dir / "pki" / "ca.crt", cp_dir / "pki" / "admin.crt",
                      cp_dir / "pki" / "admin.key")
        wait_until(lambda: self._node_ready(api), READY_TIMEOUT, f"real node: node {NODE_NAME} Ready",
                   pid=live_pid(self.pidfile(ctx, "kubelet"), self.marker(ctx, "kubelet")),
                   logfile=self.logfile(ctx, "kubelet"), interval=0.5, progress_every=30)
        self._ensure_dns(api, coredns)
        facts["real_node"] = {
            "name": NODE_NAME, "ip": node_ip, "label": label_selector(), "taint": taint_text(),
            "pod_cidr": POD_CIDR, "gateway": POD_GATEWAY, "dns": DNS_SERVICE_IP, "containerd_socket": str(self.socket(ctx)),
            "pause_image": pause, "coredns_image": coredns, "dir": str(d),
        }
        facts["started"]["real_node"] = True
        log(f"real node: {NODE_NAME} Ready at {node_ip} with cluster DNS at {DNS_SERVICE_IP} "
            f"({time.monotonic() - t0:.1f}s)")

    def _claim_machine(self, ctx: Context) -> None:
        atomic_write(MACHINE_LOCK, f"{ctx.dev_dir}\n")

    def _preflight(self, ctx: Context) -> None:
        for program in ("containerd", "runc", "conntrack", "gcc"):
            if not shutil.which(program):
                raise DevEnvError(f"real node: {program} not found (the apt step installs it: "
                                  "containerd, runc, conntrack, gcc)")
        for plugin in ("bridge", "host-local", "portmap", "loopback"):
            if not os.access(f"/usr/lib/cni/{plugin}", os.X_OK):
                raise DevEnvError(f"real node: CNI plugin /usr/lib/cni/{plugin} missing "
                                  "(package containernetworking-plugins)")
        if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
            raise DevEnvError("real node: no cgroup hierarchy at /sys/fs/cgroup; the kubelet needs one")
        for what, port in NODE_PORTS.items():
            name = "kube-proxy" if what.startswith("kube-proxy") else "kubelet"
            if live_pid(self.pidfile(ctx, name), self.marker(ctx, name)):
                continue
            if not port_is_free(port, host="0.0.0.0"):
                raise DevEnvError(f"real node: port {port} ({what}) is taken by another process "
                                  f"(`ss -ltnp 'sport = :{port}'` names it); the node needs it")

    # ---------------------------------------------------------------- images

    def _image(self, ctx: Context, registry: str, repo: str, version: str, make_context) -> str:
        """REF in the dev registry, built and pushed unless the registry has it."""
        ref = f"{registry}/{repo}:{version}"
        status, _ = http_status(f"http://{registry}/v2/{repo}/manifests/{version}",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        if status == 200:
            return ref
        logfile = self.logfile(ctx, "images")
        log(f"real node: building {ref} (log: {logfile})")
        with tempfile.TemporaryDirectory(prefix="classtools-node-image.") as tmp:
            make_context(Path(tmp))
            docker = ["docker", "--host", ctx.docker_host]
            # FROM scratch and one COPY: the classic builder does, whichever docker CLI this is
            # (a CLI of Docker 23+ without buildx refuses DOCKER_BUILDKIT=1).
            run_logged([*docker, "build", "-t", ref, tmp], logfile, f"real node: docker build {ref}",
                       env=dict(os.environ, DOCKER_BUILDKIT="0"))
            run_logged([*docker, "push", ref], logfile, f"real node: docker push {ref}")
        return ref

    def _coredns_context(self, tmp: Path, binary: Path) -> None:
        shutil.copy(binary, tmp / "coredns")
        (tmp / "Dockerfile").write_text('FROM scratch\nCOPY coredns /coredns\nEXPOSE 53 53/udp\n'
                                        'ENTRYPOINT ["/coredns"]\n')

    # ---------------------------------------------------------------- configuration

    def _write_configs(self, ctx: Context, registry: str, pause: str, node_ip: str, pki_dir: Path,
                       server: str) -> set[str]:
        """Writes every file the node's processes read; returns the processes whose own
        configuration changed (they restart to read it)."""
        d = self.dir(ctx)
        changed = set()
        if _write_changed(d / "containerd.toml", f"""# Written by scripts/dev-env (real node); rewritten by every `up`.
version = 2
root = "{d / 'containerd/root'}"
state = "{d / 'containerd/state'}"
[grpc]
  address = "{self.socket(ctx)}"
[ttrpc]
  address = "{self.socket(ctx)}.ttrpc"
[debug]
  address = "{d / 'containerd-debug.sock'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Root here lacks CAP_SYS_RESOURCE on some VMs: oom_score_adj cannot go below 0
  # (a sandbox asks for -998) and every sandbox would fail in runc.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d / 'certs.d'}"
"""):
            changed.add("containerd")
        # The dev registry speaks plain HTTP on loopback.
        atomic_write(d / "certs.d" / registry / "hosts.toml",
                     f'server = "http://{registry}"\n\n[host."http://{registry}"]\n'
                     '  capabilities = ["pull", "resolve"]\n')
        atomic_write(d / "cni" / "10-classtools.conflist", json.dumps({
            "cniVersion": "1.0.0", "name": "classtools",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}, indent=2) + "\n")
        # The kubelet as system:node:<name> (the Node authorizer's subject), kube-proxy as
        # system:kube-proxy (bound to system:node-proxier by default).
        for component, client, cn, org in (("kubelet", "node-kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
                                           ("kube-proxy", "node-proxy", "system:kube-proxy", "")):
            pki.ensure_client(pki_dir, client, cn, org)
            atomic_write(d / f"{component}.kubeconfig", pki.kubeconfig(pki_dir, client, server, embed=False), 0o600)
        if _write_changed(d / "kubelet.yaml", f"""# Written by scripts/dev-env (real node); rewritten by every `up`.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs                 # PID 1 is not systemd; cgroup v1
containerRuntimeEndpoint: unix://{self.socket(ctx)}
failSwapOn: false
address: {node_ip}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {NODE_PORTS['kubelet-healthz']}
authentication:
  anonymous: {{enabled: true}}         # the dev API server has no kubelet client certificate
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {pki_dir / 'ca.crt'}}}
authorization: {{mode: AlwaysAllow}}   # only this machine reaches the port (iptables, {RULE_COMMENT})
enforceNodeAllocatable: []
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS: [{DNS_SERVICE_IP}]
registerWithTaints: [{{key: {NODE_TAINT[0]}, value: "{NODE_TAINT[1]}", effect: {NODE_TAINT[2]}}}]
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
"""):
            changed.add("kubelet")
        if _write_changed(d / "kube-proxy.yaml", f"""# Written by scripts/dev-env (real node); rewritten by every `up`.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {d / 'kube-proxy.kubeconfig'}}}
hostnameOverride: {NODE_NAME}
mode: iptables                         # this kernel has no IPVS
clusterCIDR: {POD_CIDR}
healthzBindAddress: 127.0.0.1:{NODE_PORTS['kube-proxy-healthz']}
metricsBindAddress: 127.0.0.1:{NODE_PORTS['kube-proxy-metrics']}
conntrack: {{maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
nodePortAddresses: [primary]
"""):
            changed.add("kube-proxy")
        return changed

    # ---------------------------------------------------------------- processes

    def _start(self, ctx: Context, name: str, command: list[str], healthy, reconfigured: bool) -> None:
        pidfile, marker, logfile = self.pidfile(ctx, name), self.marker(ctx, name), self.logfile(ctx, name)
        pid = live_pid(pidfile, marker)
        if pid and cmdline(pid) == command and not reconfigured and _wait(healthy, 20):
            log(f"real node: reusing {name} (pid {pid})")
            warn_strays(ctx, f"real node: {name}", pidfile, marker, os.path.basename(command[0]))
            return
        if pid:
            why = ("its arguments changed" if cmdline(pid) != command else
                   "its configuration changed" if reconfigured else "it does not answer")
            log(f"real node: restarting {name}: {why}")
            stop_service(ctx, f"real node: {name}", pidfile, marker, os.path.basename(command[0]))
        pid = spawn(command, logfile, pidfile, cwd=self.dir(ctx))
        log(f"real node: starting {name} (pid {pid}, log: {logfile})")
        wait_until(healthy, 120, f"real node: {name}", pid=pid, logfile=logfile, interval=0.3, progress_every=30)

    def _crictl_ok(self, ctx: Context) -> bool:
        proc = subprocess.run(["ctr", "--address", str(self.socket(ctx)), "version"], capture_output=True,
                              timeout=10)
        return proc.returncode == 0

    def _node_ready(self, api: KubeApi) -> bool:
        try:
            node = api.get_or_none(f"/api/v1/nodes/{NODE_NAME}")
        except ApiError:
            return False
        return node is not None and _ready_condition(node)

    # ---------------------------------------------------------------- cluster DNS

    def _ensure_dns(self, api: KubeApi, image: str) -> None:
        for collection, obj in dns_objects(image):
            path = f"{collection}/{obj['metadata']['name']}"
            existing = api.get_or_none(path)
            if existing is None:
                api.create(collection, obj)
            elif obj["kind"] in ("Deployment", "ConfigMap", "ClusterRole"):
                api.request("PUT", path, {**obj, "metadata": {**obj["metadata"],
                                                              "resourceVersion": existing["metadata"]["resourceVersion"]}})

        def ready() -> bool:
            try:
                dep = api.get("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
            except ApiError:
                return False
            status = dep.get("status", {})
            return (status.get("observedGeneration") == dep["metadata"]["generation"]
                    and status.get("readyReplicas", 0) >= 1 and status.get("updatedReplicas", 0) >= 1
                    and status.get("replicas", 0) == status.get("updatedReplicas"))
        wait_until(ready, DNS_READY_TIMEOUT, "real node: CoreDNS Ready (kube-system/coredns)", interval=0.5,
                   progress_every=30)

    # ---------------------------------------------------------------- down

    def stop(self, ctx: Context) -> None:
        d = self.dir(ctx)
        if not d.exists():
            return
        api = _admin_api(ctx)
        uids = set()
        if api and live_pid(self.pidfile(ctx, "kubelet"), self.marker(ctx, "kubelet")):
            # Cordon, then delete the node's pods while its kubelet still runs, so the
            # CNI plugin removes their veths, addresses and masquerade rules.
            try:
                api.patch(f"/api/v1/nodes/{NODE_NAME}", {"spec": {"unschedulable": True}})
                pods = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")["items"]
                for pod in pods:
                    uids.add(pod["metadata"]["uid"])
                    api.delete(f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}")
                _wait(lambda: not api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")["items"], 60)
            except ApiError as exc:
                log(f"real node: could not drain {NODE_NAME}: {exc}")
        for name in ("kube-proxy", "kubelet"):
            program = "kube-proxy" if name == "kube-proxy" else "kubelet"
            stop_service(ctx, f"real node: {name}", self.pidfile(ctx, name), self.marker(ctx, name), program)
        proxy = cpbuild.bin_dir(ctx.env, cpbuild.REAL_NODE) / "kube-proxy"
        if proxy.exists():
            subprocess.run(as_root([str(proxy), "--cleanup"]), capture_output=True)
        # What `kube-proxy --cleanup` leaves: the kubelet's chains and kube-proxy's hint.
        for chain in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"):
            for table in ("filter", "nat", "mangle"):
                for parent in ("INPUT", "OUTPUT"):
                    _iptables("-t", table, "-D", parent, "-j", chain)
                _iptables("-t", table, "-F", chain)
                _iptables("-t", table, "-X", chain)
        if api:
            try:
                api.delete(f"/api/v1/nodes/{NODE_NAME}")
            except ApiError:
                pass
        uids |= {p.name for p in (d / "kubelet" / "pods").glob("*")} if (d / "kubelet" / "pods").exists() else set()
        _stop_containers(self.socket(ctx))
        stop_service(ctx, "real node: containerd", self.pidfile(ctx, "containerd"), self.marker(ctx, "containerd"),
                     "containerd")
        with open("/proc/self/mounts") as f:
            mounts = sorted((line.split()[1] for line in f if line.split()[1].startswith(f"{d}/")), reverse=True)
        for mnt in mounts:
            subprocess.run(as_root(["umount", "-l", mnt]), capture_output=True)
        subprocess.run(as_root(["ip", "link", "del", BRIDGE]), capture_output=True)
        for rule in _node_rules():
            _delete(rule)
        for uid in uids:
            for link in Path("/var/log/containers").glob("*"):
                if f"_{uid}/" in os.readlink(link) if link.is_symlink() else False:
                    link.unlink(missing_ok=True)
            for logdir in Path("/var/log/pods").glob(f"*_{uid}"):
                shutil.rmtree(logdir, ignore_errors=True)
        for cg in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for sub in sorted(cg.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [cg]:
                if sub.is_dir():
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
        try:
            if MACHINE_LOCK.read_text().strip() == str(ctx.dev_dir):
                MACHINE_LOCK.unlink()
        except OSError:
            pass

    # ---------------------------------------------------------------- status

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        if not enabled(ctx):
            return [("real-node", "skipped", "CLASSTOOLS_REAL_NODE=0", True)]
        if not runs_here(ctx):
            return [("real-node", "skipped", f"the machine's node belongs to {machine_owner()}", True)]
        lines = []
        for name in ("containerd", "kubelet", "kube-proxy"):
            pid = live_pid(self.pidfile(ctx, name), self.marker(ctx, name))
            lines.append((f"real-node/{name}", "running" if pid else "stopped",
                          f"pid {pid}" if pid else f"log: {self.logfile(ctx, name)}", bool(pid)))
        api = _admin_api(ctx)
        ready = False
        if api and lines[1][3]:
            try:
                node = api.get_or_none(f"/api/v1/nodes/{NODE_NAME}")
                ready = node is not None and _ready_condition(node)
            except ApiError:
                ready = False
        lines.append(("real-node", "ready" if ready else "not-ready", NODE_NAME, ready))
        return lines


def dns_objects(image: str) -> list[tuple[str, dict]]:
    """CoreDNS as kubeadm sets it up, pinned to the real node: (collection, object)."""
    labels = {"k8s-app": "kube-dns"}
    corefile = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}}
"""
    ns = "kube-system"
    meta = {"name": "coredns", "namespace": ns}
    return [
        (f"/api/v1/namespaces/{ns}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                       "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["list", "watch"]}]}),
        ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]}),
        (f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                                                 "data": {"Corefile": corefile}}),
        (f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "serviceAccountName": "coredns",
                         "dnsPolicy": "Default",   # the machine's resolver, for names outside the cluster
                         "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
                         "tolerations": [toleration()],
                         "containers": [{
                             "name": "coredns", "image": image, "args": ["-conf", "/etc/coredns/Corefile"],
                             "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                       {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}],
                             "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                 "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                             "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                             "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                               "initialDelaySeconds": 10},
                             "resources": {"requests": {"cpu": "50m", "memory": "70Mi"},
                                           "limits": {"memory": "170Mi"}},
                             "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                         }],
                         "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                     }}}}),
        (f"/api/v1/namespaces/{ns}/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {"clusterIP": DNS_SERVICE_IP, "selector": labels,
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
    ]


def _ready_condition(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions") or [])


def _admin_api(ctx: Context) -> KubeApi | None:
    cp = ctx.path("control-plane")
    try:
        port = json.loads((cp / "ports.json").read_text())["kube-apiserver"]
    except (OSError, ValueError, KeyError):
        return None
    if not (cp / "pki" / "admin.key").exists():
        return None
    return KubeApi(f"https://127.0.0.1:{port}", cp / "pki" / "ca.crt", cp / "pki" / "admin.crt",
                   cp / "pki" / "admin.key", timeout=5)


def _stop_containers(socket: Path) -> None:
    if socket.is_socket():
        ctr = ["ctr", "--address", str(socket), "-n", "k8s.io"]
        tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split()
        for task in tasks:
            subprocess.run([*ctr, "tasks", "kill", "-s", "KILL", task], capture_output=True, timeout=30)
    # The shims outlive containerd; each names the socket it serves.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and os.path.basename(cmd[0].decode(errors="replace")) == "containerd-shim-runc-v2" \
                and str(socket).encode() in cmd:
            try:
                os.kill(int(entry.name), 9)
            except ProcessLookupError:
                pass


def _write_changed(path: Path, text: str) -> bool:
    """Writes TEXT unless PATH holds it already; True when it changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    atomic_write(path, text)
    return True



def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except ApiError:
            pass
        time.sleep(0.5)
    return False

