"""Defect 8: nbgrader's exchange root is writable by the students' uid, for both kinds of storage.

The classroom chart is packaged by the real chain (`doit chart:package`, with the real
z2jh 4.4.0 inside) and rendered by the real `helm template` with exactly the values
`release:jupyterhub` gives `helm upgrade` (tasks.release.factory.hub_release_values).

No Kubernetes runs here, so the Docker Engine plays the kubelet for the exchange.  A
fresh root-owned docker volume is the disk a provisioner hands out; every container the
rendered chart runs to completion with the exchange mounted (init containers, Jobs' and
KubeSpawner's init containers) runs on it with its rendered command, user, capabilities
and privilege; then a student's server as KubeSpawner makes it (singleuser.uid, group
singleuser.fsGid) writes a submission into the exchange root.

How claims map onto docker volumes:
  storage_class  the exchange PVC is one volume.
  nfs            the NFS server's own PVC is the volume; the exchange PVC binds the
                 PersistentVolume that mounts the server's NFSv4 root, i.e. the first
                 directory the server container exports (its first argument), so it is
                 that directory of the server's volume (root is not squashed).
The rendered images are used when the engine has them (the notebook image is built by
the chain); others (the NFS server's) cannot be pulled here, so their commands run in
Debian's bookworm-slim.
"""

from __future__ import annotations

import base64
import posixpath
import re
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.test_chart import _classroom

pytestmark = pytest.mark.integration

FALLBACK_IMAGE = "debian:bookworm-slim"
# What the exchange's preparation may hold: root's power over ownership, nothing else.
PREPARATION_CAPABILITIES = {"CHOWN", "FOWNER"}
STORAGE = {
    "storage_class": "  storage: storage_class\n  storage_class: standard-rwx\n",
    "nfs": "  storage: nfs\n",
}


def _packaged_chart(project, registry, jupyterhub_chart, storage) -> Path:
    _classroom(project, registry, "unpublished", jupyterhub_chart, f"x{uuid.uuid4().hex[:8]}")
    text = (project.config / "classroom.yaml").read_text()
    exchange = re.search(r"(?m)^exchange:.*\n((?:[ #].*\n|\n)*)", text)
    body = re.sub(r"(?m)^  (storage|storage_class):.*\n", "", exchange.group(1))
    text = text[:exchange.start(1)] + STORAGE[storage] + body + text[exchange.end(1):]
    project.write("classroom.yaml", text)
    project.doit("chart:package", check=True)
    return next((project.root / ".classroom" / "charts").glob("classroom-*.tgz"))


def _render(project, chart: Path, helm_bin, monkeypatch) -> list[dict]:
    """What `helm upgrade` of release:jupyterhub would apply, rendered by the real helm."""
    from tasks import helm
    from tasks.config.loader import load
    from tasks.release import factory as release
    monkeypatch.setenv("CLASSTOOLS_HELM", helm_bin)
    monkeypatch.setenv("CLASSTOOLS_SECRETS_FILE", str(project.secrets_file))
    helm.binary.cache_clear()
    config = load(project.config)
    public, secret = release.hub_release_values(config)
    where = config.classroom["release"]
    text = helm.template(where["name"], str(chart), where["namespace"], [public, secret])
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ---- reading the rendered manifests ---------------------------------------------------------

def _as_list(items) -> list[dict]:
    """z2jh and KubeSpawner take lists or dicts (sorted by key) of volumes, mounts, containers."""
    if isinstance(items, dict):
        return [{"name": key, **value} for key, value in sorted(items.items())]
    return list(items or [])


def _hub_values(docs) -> dict:
    """The values KubeSpawner is configured from: z2jh's hub Secret carries them."""
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def _pods(docs, hub_values):
    """(what, kind, pod spec) of every pod the release makes, the students' servers included."""
    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        what = f"{kind} {doc['metadata']['name']}"
        if kind == "Pod":
            yield what, kind, spec
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield what, kind, spec["template"]["spec"]
        elif kind == "CronJob":
            yield what, kind, spec["jobTemplate"]["spec"]["template"]["spec"]
    singleuser = hub_values["singleuser"]
    yield "a student's server (KubeSpawner)", "Singleuser", {
        "initContainers": _as_list(singleuser.get("initContainers")),
        "volumes": _as_list(singleuser["storage"].get("extraVolumes")),
        "securityContext": {"fsGroup": singleuser.get("fsGid")},
    }


