"""A host-folder volume provisioner, as kind ships one (its default StorageClass ``standard``).

The PV controller (kube-controller-manager) marks a claim of a StorageClass with this provisioner's name; the
provisioner answers with a hostPath PersistentVolume under the node's state folder, which the PV controller
binds. With the class's reclaimPolicy Delete, a released volume's folder and object go; what a chart keeps
(``helm.sh/resource-policy: keep`` on its PVC) keeps its claim, so its volume and data stay.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from kubernetes import client

log = logging.getLogger("node-agent")
PROVISIONER = "kuberay-mnist.local/host-folder"
CLASS = "standard"


def ensure_class(storage: client.StorageV1Api) -> None:
    body = client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=CLASS, annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
        provisioner=PROVISIONER, reclaim_policy="Delete", volume_binding_mode="Immediate")
    try:
        storage.create_storage_class(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise


class Provisioner(threading.Thread):
    def __init__(self, api: client.ApiClient, root: Path, interval: float = 1.0):
        super().__init__(daemon=True, name="provisioner")
        self.core, self.storage = client.CoreV1Api(api), client.StorageV1Api(api)
        self.root, self.interval = root, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        ensure_class(self.storage)
        while not self.stopped.wait(self.interval):
            try:
                self.provision()
                self.reclaim()
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting; next round
                log.debug("provisioner: %s", exc)

    def ours(self, class_name: str | None) -> bool:
        if not class_name:
            return False
        try:
            return self.storage.read_storage_class(class_name).provisioner == PROVISIONER
        except client.ApiException:
            return False

    def provision(self) -> None:
        for pvc in self.core.list_persistent_volume_claim_for_all_namespaces().items:
            if pvc.status.phase != "Pending" or pvc.spec.volume_name or not self.ours(pvc.spec.storage_class_name):
                continue
            name = f"pvc-{pvc.metadata.uid}"
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            pv = client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=name, annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER}),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": pvc.spec.resources.requests["storage"]}, access_modes=pvc.spec.access_modes,
                    storage_class_name=pvc.spec.storage_class_name, persistent_volume_reclaim_policy="Delete",
                    host_path=client.V1HostPathVolumeSource(path=str(folder), type="DirectoryOrCreate"),
                    claim_ref=client.V1ObjectReference(kind="PersistentVolumeClaim", namespace=pvc.metadata.namespace,
                                                       name=pvc.metadata.name, uid=pvc.metadata.uid)))
            try:
                self.core.create_persistent_volume(pv)
                log.info("provisioned %s for %s/%s at %s", name, pvc.metadata.namespace, pvc.metadata.name, folder)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

    def reclaim(self) -> None:
        for pv in self.core.list_persistent_volume().items:
            annotations = pv.metadata.annotations or {}
            if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER or pv.status.phase != "Released":
                continue
            if pv.spec.persistent_volume_reclaim_policy == "Delete":
                shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)
                self.core.delete_persistent_volume(pv.metadata.name)
                log.info("deleted %s (its claim is gone)", pv.metadata.name)
