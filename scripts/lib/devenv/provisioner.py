"""A small dynamic volume provisioner for the dev control plane.

kwok's nodes run no kubelet and no CSI driver, so nothing would ever bind a
PersistentVolumeClaim (the hub's database, users' homes, the nbgrader exchange).
This daemon plays the external provisioner of the default StorageClass
(STORAGE_CLASS, provisioner PROVISIONER): for every pending claim of that class
it creates a hostPath PersistentVolume pre-bound to the claim (the directory
under --volumes), and when a claim is deleted it deletes the released volume
and its directory (reclaim policy Delete), as a cloud provisioner would.

    python3 -m devenv.provisioner --server URL --pki DIR --volumes DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .kubeapi import ApiError, KubeApi

STORAGE_CLASS = "classtools-hostpath"
PROVISIONER = "classtools.dev/hostpath"
POLL_SECONDS = 1.0


def storage_class() -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # Immediate: kwok's scheduler path never picks a node for a volume.
        "volumeBindingMode": "Immediate",
    }


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", flush=True)


def _ours(pvc: dict) -> bool:
    ann = pvc["metadata"].get("annotations") or {}
    provisioner = ann.get("volume.kubernetes.io/storage-provisioner") or \
        ann.get("volume.beta.kubernetes.io/storage-provisioner")
    return provisioner == PROVISIONER or pvc["spec"].get("storageClassName") == STORAGE_CLASS


def volume_for(pvc: dict, volumes: Path) -> dict:
    meta, spec = pvc["metadata"], pvc["spec"]
    name = f"pvc-{meta['uid']}"
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                     "labels": {"classtools.dev/provisioned": "true"}},
        "spec": {
            "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"]},
            "hostPath": {"path": str(volumes / name), "type": "DirectoryOrCreate"},
        },
    }


def reconcile(api: KubeApi, volumes: Path) -> None:
    pvs = {pv["metadata"]["name"]: pv for pv in api.get("/api/v1/persistentvolumes")["items"]}
    for pvc in api.get("/api/v1/persistentvolumeclaims")["items"]:
        if pvc.get("status", {}).get("phase") != "Pending" or pvc["spec"].get("volumeName") or not _ours(pvc):
            continue
        if pvc["metadata"].get("deletionTimestamp"):
            continue
        pv = volume_for(pvc, volumes)
        if pv["metadata"]["name"] in pvs:
            continue
        path = Path(pv["spec"]["hostPath"]["path"])
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # pods of any uid (the hub, uid 1000 users, the db's 999) write here
        api.create("/api/v1/persistentvolumes", pv)
        _log(f"provisioned {pv['metadata']['name']} for {pvc['metadata']['namespace']}/{pvc['metadata']['name']}")
    for name, pv in pvs.items():
        ann = pv["metadata"].get("annotations") or {}
        if ann.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
            continue
        if pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
            continue
        api.delete(f"/api/v1/persistentvolumes/{name}")
        path = Path(pv["spec"].get("hostPath", {}).get("path", ""))
        # Only ever a directory this provisioner made.
        if path.parent == volumes and path.name == name:
            shutil.rmtree(path, ignore_errors=True)
        _log(f"deleted released {name}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="devenv.provisioner")
    parser.add_argument("--server", required=True)
    parser.add_argument("--pki", required=True, type=Path)
    parser.add_argument("--volumes", required=True, type=Path)
    args = parser.parse_args(argv)
    volumes = args.volumes.absolute()
    volumes.mkdir(parents=True, exist_ok=True)
    api = KubeApi(args.server, args.pki / "ca.crt", args.pki / "provisioner.crt", args.pki / "provisioner.key")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    _log(f"provisioning {STORAGE_CLASS} claims under {volumes} against {args.server}")
    last_error = ""
    while not stopping:
        try:
            api.create("/apis/storage.k8s.io/v1/storageclasses", storage_class())
            reconcile(api, volumes)
            last_error = ""
        except (ApiError, OSError, KeyError) as exc:
            # The API server restarting is normal in a dev environment: retry, and
            # log each distinct problem once rather than every second.
            if str(exc) != last_error:
                _log(f"retrying after: {exc}")
                last_error = str(exc)
        time.sleep(POLL_SECONDS)
    _log("stopped")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
