"""Run a Kubernetes pod manifest (as KubeSpawner makes it) on the Docker Engine, as a kubelet would.

What is faithful, and how:
- A sandbox container holds the pod's network namespace, like the kubelet's
  pause container: init containers and containers all join it
  (network_mode container:<sandbox>), so they reach each other on 127.0.0.1
  exactly as in the pod.  Every containerPort is published on 127.0.0.1 only.
- initContainers run first, one after the other, each to a zero exit; then
  the containers start in manifest order.
- image, command (→ entrypoint) and args (→ cmd) as Kubernetes maps them onto
  the image's ENTRYPOINT/CMD: command without args drops the image's CMD;
  args alone keep its ENTRYPOINT.  $(VAR) references are expanded from the
  container's env as the kubelet does.
- env: value, valueFrom.secretKeyRef (from the rendered Secrets passed in),
  configMapKeyRef, fieldRef (metadata.name/namespace, status.podIP); envFrom
  is refused rather than ignored.
- workingDir; securityContext: runAsUser/runAsGroup (container over pod),
  the pod's fsGroup and supplementalGroups as supplementary groups,
  allowPrivilegeEscalation: false → no-new-privileges, runAsNonRoot checked,
  capabilities, readOnlyRootFilesystem, privileged.
- resources: limits.memory / limits.cpu as the container's cgroup limits.
- volumes: a persistentVolumeClaim is a named docker volume per claim (made
  by `Claims`, kept across pods so a restarted pod finds its data) with the
  ownership the kubelet gives a volume of a pod with fsGroup (group fsGroup,
  group rw, setgid directories, at every mount); a configMap / secret is a
  read-only directory of the object's keys; emptyDir a volume of the pod;
  subPath mounts bind the sub-directory (created, as the kubelet does, when
  missing) or the single file.  Docker volumes are never pre-filled from the
  image (Kubernetes does not do that).

What differs: no probes, no restarts, no kube-proxy/DNS (extra_hosts maps
names when a test needs them), cpu requests are not reserved.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "classtools.test.pod"
HELPER_SHELL = ["/bin/sh", "-c"]


class PodError(AssertionError):
    pass


# ---- quantities ------------------------------------------------------------------------------

_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "k": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12, "m": 10**-3}


def quantity(value) -> float:
    """A Kubernetes quantity ("512Mi", "2G", "250m", 2.0, 536870912) as a number."""
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value).strip())
    if not match or (match.group(2) and match.group(2) not in _SUFFIXES):
        raise PodError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES.get(match.group(2), 1)


# ---- the objects a pod refers to -------------------------------------------------------------

def _data(obj: dict) -> dict[str, bytes]:
    """A Secret's or ConfigMap's keys as bytes."""
    if obj.get("kind") == "Secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


@dataclass
class Objects:
    """The rendered Secrets and ConfigMaps a manifest may name."""
    items: list[dict] = field(default_factory=list)

    def get(self, kind: str, name: str) -> dict[str, bytes]:
        for obj in self.items:
            if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
                return _data(obj)
        have = sorted(f"{o.get('kind')}/{o.get('metadata', {}).get('name')}" for o in self.items)
        raise PodError(f"the pod needs {kind} {name}, which is not among the objects given: {have}")

    def key(self, kind: str, ref: dict) -> str | None:
        try:
            data = self.get(kind, ref["name"])
        except PodError:
            if ref.get("optional"):
                return None
            raise
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise PodError(f"{kind} {ref['name']} has no key {ref['key']!r}")
        return data[ref["key"]].decode()


# ---- persistent volume claims ----------------------------------------------------------------

class Claims:
    """Named docker volumes standing in for PVCs; outlive pods, removed by remove_all()."""

    def __init__(self, client, prefix: str | None = None):
        self.client = client
        self.prefix = prefix or f"classtools-pvc-{uuid.uuid4().hex[:8]}"
        self.volumes: dict[str, str] = {}

    def volume(self, claim: str) -> str:
        if claim not in self.volumes:
            name = f"{self.prefix}-{claim}"
            self.client.volumes.create(name, labels={LABEL: self.prefix})
            self.volumes[claim] = name
        return self.volumes[claim]

    def mountpoint(self, claim: str) -> str:
        return self.client.volumes.get(self.volume(claim)).attrs["Mountpoint"]

    def remove_all(self):
        for name in self.volumes.values():
            _ignore_missing(lambda: self.client.volumes.get(name).remove(force=True))
        self.volumes.clear()


def _ignore_missing(action):
    import docker.errors
    try:
        action()
    except docker.errors.NotFound:
        pass


# ---- the pod -----------------------------------------------------------------------------------

def _expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined names are replaced, $$ escapes, others stay."""
    def replace(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


class Pod:
    """One pod manifest running on the engine.  start(), then exec()/port()/logs(); delete()."""

    def __init__(self, client, manifest: dict, claims: Claims, objects: Objects | list | None = None,
                 namespace: str = "default", extra_hosts: dict[str, str] | None = None,
                 tmp_root: Path | None = None, skip_init: dict[str, str] | None = None):
        self.client = client
        self.manifest = manifest
        self.spec = manifest["spec"]
        self.name = manifest["metadata"]["name"]
        self.namespace = manifest["metadata"].get("namespace") or namespace
        self.claims = claims
        self.objects = objects if isinstance(objects, Objects) else Objects(list(objects or []))
        self.extra_hosts = dict(extra_hosts or {})
        # init containers the caller knows cannot run here: name -> why (kept in self.skipped)
        self.skip_init = dict(skip_init or {})
        self.skipped: dict[str, str] = {}
        self.run_id = f"classtools-pod-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-", dir=tmp_root))
        self.containers: dict[str, object] = {}      # name -> docker container (init ones included)
        self.sandbox = None
        self.ports: dict[int, int] = {}              # containerPort -> host port on 127.0.0.1
        self.pod_ip = ""
        self.empty_dirs: dict[str, str] = {}         # emptyDir volume -> docker volume
        self.object_dirs: dict[str, str] = {}        # configMap/secret volume -> host directory

    # -- setup helpers --

    def _image(self, reference: str):
        import docker.errors
        try:
            return self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            repository, _, tag = reference.rpartition(":")
            if "/" in tag or not repository:
                repository, tag = reference, "latest"
            self.client.images.pull(repository, tag=tag)
            return self.client.images.get(reference)

    def _as_root(self, image: str, script: str, mounts: list, env: dict | None = None):
        """A helper run as root, the kubelet's own work (volume ownership, subPath dirs)."""
        output = self.client.containers.run(image, [*HELPER_SHELL, script], entrypoint=[], user="0:0",
                                            mounts=mounts, network_mode="none", remove=True,
                                            environment=env or {}, labels={LABEL: self.run_id},
                                            stderr=True)
        return output.decode(errors="replace")

    def _fs_group(self):
        return (self.spec.get("securityContext") or {}).get("fsGroup")

    def _prepare_claims(self, image: str):
        """Ownership of each claim's volume as the kubelet sets it for the pod's fsGroup."""
        from docker.types import Mount
        fs_group = self._fs_group()
        for volume in self.spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            name = self.claims.volume(claim)
            if fs_group is None:
                continue
            # chgrp + g+rw (+x where u has x) + setgid on directories, recursively, skipping
            # symlinks: the kubelet's SetVolumeOwnership for fsGroupChangePolicy Always.
            script = (f'find /v \\! -type l -exec chgrp {int(fs_group)} {{}} + && '
                      'find /v \\! -type l -exec chmod g+rw {} + && '
                      'find /v -type d -exec chmod g+xs {} + && '
                      'find /v -type f -perm -u+x -exec chmod g+x {} +')
            self._as_root(image, script, [Mount("/v", name, type="volume", no_copy=True)])

    def _object_dir(self, volume: dict, kind: str, source: dict) -> str:
        """A configMap/secret volume: its keys (or the listed items) as files."""
        name = source.get("name") if kind == "ConfigMap" else source.get("secretName")
        try:
            data = self.objects.get(kind, name)
        except PodError:
            if source.get("optional"):
                data = {}
            else:
                raise
        # under a 0700 directory of this pod (mkdtemp): a Secret's files are nobody else's to read
        directory = self.tmp / "objects" / volume["name"]
        directory.mkdir(parents=True)
        default_mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                raise PodError(f"{kind} {name} has no key {item['key']!r} (volume {volume['name']})")
            path = directory / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            path.chmod(item.get("mode", default_mode))
        directory.chmod(0o755)
        return str(directory)

    def _mounts(self, container: dict, image: str) -> list:
        from docker.types import Mount
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise PodError(f"container {container['name']} mounts {mount['name']}, not a volume of the pod")
            read_only = bool(mount.get("readOnly"))
            sub_path = mount.get("subPath") or ""
            if mount.get("subPathExpr"):
                raise PodError("subPathExpr is not supported by this runner")
            target = mount["mountPath"]
            if "persistentVolumeClaim" in volume or "emptyDir" in volume:
                if "persistentVolumeClaim" in volume:
                    volume_name = self.claims.volume(volume["persistentVolumeClaim"]["claimName"])
                    read_only = read_only or bool(volume["persistentVolumeClaim"].get("readOnly"))
                else:
                    volume_name = self._empty_dir(volume["name"])
                if not sub_path:
                    mounts.append(Mount(target, volume_name, type="volume", read_only=read_only,
                                        no_copy=True))
                    continue
                # The kubelet bind-mounts the sub-directory, made (with the volume root's mode)
                # when missing; this engine has no volume-subpath mounts, so bind its path.
                if os.path.isabs(sub_path) or ".." in Path(sub_path).parts:
                    raise PodError(f"invalid subPath {sub_path!r}")
                self._as_root(image, 'test -e "/v/$SUB" || { mkdir -p "/v/$SUB" && '
                                     'chmod "$(stat -c %a /v)" "/v/$SUB" && '
                                     'chgrp "$(stat -c %g /v)" "/v/$SUB"; }',
                              [Mount("/v", volume_name, type="volume", no_copy=True)], env={"SUB": sub_path})
                root = self.client.volumes.get(volume_name).attrs["Mountpoint"]
                mounts.append(Mount(target, f"{root}/{sub_path}", type="bind", read_only=read_only))
            elif "configMap" in volume or "secret" in volume:
                kind, source = ("ConfigMap", volume["configMap"]) if "configMap" in volume \
                    else ("Secret", volume["secret"])
                if volume["name"] not in self.object_dirs:
                    self.object_dirs[volume["name"]] = self._object_dir(volume, kind, source)
                directory = self.object_dirs[volume["name"]]
                source_path = f"{directory}/{sub_path}" if sub_path else directory
                if sub_path and not os.path.exists(source_path):
                    raise PodError(f"{kind} volume {volume['name']} has no {sub_path!r}")
                mounts.append(Mount(target, source_path, type="bind", read_only=True))
            else:
                raise PodError(f"volume {volume['name']}: type {sorted(volume)} is not supported")
        return mounts

    def _empty_dir(self, name: str) -> str:
        if name not in self.empty_dirs:
            volume = f"{self.run_id}-{name}"
            self.client.volumes.create(volume, labels={LABEL: self.run_id})
            self.empty_dirs[name] = volume
        return self.empty_dirs[name]

    def _env(self, container: dict) -> dict[str, str]:
        if container.get("envFrom"):
            raise PodError(f"container {container['name']}: envFrom is not supported by this runner")
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "valueFrom" not in item:
                env[item["name"]] = _expand(str(item.get("value", "")), env)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                value = self.objects.key("Secret", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = self.objects.key("ConfigMap", source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = {"metadata.name": self.name, "metadata.namespace": self.namespace,
                         "status.podIP": self.pod_ip, "spec.nodeName": "docker"}.get(
                    source["fieldRef"]["fieldPath"])
                if value is None:
                    raise PodError(f"fieldRef {source['fieldRef']['fieldPath']} is not supported")
            else:
                raise PodError(f"env {item['name']}: valueFrom {sorted(source)} is not supported")
            if value is not None:
                env[item["name"]] = value
        return env

    def _user(self, container: dict, image) -> tuple[str | None, list]:
        pod = self.spec.get("securityContext") or {}
        own = container.get("securityContext") or {}
        uid = own.get("runAsUser", pod.get("runAsUser"))
        gid = own.get("runAsGroup", pod.get("runAsGroup"))
        if uid is None and gid is not None:
            image_user = (image.attrs.get("Config") or {}).get("User") or "0"
            uid = image_user.split(":")[0]
        user = None if uid is None else (f"{uid}:{gid}" if gid is not None else str(uid))
        groups = [str(g) for g in ([pod["fsGroup"]] if pod.get("fsGroup") is not None else [])
                  + list(pod.get("supplementalGroups") or [])]
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")):
            effective = uid if uid is not None else ((image.attrs.get("Config") or {}).get("User") or "0")
            if str(effective).split(":")[0] in ("0", "root", ""):
                raise PodError(f"container {container['name']}: runAsNonRoot, but it would run as root")
        return user, groups

    def _create(self, container: dict, init: bool):
        image = self._image(container["image"])
        env = self._env(container)
        user, groups = self._user(container, image)
        security = container.get("securityContext") or {}
        options: dict = {
            "name": f"{self.run_id}-{'init-' if init else ''}{container['name']}",
            "environment": env,
            "mounts": self._mounts(container, container["image"]),
            "network_mode": f"container:{self.sandbox.id}",
            "labels": {LABEL: self.run_id, "classtools.test.pod.name": self.name,
                       "classtools.test.pod.container": container["name"]},
            "detach": True,
        }
        if "command" in container:
            options["entrypoint"] = [_expand(str(a), env) for a in container["command"]]
        if "args" in container:
            options["command"] = [_expand(str(a), env) for a in container["args"]]
        elif "command" in container:
            options["command"] = []  # Kubernetes: a command replaces the image's CMD too
        if container.get("workingDir"):
            options["working_dir"] = container["workingDir"]
        if user:
            options["user"] = user
        if groups:
            options["group_add"] = groups
        if security.get("allowPrivilegeEscalation") is False:
            options["security_opt"] = ["no-new-privileges"]
        if security.get("privileged"):
            options["privileged"] = True
        capabilities = security.get("capabilities") or {}
        if capabilities.get("add"):
            options["cap_add"] = list(capabilities["add"])
        if capabilities.get("drop"):
            options["cap_drop"] = list(capabilities["drop"])
        if security.get("readOnlyRootFilesystem"):
            options["read_only"] = True
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            options["mem_limit"] = int(quantity(limits["memory"]))
        if "cpu" in limits:
            options["nano_cpus"] = int(quantity(limits["cpu"]) * 1e9)
        if container.get("tty"):
            options["tty"] = True
        return self.client.containers.create(container["image"], **options)

    # -- lifecycle --

    def start(self, init_timeout: float = 900) -> "Pod":
        try:
            self._start(init_timeout)
        except BaseException:
            self.delete()
            raise
        return self

    def _start(self, init_timeout: float):
        containers = self.spec["containers"]
        first_image = containers[0]["image"]
        self._image(first_image)
        self._prepare_claims(first_image)
        published = {}
        for container in containers:
            for port in container.get("ports") or []:
                published[f"{port['containerPort']}/{port.get('protocol', 'TCP').lower()}"] = ("127.0.0.1", None)
        # The pause container: sleeps, owns the network namespace and the hostname.
        self.sandbox = self.client.containers.run(
            first_image, ["sleep", "infinity"], entrypoint=[], detach=True, name=f"{self.run_id}-sandbox",
            hostname=self.name[:63], user="65535:65535", ports=published,
            extra_hosts=self.extra_hosts or None, labels={LABEL: self.run_id, "classtools.test.pod.name": self.name})
        self.sandbox.reload()
        network = self.sandbox.attrs["NetworkSettings"]
        self.pod_ip = network.get("IPAddress") or next(
            (n.get("IPAddress") for n in (network.get("Networks") or {}).values() if n.get("IPAddress")), "")
        for key, bindings in (network.get("Ports") or {}).items():
            if bindings:
                self.ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])

        for container in self.spec.get("initContainers") or []:
            if container["name"] in self.skip_init:
                self.skipped[container["name"]] = self.skip_init[container["name"]]
                continue
            created = self._create(container, init=True)
            self.containers[f"init:{container['name']}"] = created
            created.start()
            result = created.wait(timeout=init_timeout)
            if result.get("StatusCode") != 0:
                raise PodError(f"init container {container['name']} exited {result.get('StatusCode')}:\n"
                               + created.logs(tail=40).decode(errors="replace"))
        for container in containers:
            created = self._create(container, init=False)
            self.containers[container["name"]] = created
            created.start()
        return self

    def container(self, name: str):
        return self.containers[name]

    def running(self, name: str) -> bool:
        container = self.containers[name]
        container.reload()
        return container.status == "running"

    def logs(self, name: str, tail: int = 60) -> str:
        return self.containers[name].logs(tail=tail).decode(errors="replace")

    def exec(self, name: str, command: list[str], env: dict | None = None, user: str | None = None,
             workdir: str | None = None) -> tuple[int, str]:
        """Run a command in a container (as the container's user unless told), output merged."""
        container = self.containers[name]
        result = container.exec_run(command, environment=env or {}, user=user or "",
                                    workdir=workdir, demux=False)
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def process_env(self, name: str, pid: int = 1) -> dict[str, str]:
        """The environment of a process in the container (default: its main process), from /proc."""
        code, out = self.exec(name, ["cat", f"/proc/{pid}/environ"])
        if code != 0:
            raise PodError(f"cannot read /proc/{pid}/environ in {name}: {out}")
        return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)

    def pid_of(self, name: str, program: str) -> int | None:
        """The pid of the process running `program` (argv[0], or argv[1] after an interpreter)."""
        script = 'for d in /proc/[0-9]*; do printf "%s\\0" "${d#/proc/}"; cat "$d/cmdline"; printf "\\n"; done'
        code, out = self.exec(name, ["sh", "-c", script])
        pids = []
        for line in out.splitlines():
            pid, _, cmdline = line.partition("\0")
            argv = [os.path.basename(a) for a in cmdline.split("\0")[:2]]
            if pid.isdigit() and (argv[:1] == [program] or
                                  (argv[0].startswith("python") and argv[1:2] == [program])):
                pids.append(int(pid))
        return min(pids) if pids else None

    def port(self, container_port: int) -> int:
        """The 127.0.0.1 port the pod's containerPort is published on."""
        return self.ports[container_port]

    def wait_tcp(self, container_port: int, timeout: float = 600, watch: str | None = None):
        """Until something accepts connections on the pod's port (fails early if `watch` exits)."""
        deadline = time.monotonic() + timeout
        port = self.port(container_port)
        while True:
            if watch and not self.running(watch):
                raise PodError(f"{watch} exited while waiting for port {container_port}:\n{self.logs(watch)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    # docker-proxy accepts before the container does: a closed connection is no server
                    sock.settimeout(1)
                    try:
                        if sock.recv(1, socket.MSG_PEEK) == b"":
                            raise OSError("closed")
                    except socket.timeout:
                        pass
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PodError(f"nothing listens on port {container_port} after {timeout}s")
            time.sleep(1)

    def delete(self):
        """Remove the containers (the claims' volumes stay: that is a pod restart)."""
        for container in list(self.containers.values())[::-1]:
            _ignore_missing(lambda c=container: c.remove(force=True))
        self.containers.clear()
        if self.sandbox is not None:
            _ignore_missing(lambda: self.sandbox.remove(force=True))
            self.sandbox = None
        for volume in self.empty_dirs.values():
            _ignore_missing(lambda v=volume: self.client.volumes.get(v).remove(force=True))
        self.empty_dirs.clear()
        self.object_dirs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)  # the Secrets' files with it


