"""The node agent's own rules, without a cluster: what the kubelet does with env, commands, DNS and images.
(The agent running real pods is what the other tests of this folder prove.)"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from loopback.polling import wait_until
from tests.support.node_agent import container as containers
from tests.support.node_agent import dns, images, memory, pids, pod_state
from tests.support.node_agent.network import AddressPool
from tests.support.node_agent.pod_sandbox import Node, now
from tests.support.node_agent.pod_worker import PodWorker
from tests.support.node_agent.podspec import container_env, expand, field_value
from tests.support.node_agent.service_map import ServiceMap

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
       "spec": {"nodeName": "n", "serviceAccountName": "sa", "containers": [
           {"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "2Gi"}}}]},
       "status": {"podIP": "10.244.0.9", "hostIP": "10.244.0.1"}}


class NoSources:
    def configmap(self, namespace, name, optional):
        return {"greeting": b"hello"} if name == "cm" else None

    def secret(self, namespace, name, optional):
        return None


def test_env_expands_earlier_variables_and_keeps_unknown_and_escaped_references():
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


def test_env_resolves_the_downward_api_resources_and_configmap_keys_in_order():
    container = {"name": "c", "env": [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "greeting"}}},
        {"name": "URL", "value": "http://$(POD_IP):80"}]}
    env = container_env(POD, container, NoSources(), {"cpu": "4"})
    assert env == {"POD_IP": "10.244.0.9", "APP": "web", "CPUS": "2", "MEM_MI": "2048", "GREETING": "hello",
                   "URL": "http://10.244.0.9:80"}


def test_an_unsupported_field_path_is_a_config_error():
    with pytest.raises(Exception, match="not supported"):
        field_value(POD, "spec.nothing")


def test_command_replaces_the_entrypoint_and_args_the_cmd():
    image = images.Image("x", "", ["ep"], ["cmd"], {}, 0, 0, "/", lambda root: None)
    assert image.argv(None, None) == ["ep", "cmd"]
    assert image.argv(None, ["a"]) == ["ep", "a"]
    assert image.argv(["c"], None) == ["c"]
    assert image.argv(["c"], ["a"]) == ["c", "a"]


def test_only_the_mapped_images_run_and_any_other_is_an_image_pull_error():
    assert images.resolve("ghcr.io/acme/kuberay-mnist:0.1.0-cpu").uid == images.image_spec().uid
    assert "moto" in images.resolve("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z").stands_for
    with pytest.raises(images.ImageNotRunnable, match="cannot be pulled here"):
        images.resolve("docker.io/library/busybox:1.36")


def query(name: str, qtype: int = dns.A) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_answers_a_records_empty_for_other_types_and_nxdomain_for_unknown_names():
    records = {"svc.ns.svc.cluster.local": ["10.96.0.10", "10.96.0.11"]}
    reply = dns.answer(query("svc.ns.svc.cluster.local"), records.get)
    ident, flags, _, count, _, _ = struct.unpack("!HHHHHH", reply[:12])
    assert (ident, flags & 0xF, count) == (7, dns.NOERROR, 2)
    assert socket.inet_aton("10.96.0.11") in reply
    aaaa = dns.answer(query("svc.ns.svc.cluster.local", 28), records.get)
    assert struct.unpack("!HHHHHH", aaaa[:12])[3] == 0 and struct.unpack("!HHHHHH", aaaa[:12])[1] & 0xF == 0
    unknown = dns.answer(query("svc.ns.svc.cluster.local.ns.svc.cluster.local"), records.get)
    assert struct.unpack("!HHHHHH", unknown[:12])[1] & 0xF == dns.NXDOMAIN


def test_resolv_conf_is_the_kubelets_cluster_first():
    assert dns.resolv_conf("mnist", "10.244.0.1") == (
        "nameserver 10.244.0.1\nsearch mnist.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")


# ------------------------------------------------------------ containers that outlive the agent (pod_state.py)

RUNNING_POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-2"},
               "spec": {"containers": [{"name": "c", "image": "kuberay-mnist:dev-cpu"}]}}


def a_node(state: Path) -> Node:
    hosts = ServiceMap(None, "mnistbr0", "10.244.0.1")
    return Node(None, "n", "10.244.0.1", "mnistbr0", AddressPool("10.244.0.0/24", "10.244.0.1", state), {}, state,
                hosts)


def launch(folder: Path, script: str, log: Path) -> containers.Running:
    """A process under its shim, with a container's files, as container.start leaves them."""
    spec = containers.ContainerSpec("ns/p", folder.name, [], {"GREETING": "hi"}, "/", os.getuid(), os.getgid(), [],
                                    False, [], folder, folder, folder)
    spec.prepare()
    return containers.launch(folder, ["sh", "-c", script], log, now(), containers.Identity.of(folder))


def pod_left_running(node: Node, script: str) -> tuple[PodWorker, subprocess.Popen]:
    """What an agent leaves when it stops: a pod's holder and its container running, its status on disk."""
    worker = PodWorker(node, RUNNING_POD)
    holder = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (worker.folder / "containers" / "c").mkdir(parents=True)
    pids.record(worker.folder / "holder.pid", holder.pid)
    cs = worker.main[0]
    cs.running = launch(worker.folder / "containers" / "c", script, node.state / "c.log")
    cs.state, worker.phase, worker.reporting = {"running": {"startedAt": cs.running.started_at}}, "Running", False
    worker.report()  # writes status.json; reports nothing (no API here)
    return worker, holder


