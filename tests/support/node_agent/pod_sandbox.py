"""What a pod's containers are made of, as the kubelet assembles it: the node they run on, the pod's volumes (its
emptyDirs in the holder's mount namespace, the files of its ConfigMap, Secret, projected and downward API
volumes, its claims' folders) and each container's spec (image, user, env, mounts). pod_worker.py runs them."""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client
from kubernetes.utils.quantity import parse_quantity

from tests.support.node_agent import container as containers
from tests.support.node_agent.images import Image, home_of, resolve
from tests.support.node_agent.network import AddressPool
from tests.support.node_agent.podspec import PodConfigError, Sources, container_env, volume_files, write_files
from tests.support.node_agent.probes import Prober
from tests.support.node_agent.service_map import ServiceMap

BACKOFF_START_S = 10  # the kubelet's crash-loop back-off, first step
EMPTY_DIR_DEFAULT = "4Gi"  # an emptyDir without sizeLimit (a tmpfs only takes what is written)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Node:
    """What every pod worker shares: the API, the node's identity and its network."""

    core: client.CoreV1Api
    name: str
    host_ip: str
    bridge: str
    pool: AddressPool
    allocatable: dict[str, str]
    state: Path
    hosts: ServiceMap

    @property
    def sources(self) -> Sources:
        return Sources(self.core)


@dataclass
class ContainerState:
    spec: dict
    image: Image | None = None
    running: containers.Running | None = None
    restarts: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    probes: dict[str, Prober] = field(default_factory=dict)
    backoff_until: float = 0.0
    backoff: float = BACKOFF_START_S
    done: bool = False  # terminated and not to be restarted


def memory_limit(container: dict, image: Image) -> int | None:
    """The bytes its cgroup holds the container to (memory.py): its ``limits.memory``, unless the image is a
    stand-in whose memory is not the real image's (images.py)."""
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return int(parse_quantity(limit)) if limit and image.limits_apply else None


def log_path(state: Path, namespace: str, pod: str, container: str) -> Path:
    """Where a container's output goes (kubelet_api.py serves it to `kubectl logs`)."""
    return state / "logs" / f"{namespace}_{pod}_{container}.log"


@dataclass
class PodSandbox:
    """A pod's volumes (resolved once each) and its containers' specs."""

    node: Node
    pod: dict
    folder: Path
    mounts: dict[str, Path] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def holder_script(self) -> str:
        """The holder's mount namespace: the pod's emptyDirs (tmpfs, fsGroup's, world-writable as the kubelet's)."""
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        lines = ["set -eu", "mount -n --make-rprivate /"]
        for volume in self.pod["spec"].get("volumes") or []:
            if "emptyDir" in volume:
                empty_dir = volume["emptyDir"] or {}
                size = int(parse_quantity(empty_dir.get("sizeLimit") or EMPTY_DIR_DEFAULT))
                stage = self.folder / "volumes" / volume["name"]
                stage.mkdir(parents=True, exist_ok=True)
                gid = f",gid={fs_group}" if fs_group is not None else ""
                lines.append(f"mount -n -t tmpfs -o size={size},mode=2777{gid} tmpfs {containers.q(stage)}")
                self.mounts[volume["name"]] = stage
        return "\n".join([*lines, "echo holder-ready", "exec sleep infinity"])

    def source(self, name: str) -> Path:
        if name in self.mounts:
            return self.mounts[name]
        volume = next((v for v in self.pod["spec"].get("volumes") or [] if v["name"] == name), None)
        if volume is None:
            raise PodConfigError(f"volumeMount {name!r} names no volume of the pod")
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        files = volume_files(self.pod, volume, self.node.sources, self.node.allocatable)
        if files is not None:
            folder = write_files(self.folder / "files" / name, files, fs_group)
        elif "persistentVolumeClaim" in volume:
            folder = self.claim_folder(volume["persistentVolumeClaim"]["claimName"], fs_group)
        else:
            raise PodConfigError(f"volume {name!r} ({', '.join(sorted(set(volume) - {'name'}))}) is not supported "
                                 "by this node (tests/support/node_agent)")
        self.mounts[name] = folder
        return folder

    def claim_folder(self, claim: str, fs_group: int | None) -> Path:
        """A PVC's volume: the hostPath of the PersistentVolume bound to it (provisioner.py makes them)."""
        pvc = self.node.core.read_namespaced_persistent_volume_claim(claim, self.pod["metadata"]["namespace"])
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise PodConfigError(f"persistentvolumeclaim {claim!r} is not bound")
        pv = self.node.core.read_persistent_volume(pvc.spec.volume_name)
        if pv.spec.host_path is None:
            raise PodConfigError(f"persistentvolume {pv.metadata.name!r} is not a hostPath volume")
        folder = Path(pv.spec.host_path.path)
        folder.mkdir(parents=True, exist_ok=True)
        if fs_group is not None:
            shutil.chown(folder, group=int(fs_group))
            folder.chmod(0o2775)
        return folder

    def container_spec(self, cs: ContainerState) -> containers.ContainerSpec:
        c, pod_spec = cs.spec, self.pod["spec"]
        cs.image = resolve(c["image"])
        pod_sc, sc = pod_spec.get("securityContext") or {}, c.get("securityContext") or {}
        uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", cs.image.uid)))
        gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", cs.image.gid)))
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
            raise PodConfigError("container has runAsNonRoot and image will run as root")
        groups = ([int(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []) + \
            [int(g) for g in pod_sc.get("supplementalGroups") or []]
        state = self.folder / "containers" / c["name"]
        layer = state / "image"
        shutil.rmtree(layer, ignore_errors=True)
        layer.mkdir(parents=True)
        cs.image.files(layer)
        env = {**cs.image.env, **container_env(self.pod, c, self.node.sources, self.node.allocatable)}
        env.setdefault("HOSTNAME", (self.pod["spec"].get("hostname") or self.pod["metadata"]["name"])[:63])
        env.setdefault("HOME", home_of(uid, layer))
        mounts = []
        for m in c.get("volumeMounts") or []:
            source = self.source(m["name"])
            if m.get("subPath"):
                source = source / m["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(containers.Mount(source, m["mountPath"], bool(m.get("readOnly"))))
        return containers.ContainerSpec(
            self.key, c["name"], cs.image.argv(c.get("command"), c.get("args")), env,
            c.get("workingDir") or cs.image.workdir, uid, gid, groups, bool(sc.get("readOnlyRootFilesystem")),
            mounts, layer, self.folder / "hosts", state, memory_limit(c, cs.image), f"{self.folder.name}/{c['name']}")

    def log_path(self, container: str) -> Path:
        meta = self.pod["metadata"]
        return log_path(self.node.state, meta["namespace"], meta["name"], container)