def remove_leftovers(client, label_value: str | None = None):
    """Containers and volumes of earlier runs (by label), e.g. after a killed test session."""
    filters = {"label": LABEL if label_value is None else f"{LABEL}={label_value}"}
    for container in client.containers.list(all=True, filters=filters):
        _ignore_missing(lambda c=container: c.remove(force=True))
    for volume in client.volumes.list(filters=filters):
        _ignore_missing(lambda v=volume: v.remove(force=True))


# ---- reaching a service on the host's loopback from a pod ------------------------------------

class Forward:
    """A TCP relay from an address containers can reach (the bridge's gateway) to host loopback.

    The real hub of the runtime harness listens on 127.0.0.1; a pod reaches it as
    `hub` (extra_hosts) at the gateway address, where this relays to the hub.
    """

    def __init__(self, listen_host: str, target_port: int, target_host: str = "127.0.0.1",
                 listen_port: int | None = None):
        self.target = (target_host, target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((listen_host, target_port if listen_port is None else listen_port))
        self.server.listen(64)
        self.address = self.server.getsockname()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, destination):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                destination.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, destination):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.server.close()


def bridge_gateway(client) -> str:
    """The default bridge network's gateway: the host as containers see it."""
    import ipaddress
    for config in client.networks.get("bridge").attrs["IPAM"]["Config"] or []:
        if config.get("Gateway"):
            return config["Gateway"]
        if config.get("Subnet") and ipaddress.ip_network(config["Subnet"]).version == 4:
            # the engine gives the bridge the subnet's first address unless told otherwise
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    raise PodError("the docker bridge network has no IPv4 gateway")