def test_a_container_outlives_its_agent_and_the_next_one_reads_its_exit_code_from_the_shim(tmp_path):
    first = launch(tmp_path / "c", "echo before; sleep 1; echo after; exit 3", tmp_path / "c.log")
    adopted = containers.adopt(tmp_path / "c", first.started_at)
    del first  # the agent that started it is gone; its shim is not
    assert adopted.poll() is None and adopted.identity.env == {"GREETING": "hi"}
    assert adopted.wait(10) == 3 and adopted.finished_at
    assert (tmp_path / "c.log").read_text() == "before\nafter\n"  # the shim kept the log open


def test_a_restarted_agent_adopts_a_running_pod_and_restarts_nothing(tmp_path):
    node = a_node(tmp_path)
    first, holder = pod_left_running(node, "sleep 1; exit 3")
    ip, pid = node.pool.take(first.uid), first.main[0].running.pid
    worker = pod_state.adopt(a_node(tmp_path), RUNNING_POD)  # a new agent, with nothing but the node's folder
    try:
        cs = worker.main[0]
        assert (worker.network.ip, worker.network.pid, cs.running.pid, cs.restarts) == (ip, holder.pid, pid, 0)
        assert cs.running.wait(10) == 3
        assert worker.record_exit(cs) == 3 and cs.state["terminated"]["startedAt"] == first.main[0].state[
            "running"]["startedAt"]
    finally:
        worker.teardown()  # the holder, stopped by its PID (the adopting agent is not its parent)
    assert holder.wait(10) is not None


def test_the_containers_of_a_pod_deleted_while_no_agent_ran_are_killed(tmp_path):
    node = a_node(tmp_path)
    first, holder = pod_left_running(node, "sleep 60")
    assert pod_state.forget_unlisted(node, set()) == [first.uid]
    assert holder.wait(10) is not None and first.main[0].running.wait(10) == 128 + signal.SIGKILL
    assert not first.folder.exists() and first.uid not in node.pool.taken


# ------------------------------------------------------------ memory limits (memory.py)

def memory_controller_or_skip() -> None:
    """Skipped only where this machine has no memory controller at all; one that is there must be usable."""
    own, version = memory.own_cgroup()
    if not own.is_dir() or (version == "v2" and "memory" not in (own / "cgroup.controllers").read_text().split()):
        pytest.skip(f"no memory cgroup controller on this machine ({version}: {own}): limits cannot be enforced")
    assert memory.node_cgroup() is not None, f"the memory controller at {own} is not writable for the agent"


@pytest.fixture
def holder():
    """A pod's holder: here this host's namespaces, which the containers enter as they enter a pod's."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process.pid
    process.kill()
    process.wait()


def limited(tmp_path: Path, holder: int, limit_mib: int, code: str) -> containers.Running:
    """``python -c code`` in a container started as pod_worker.py starts one (its script: mounts, root, user,
    cgroup), held to ``limit_mib``."""
    folder = tmp_path / "containers" / "c"
    (folder / "image").mkdir(parents=True)
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "resolv.conf").write_text("")
    spec = containers.ContainerSpec("ns/p", "c", [sys.executable, "-c", code], {}, "/", os.getuid(), os.getgid(),
                                    [], False, [], folder / "image", tmp_path / "hosts", folder, limit_mib << 20,
                                    f"u-{tmp_path.name}/c")
    return containers.start(spec, holder, tmp_path / "c.log", now())


def test_a_container_over_its_memory_limit_is_oom_killed_and_its_cgroup_removed(tmp_path, holder):
    memory_controller_or_skip()
    running = limited(tmp_path, holder, 64, "import time; time.sleep(1); b = b'x' * (300 << 20); print('survived')")
    cgroup = running.cgroup
    wait_until(lambda: running.pid in cgroup.processes(), 10, "never joined its cgroup", interval=0.05)
    assert os.getpid() not in cgroup.processes()
    assert running.shim.pid not in cgroup.processes(), "the shim stays out of the container's cgroup"
    assert containers.adopt(running.folder, running.started_at).cgroup == cgroup, "found again from its folder"
    assert running.wait(30) == 137 and running.reason == "OOMKilled", (tmp_path / "c.log").read_text()
    assert not cgroup.path.exists() and not cgroup.path.parent.exists(), "the container's and its pod's cgroup go"
    assert "survived" not in (tmp_path / "c.log").read_text()


def test_a_container_under_its_memory_limit_is_unaffected(tmp_path, holder):
    memory_controller_or_skip()
    running = limited(tmp_path, holder, 128, "b = b'x' * (40 << 20); print('done', len(b))")
    assert running.wait(30) == 0 and running.reason == "Completed" and not running.oom_killed
    assert (tmp_path / "c.log").read_text() == f"done {40 << 20}\n" and not running.cgroup.path.exists()


def test_the_cgroup_of_a_container_no_agent_will_run_again_goes_with_it(tmp_path, holder):
    memory_controller_or_skip()
    running = limited(tmp_path, holder, 64, "import time; time.sleep(60)")
    wait_until(lambda: running.pid in running.cgroup.processes(), 10, "never joined its cgroup", interval=0.05)
    pod_state.kill_leftovers(tmp_path)  # as for a pod deleted while no agent ran
    assert not running.cgroup.path.exists() and running.wait(10) in (128 + signal.SIGTERM, 128 + signal.SIGKILL)
    assert running.reason == "Error"
