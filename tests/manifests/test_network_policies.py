"""The RayJob chart's NetworkPolicies: exactly who may reach which port of the Ray pods.

The pods are built from the rendered pod templates plus the labels KubeRay v1.7.0 adds (pod.go labelPod for head
and workers, rayjob_controller.go for the submitter), and asked against Kubernetes' ingress semantics
(tests/support/network_policy.py).
"""

from __future__ import annotations

import sys

import pytest
from manifest_helpers import (
    NAMESPACE,
    PLATFORM,
    RAYJOB,
    RAYJOB_RELEASE,
    ROOT,
    by_kind,
    load_yaml,
    one,
    rayjob_pod_templates,
)

sys.path.insert(0, str(ROOT))
from tests.support.network_policy import Pod, ingress_allowed, selects  # noqa: E402

RAY_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}
OTHER_PORTS = {"dashboard-agent": 52365, "node-manager": 40000, "worker": 10002}
ALL_PORTS = {**RAY_PORTS, **OTHER_PORTS}
OPERATOR_NAMESPACE = "kuberay-system"
# The KubeRay operator's pod labels in its own chart (helm-chart/kuberay-operator, release kuberay-operator).
OPERATOR_LABELS = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator",
                   "app.kubernetes.io/component": "kuberay-operator"}


def rayjob_pods(rayjob: dict, namespace: str = NAMESPACE) -> dict[str, Pod]:
    """head, one worker, submitter: the rendered labels plus what KubeRay adds (and cannot be overridden)."""
    name = rayjob["metadata"]["name"]
    cluster = f"{name}-x7k2p"  # KubeRay's generated RayCluster name: nothing may select by it
    out = {}
    for role, template in rayjob_pod_templates(rayjob).items():
        labels = dict(template["metadata"]["labels"])
        if role == "submitter":
            labels.update({"ray.io/originated-from-cr-name": name, "ray.io/originated-from-crd": "RayJob",
                           "app.kubernetes.io/created-by": "kuberay-operator"})
            key = "submitter"
        else:
            node_type = "head" if role == "head" else "worker"
            kuberay = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster, "ray.io/node-type": node_type,
                       "ray.io/group": "headgroup" if role == "head" else role.split(":", 1)[1],
                       "ray.io/identifier": f"{cluster}-{node_type}", "app.kubernetes.io/name": "kuberay",
                       "app.kubernetes.io/created-by": "kuberay-operator"}
            labels = {**kuberay, **labels}  # template labels override, except the three KubeRay keeps
            labels.update({k: kuberay[k] for k in ("ray.io/node-type", "ray.io/group", "ray.io/cluster")})
            key = node_type
        out[key] = Pod(f"{name}/{key}", namespace, labels)
    return out


def render_rayjob(helm_template, profile_args: tuple[str, ...], name: str | None = None) -> list[dict]:
    args = list(profile_args) + (["--set", f"nameOverride={name}"] if name else [])
    res = helm_template(RAYJOB, RAYJOB_RELEASE, *args)
    assert res.returncode == 0, res.stderr
    return res.docs


PROFILES = {"gpu": (), "cpu-kind": ("-f", str(RAYJOB / "values-cpu-kind.yaml"))}


@pytest.fixture(params=sorted(PROFILES))
def world(request, helm_template, render):
    """Every policy of one namespace (this RayJob's, a second RayJob's, the platform's) and the pods around it."""
    docs = render_rayjob(helm_template, PROFILES[request.param])
    other_docs = render_rayjob(helm_template, PROFILES[request.param], name="another-run")
    platform = render("platform-dev")
    policies = by_kind(docs, "NetworkPolicy") + by_kind(other_docs, "NetworkPolicy") + by_kind(platform, "NetworkPolicy")
    mine = rayjob_pods(one(docs, "RayJob"))
    other = rayjob_pods(one(other_docs, "RayJob"))
    client = load_yaml(PLATFORM / "values.yaml")["networkPolicy"]["clientLabel"]
    mlflow = one(platform, "Deployment", "mnist-platform-mlflow")["spec"]["template"]["metadata"]["labels"]
    head_labels = mine["head"].labels
    sources = {
        **{f"this {k}": p for k, p in mine.items()},
        **{f"other job's {k}": p for k, p in other.items()},
        "platform client label only": Pod("client", NAMESPACE, {client["key"]: str(client["value"])}),
        "mlflow server": Pod("mlflow", NAMESPACE, mlflow),
        "kuberay operator": Pod("operator", OPERATOR_NAMESPACE, OPERATOR_LABELS),
        "operator's labels, wrong namespace": Pod("fake-operator", NAMESPACE, OPERATOR_LABELS),
        "head's labels, other namespace": Pod("copy", "elsewhere", head_labels),
        "unlabelled pod": Pod("plain", NAMESPACE, {}),
    }
    return by_kind(docs, "NetworkPolicy"), policies, mine, sources