# ---- course repositories the pods can pull ---------------------------------------------------

class GitServer:
    """Bare course repositories served by `git daemon` where pods reach the host.

    The course's `repo:` is then an ordinary git:// URL in courses.yaml (nbgitpuller's
    shallow clones need git's smart protocol), and the pod manifests stay exactly as
    rendered: no extra mount for the repository.
    """

    def __init__(self, root: Path, host: str, timeout: float = 60):
        import subprocess
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        self.url = f"git://{host}:{port}"
        self.log = open(root.parent / "git-daemon.log", "ab")
        self.process = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}", f"--listen={host}",
             f"--port={port}", str(root)], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, port), timeout=2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise PodError(f"git daemon did not start on {host}:{port}") from None
                time.sleep(0.2)

    def repo(self, name: str, files: dict[str, str]) -> str:
        """A repository `name`.git with one commit of `files`; its clone URL."""
        work = self.root.parent / f"{name}-work"
        work.mkdir()
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        self._git("init", "-q", "-b", "main", cwd=work)
        self._git("add", ".", cwd=work)
        self._git("commit", "-qm", "course material", cwd=work)
        self._git("clone", "-q", "--bare", str(work), str(self.root / f"{name}.git"), cwd=self.root)
        return f"{self.url}/{name}.git"

    @staticmethod
    def _git(*args, cwd):
        import subprocess
        subprocess.run(["git", "-c", "safe.directory=*", "-c", "user.name=Prof", "-c",
                        "user.email=prof@example.edu", *args], cwd=cwd, check=True, capture_output=True)

    def close(self):
        import signal
        import subprocess
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# ---- the classroom the pod, nbgrader and browser tests share --------------------------------