def _runs_to_completion(kind, spec) -> list[dict]:
    done = _as_list(spec.get("initContainers"))
    if kind in ("Job", "CronJob") or (kind == "Pod" and spec.get("restartPolicy") in ("Never", "OnFailure")):
        done += _as_list(spec.get("containers"))
    return done


class Disks:
    """Docker volumes standing for the exchange's storage: claim name -> (volume, directory in it)."""

    def __init__(self, docker_client, docs, exchange_claim):
        self.docker = docker_client
        self.volumes: list = []
        self.claims: dict[str, tuple[str, str]] = {}
        pv = next((d for d in docs if d["kind"] == "PersistentVolume"
                   and d["spec"].get("claimRef", {}).get("name") == exchange_claim), None)
        if pv is None:  # a provisioned volume: the claim is the disk
            self.claims[exchange_claim] = (self._volume(), "")
            return
        assert "nfs" in pv["spec"], f"cannot model the exchange's PersistentVolume: {pv['spec']}"
        server_claim, export_dir = self._nfs_export(docs, pv["spec"]["nfs"])
        disk = self._volume()
        self.claims[server_claim] = (disk, "")
        inside = posixpath.join(export_dir, pv["spec"]["nfs"]["path"].lstrip("/")).rstrip("/")
        self.claims[exchange_claim] = (disk, inside)

    def _volume(self) -> str:
        name = f"classtools-exchange-{uuid.uuid4().hex[:10]}"
        self.docker.volumes.create(name)
        self.volumes.append(name)
        # As a provisioner hands it out: an empty directory owned by root, mode 0755.
        self.docker.containers.run(FALLBACK_IMAGE, ["sh", "-c", "chown 0:0 /v && chmod 0755 /v"],
                                   remove=True, network_mode="none", mounts=[_mount(name, "/v")])
        return name

    @staticmethod
    def _nfs_export(docs, nfs) -> tuple[str, str]:
        """(the NFS server's own claim, the exported directory relative to it)."""
        server = nfs["server"]  # the Service's DNS name (<name>.<namespace>.svc...) or its fixed ClusterIP

        def serves(doc):
            name = doc["metadata"]["name"]
            return doc["kind"] == "Service" and (server in (name, doc["spec"].get("clusterIP"))
                                                 or server.startswith(f"{name}."))
        service = next(d for d in docs if serves(d))
        selector = service["spec"]["selector"]
        server = next(d for d in docs if d["kind"] == "Deployment" and
                      selector.items() <= d["spec"]["template"]["metadata"]["labels"].items())
        pod = server["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"]
                         if any(p["containerPort"] == 2049 for p in c.get("ports", [])))
        export = container["args"][0]
        for mount in container["volumeMounts"]:
            relative = posixpath.relpath(export, mount["mountPath"])
            if not relative.startswith(".."):
                volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
                return volume["persistentVolumeClaim"]["claimName"], relative
        raise AssertionError(f"the NFS server exports {export}, which is on none of its volumes")

    def host_path(self, claim, sub_path="") -> Path:
        """Where that part of the disk is on this machine (the engine is local)."""
        volume, inside = self.claims[claim]
        root = Path(self.docker.volumes.get(volume).attrs["Mountpoint"])
        assert root.is_dir(), f"the Docker Engine's volume {volume} is not on this machine ({root})"
        return root / inside / sub_path if sub_path else root / inside

    def mounts(self, volumes, container) -> list:
        """Docker mounts of the container's volumes that are on these disks (others: not modelled)."""
        import docker.types
        by_name = {v["name"]: v for v in volumes}
        mounts = []
        for mount in container.get("volumeMounts", []):
            volume = by_name[mount["name"]]
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim in self.claims:
                disk, inside = self.claims[claim]
                read_only = bool(mount.get("readOnly") or volume["persistentVolumeClaim"].get("readOnly"))
                sub_path = posixpath.join(inside, mount.get("subPath", "")).strip("/")
                if not sub_path:
                    mounts.append(_mount(disk, mount["mountPath"], read_only))
                    continue
                source = self.host_path(claim, mount.get("subPath", ""))
                if mount.get("subPath") and not source.exists():
                    # the kubelet creates a missing subPath as root, with the volume root's mode
                    source.mkdir(parents=True, mode=stat.S_IMODE(self.host_path(claim).stat().st_mode))
                assert source.is_dir(), f"{mount['mountPath']}: {source} does not exist on the disk (an NFS " \
                                        "export that no one created cannot be mounted)"
                mounts.append(docker.types.Mount(mount["mountPath"], str(source), type="bind",
                                                 read_only=read_only))
            elif "emptyDir" in volume:
                mounts.append(docker.types.Mount(mount["mountPath"], None, type="tmpfs"))
            else:
                raise AssertionError(f"volume {volume} of {container['name']} is not modelled here")
        return mounts

    def on_these_disks(self, volumes, container) -> set[str]:
        by_name = {v["name"]: v for v in volumes}
        # KubeSpawner adds the home volume itself (a per-user claim): never the exchange
        return {by_name.get(m["name"], {}).get("persistentVolumeClaim", {}).get("claimName")
                for m in container.get("volumeMounts", [])} & set(self.claims)

    def remove(self):
        for name in self.volumes:
            self.docker.volumes.get(name).remove(force=True)