def expected(source: str, target: str, port: int) -> bool:
    if target in ("head", "worker") and source in ("this head", "this worker"):
        return True  # one Ray cluster: every port, both ways
    if target == "head" and port == RAY_PORTS["dashboard"]:
        return source in ("this submitter", "kuberay operator")
    return False


def test_exactly_who_reaches_which_port(world):
    _, policies, mine, sources = world
    wrong = []
    for target in ("head", "worker", "submitter"):
        for source, pod in sources.items():
            for port_name, port in ALL_PORTS.items():
                got = ingress_allowed(policies, pod, mine[target], port)
                if got != expected(source, target, port):
                    wrong.append(f"{source} -> {target}:{port} ({port_name}): {'allowed' if got else 'denied'}")
    assert not wrong, "\n".join(wrong)


def test_platform_client_label_opens_no_ray_port(world):
    """The label that opens MinIO and MLflow must not open Ray: a pod carrying only it reaches nothing here."""
    _, policies, mine, sources = world
    client = sources["platform client label only"]
    for target in ("head", "worker"):
        for port in RAY_PORTS.values():
            assert not ingress_allowed(policies, client, mine[target], port), f"client label reaches {target}:{port}"
    # ...while the Ray pods themselves carry it and so reach MinIO (the platform's policy).
    minio = Pod("minio", NAMESPACE, {"app.kubernetes.io/name": "minio", "app.kubernetes.io/instance": "mnist-platform"},
                named_ports={"s3": 9000, "console": 9001})
    assert ingress_allowed(policies, mine["worker"], minio, 9000)
    assert not ingress_allowed(policies, mine["submitter"], minio, 9000)


def test_every_pod_of_the_rayjob_is_selected(world):
    own, _, mine, _ = world
    for role, pod in mine.items():
        assert any(selects(p["spec"]["podSelector"], pod.labels) for p in own), f"{role} is selected by no policy"
        for p in own:
            assert p["spec"]["policyTypes"] == ["Ingress"], "egress stays open (charts/README.md says why)"


def test_policies_select_by_the_charts_labels_not_kuberays_names(world):
    own, _, _, _ = world
    keys = set()

    def collect(selector):
        keys.update((selector or {}).get("matchLabels", {}))
        keys.update(e["key"] for e in (selector or {}).get("matchExpressions", []))

    for p in own:
        collect(p["spec"]["podSelector"])
        for rule in p["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                collect(peer.get("podSelector"))
    assert not {k for k in keys if k.startswith("ray.io/")}, keys
    assert "kuberay-mnist/rayjob" in keys and "app.kubernetes.io/component" in keys


def test_the_model_can_say_no_and_yes():
    """Guards the checks above: the semantics model both denies and admits."""
    pol = {"metadata": {"namespace": "n"}, "spec": {"podSelector": {"matchLabels": {"a": "1"}}, "policyTypes": ["Ingress"],
                                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"b": "1"}}}],
                                                               "ports": [{"port": 80, "protocol": "TCP"}]}]}}
    target, friend, stranger = Pod("t", "n", {"a": "1"}), Pod("f", "n", {"b": "1"}), Pod("s", "n", {})
    assert ingress_allowed([pol], friend, target, 80)
    assert not ingress_allowed([pol], friend, target, 81)
    assert not ingress_allowed([pol], stranger, target, 80)
    assert not ingress_allowed([pol], Pod("f2", "other", {"b": "1"}), target, 80)
    assert ingress_allowed([pol], stranger, Pod("u", "n", {}), 80), "an unselected pod accepts everything"


def test_network_policies_can_be_turned_off(helm_template):
    docs = render_rayjob(helm_template, ("--set", "networkPolicy.enabled=false"))
    assert not by_kind(docs, "NetworkPolicy")