# Course material: lab1.md shows the pull; courses A and B keep students apart.
COURSE_FILES = {
    "intro": {"lab1.md": "# Lab 1\nLoad the flights table.\n"},
    "stats": {"week1.md": "# Week 1\nDistributions.\n"},
}


# z2jh's own init container (singleuser.cloudMetadata.blockWithIptables): an iptables rule, as
# privileged root, that keeps the pod from the cloud's metadata server.  The classroom turns it
# off (z2jh's NetworkPolicy does that job unprivileged; the pod test checks it is absent); a
# chart that still has it cannot run it here: its image (quay.io/jupyterhub/k8s-network-tools)
# cannot be pulled, and this engine has no metadata server to block.
SKIPPED_INIT = {"block-cloud-metadata": "z2jh's iptables block of the cloud metadata server: "
                                        "image not pullable offline, nothing to block on this engine"}


class RuntimePods:
    """The real hub of a rendered release plus pods run from its manifests, for one session.

    - the hub: runtime_classroom.start() of the harness (hub.py), with the courses served
      by a GitServer on the docker bridge's gateway;
    - pods reach the hub as `hub` at the gateway, where a Forward relays each port a
      manifest names (the Service port 8081, the hub's own HUB_SERVICE_PORT) to the hub;
    - claims: one docker volume per PVC (homes, the exchange, each grader's home), kept
      across pod restarts, removed at the end.
    """

    def __init__(self, client, runtime_classroom, workdir: Path, courses: list[dict]):
        self.client = client
        self.workdir = workdir
        self.claims = Claims(client)
        self.forwards: dict[int, Forward] = {}
        self.pods: list[Pod] = []
        self.tokens: dict[str, str] = {}
        self.servers: dict[str, Server] = {}
        self.git = None
        try:
            self.gateway = bridge_gateway(client)
            self.git = GitServer(workdir / "git", self.gateway)
            self.courses = [dict(course, repo=self.git.repo(course["name"], COURSE_FILES.get(
                course["name"], {"README.md": f"# {course['name']}\n"}))) for course in courses]
            self.hub = runtime_classroom.start(courses=self.courses)
            self.rendered = self.hub.rendered
        except BaseException:
            self.close()
            raise

    def token(self, user: str) -> str:
        """A real API token of `user`, made through the hub's own API after logging in."""
        if user not in self.tokens:
            self.tokens[user] = self.hub.login(user, "any password (dummy login)").new_token()
        return self.tokens[user]

    def _reach_hub(self, manifest: dict):
        """Forward every hub port the manifest's JUPYTERHUB_API_URL names."""
        from urllib.parse import urlsplit
        for container in manifest["spec"]["containers"]:
            for item in container.get("env") or []:
                if item["name"] == "JUPYTERHUB_API_URL" and "value" in item:
                    port = urlsplit(item["value"]).port or 80
                    if port not in self.forwards:
                        self.forwards[port] = Forward(self.gateway, self.hub.hub_port, listen_port=port)

    def run(self, manifest: dict) -> Pod:
        self._reach_hub(manifest)
        pod = Pod(self.client, manifest, self.claims, self.rendered.manifests,
                  namespace=self.rendered.namespace, extra_hosts={"hub": self.gateway},
                  tmp_root=self.workdir, skip_init=SKIPPED_INIT)
        self.pods.append(pod)
        return pod.start()

    def server(self, user: str) -> "Server":
        """`user`'s running server (started on first use) from KubeSpawner's manifest."""
        if user not in self.servers:
            from tests.integration.runtime import spawn

            # the server's JUPYTERHUB_API_TOKEN: a token of the user made by this running hub
            manifest = spawn.pod_manifest(self.hub, user, api_token=self.token(user))
            self.servers[user] = Server(user, self.run(manifest), manifest).wait_ready()
        return self.servers[user]

    def restart(self, user: str) -> "Server":
        """Stop `user`'s server and start it again from a new manifest: same claims (volumes)."""
        self.servers.pop(user).pod.delete()
        return self.server(user)

    def grader(self, course: str) -> "Server":
        key = f"grader:{course}"
        if key not in self.servers:
            from tasks import contract
            manifest = self.grader_manifest(course)
            self.servers[key] = Server(contract.grader_user(course), self.run(manifest), manifest,
                                       container=manifest["spec"]["containers"][0]["name"]).wait_ready()
        return self.servers[key]

    def grader_manifest(self, course: str) -> dict:
        """The pod the chart's grader Deployment of `course` would make."""
        from tasks import contract
        deployment = self.rendered.find("Deployment", contract.grader_host(course))
        template = deployment["spec"]["template"]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {**template.get("metadata", {}), "name": f"{contract.grader_host(course)}-0"},
                "spec": template["spec"]}

    def close(self):
        for pod in self.pods:
            pod.delete()
        self.claims.remove_all()
        for forward in self.forwards.values():
            forward.close()
        if self.git is not None:
            self.git.close()


