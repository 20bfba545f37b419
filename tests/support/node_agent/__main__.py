"""The node agent: ``python -m tests.support.node_agent --kubeconfig ... --node NAME ...`` (scripts/cluster-up.sh)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from kubernetes import client, config

from tests.support.node_agent import kubelet_api
from tests.support.node_agent.node import Agent
from tests.support.node_agent.provisioner import Provisioner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="node-agent", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--node", required=True)
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--gateway", required=True, help="the bridge's address: the node's InternalIP")
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--cpu", default=str(os.cpu_count()), help="allocatable CPUs the node advertises")
    parser.add_argument("--memory", default=None, help="allocatable memory (default: this host's)")
    parser.add_argument("--kube-version", default="v1.35.4")
    parser.add_argument("--serving-cert", type=Path)
    parser.add_argument("--serving-key", type=Path)
    parser.add_argument("--client-ca", type=Path)
    parser.add_argument("--provisioner-kubeconfig", type=Path,
                        help="run the host-folder volume provisioner (provisioner.py) with these credentials")
    return parser.parse_args()


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=configuration, persist_config=False)
    return client.ApiClient(configuration)


def host_memory() -> str:
    with open("/proc/meminfo") as meminfo:
        kib = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    return f"{kib}Ki"


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("kubernetes", "urllib3"):  # the API server's restarts are the agent's to report, once
        logging.getLogger(noisy).setLevel(logging.ERROR)
    drain = args.state / "drain"  # scripts/cluster-down.sh writes it when the whole cluster goes
    drain.unlink(missing_ok=True)
    api = api_client(args.kubeconfig)
    agent = Agent(api, args.node, args.gateway, args.bridge, args.pod_cidr, args.state.resolve(), args.cpu,
                  args.memory or host_memory(), args.kube_version)
    if args.serving_cert:
        kubelet_api.serve(args.gateway, 10250, args.serving_cert, args.serving_key, args.client_ca, agent.log_file)
    if args.provisioner_kubeconfig:
        Provisioner(api_client(args.provisioner_kubeconfig), args.state.resolve() / "persistent-volumes").start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    agent.run()
    done.wait()
    draining = drain.exists()
    logging.info("stopping: %s", "every pod's containers and sandbox" if draining else "the pods run on")
    agent.shutdown(draining)


if __name__ == "__main__":
    main()