def _mount(volume, target, read_only=False):
    import docker.types

    # no_copy: the image's files at the mount point must not seed the empty disk
    return docker.types.Mount(target, volume, type="volume", read_only=read_only, no_copy=True)


# ---- running a rendered container the way the kubelet would -------------------------------

def _image(docker_client, ref) -> str:
    import docker.errors
    try:
        docker_client.images.get(ref)
        return ref
    except docker.errors.ImageNotFound:
        return FALLBACK_IMAGE  # nothing can be pulled from the internet here


def _security(pod, container) -> dict:
    pod_context = pod.get("securityContext") or {}
    merged = {k: pod_context[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot") if k in pod_context}
    merged.update(container.get("securityContext") or {})
    return merged


def _run(docker_client, image, pod, container, mounts) -> tuple[int, str]:
    context = _security(pod, container)
    uid, gid = context.get("runAsUser"), context.get("runAsGroup")
    assert not (context.get("runAsNonRoot") and uid == 0), f"{container['name']}: runAsNonRoot with uid 0"
    assert uid is not None or gid is None, f"{container['name']}: runAsGroup without runAsUser is not modelled"
    pod_context = pod.get("securityContext") or {}
    groups = [g for g in [pod_context.get("fsGroup"), *pod_context.get("supplementalGroups", [])] if g is not None]
    capabilities = context.get("capabilities") or {}
    run = docker_client.containers.run(
        image, container.get("args"), entrypoint=container.get("command"),
        user=None if uid is None else (f"{uid}:{gid}" if gid is not None else str(uid)),
        group_add=[str(g) for g in groups] or None,
        cap_drop=capabilities.get("drop"), cap_add=capabilities.get("add"),
        privileged=bool(context.get("privileged")),
        security_opt=["no-new-privileges"] if context.get("allowPrivilegeEscalation") is False else None,
        read_only=bool(context.get("readOnlyRootFilesystem")),
        environment={e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
        working_dir=container.get("workingDir"), mounts=mounts, network_mode="none", detach=True)
    try:
        status = run.wait()["StatusCode"]
        return status, run.logs().decode(errors="replace")
    finally:
        run.remove(force=True)


# ---- the test ---------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", sorted(STORAGE))
def test_a_student_can_write_into_the_prepared_exchange_root(storage, project, registry, jupyterhub_chart,
                                                             helm_bin, docker_client, monkeypatch):
    from tasks import contract
    from tasks.config.loader import load
    docs = _render(project, _packaged_chart(project, registry, jupyterhub_chart, storage), helm_bin,
                   monkeypatch)
    hub = _hub_values(docs)
    singleuser = hub["singleuser"]
    student_volumes = _as_list(singleuser["storage"].get("extraVolumes"))
    claim_of = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in student_volumes}
    student_mount = next(m for m in _as_list(singleuser["storage"].get("extraVolumeMounts"))
                         if claim_of.get(m["name"]) == contract.EXCHANGE_CLAIM)
    assert student_mount["mountPath"] == contract.EXCHANGE_ROOT

    disks = Disks(docker_client, docs, contract.EXCHANGE_CLAIM)
    try:
        # The exchange's preparation, in the order the cluster gets there: the NFS server's side
        # (its pod must run before anyone can mount the export), then Jobs, then other pods.
        steps = []
        for what, kind, pod in _pods(docs, hub):
            for container in _runs_to_completion(kind, pod):
                claims = disks.on_these_disks(pod.get("volumes", []), container)
                if claims:
                    order = 0 if contract.EXCHANGE_CLAIM not in claims else 1 if kind == "Job" else 2
                    steps.append((order, what, pod, container))
        steps.sort(key=lambda step: step[0])
        prepared_by = [f"{what}: container {container['name']}" for _, what, _, container in steps]
        # every install and every upgrade runs the preparation again: it must keep what it made
        for (_, what, pod, container), revision in [(step, r) for r in ("install", "upgrade") for step in steps]:
            name = f"{what}: container {container['name']} ({revision})"
            context = _security(pod, container)
            capabilities = context.get("capabilities") or {}
            assert not context.get("privileged"), f"{name} is privileged"
            assert context.get("allowPrivilegeEscalation") is False, f"{name} may escalate privileges"
            assert "ALL" in capabilities.get("drop", []), f"{name} keeps the runtime's default capabilities"
            assert set(capabilities.get("add", [])) <= PREPARATION_CAPABILITIES, \
                f"{name} adds {capabilities['add']}"
            status, logs = _run(docker_client, _image(docker_client, container["image"]), pod, container,
                                disks.mounts(pod.get("volumes", []), container))
            assert status == 0, f"{name} failed (exit {status}):\n{logs}"

        # A student's server: KubeSpawner runs it as singleuser.uid with fsGroup singleuser.fsGid,
        # the notebook image's user (uid 1000, primary group 100 like the Jupyter docker stacks).
        uid, gid = singleuser["uid"], singleuser["fsGid"]
        course = load(project.config).courses[0]["name"]
        root = student_mount["mountPath"]
        image = _image(docker_client, f"{singleuser['image']['name']}:{singleuser['image']['tag']}")
        student = {"name": "notebook", "command": ["sh", "-c"],
                   "args": [f'set -e; mkdir -p "{root}/{course}/inbound"; '
                            f'echo submission > "{root}/{course}/inbound/ann+ps1+2026-11-27.txt"'],
                   "securityContext": {"runAsUser": uid, "runAsGroup": gid,
                                       "allowPrivilegeEscalation": singleuser["allowPrivilegeEscalation"]},
                   "volumeMounts": [student_mount]}
        status, logs = _run(docker_client, image, {"securityContext": {"fsGroup": gid}}, student,
                            disks.mounts(student_volumes, student))
        assert status == 0, (f"uid {uid} (group {gid}) cannot write into the exchange root {root} after "
                             f"the chart's preparation ({'; '.join(prepared_by) or 'none rendered'}):\n{logs}")

        prepared = disks.host_path(contract.EXCHANGE_CLAIM, student_mount.get("subPath", "")).stat()
        mode = oct(stat.S_IMODE(prepared.st_mode))
        assert (prepared.st_uid, prepared.st_gid) == (uid, gid)
        assert prepared.st_mode & stat.S_ISGID, \
            f"the exchange root has no setgid bit (mode {mode}): course directories would not keep group {gid}"
        assert not prepared.st_mode & stat.S_IWOTH, f"the exchange root is world-writable (mode {mode})"
    finally:
        disks.remove()