@dataclass
class Response:
    status: int
    body: str


class Server:
    """A Jupyter server in a pod: its URL on 127.0.0.1, its process's environment."""

    def __init__(self, user: str, pod: Pod, manifest: dict, container: str = "notebook",
                 program: str = "jupyterhub-singleuser"):
        self.user, self.pod, self.manifest, self.container, self.program = user, pod, manifest, container, program
        spec = next(c for c in manifest["spec"]["containers"] if c["name"] == container)
        self.container_port = next(p["containerPort"] for p in spec.get("ports") or [])
        env = {item["name"]: item.get("value") for item in spec.get("env") or []}
        self.prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or "/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.pod.port(self.container_port)}{self.prefix}"

    def wait_ready(self, timeout: float = 900) -> "Server":
        self.pod.wait_tcp(self.container_port, timeout=timeout, watch=self.container)
        return self

    def server_env(self) -> dict[str, str]:
        """The environment of the server process itself (what classroom-start exported)."""
        pid = self.pod.pid_of(self.container, self.program)
        if pid is None:
            raise PodError(f"no {self.program} process in {self.container}:\n{self.pod.logs(self.container)}")
        return self.pod.process_env(self.container, pid)

    def exec(self, command: list[str], env: dict | None = None, workdir: str | None = None):
        """A command as the server's user, with the server process's environment (plus `env`)."""
        return self.pod.exec(self.container, command, env={**self.server_env(), **(env or {})}, workdir=workdir)

    def get(self, path: str, token: str, expect_error: bool = False) -> Response:
        import urllib.error
        import urllib.request
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Response(response.status, response.read().decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            if not expect_error:
                raise AssertionError(f"GET {self.url + path} as {self.user}: {exc.code}\n"
                                     f"{self.pod.logs(self.container, 30)}") from None
            return Response(exc.code, exc.read().decode(errors="replace"))
