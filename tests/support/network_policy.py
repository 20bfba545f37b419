"""Kubernetes NetworkPolicy ingress semantics over rendered policies, to ask "may pod A open port P on pod B?".

What the API documents for networking.k8s.io/v1: a pod that no policy with policyTypes Ingress selects accepts
everything; a selected pod accepts a connection when at least one ingress rule of one selecting policy admits the
peer (``from``: a podSelector alone means pods of the policy's namespace; a namespaceSelector alone, every pod of
the matching namespaces; both in one peer, matching pods of matching namespaces; no ``from``, every source) and
the port (no ``ports``: every port; a named port is the target container's port of that name). Policies are
additive. Only TCP is modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)  # containerPort name -> number

    def ns_labels(self) -> dict[str, str]:
        # The API server labels every namespace with its own name.
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels and matchExpressions all hold (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != str(v) for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], [str(v) for v in e.get("values") or []]
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _peer_admits(peer: dict, policy_namespace: str, source: Pod) -> bool:
    if "ipBlock" in peer:
        raise ValueError("ipBlock peers are not modelled")
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.ns_labels()):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), source.labels) if "podSelector" in peer else True


def _port_admits(ports: list[dict] | None, target: Pod, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        number = p.get("port")
        if isinstance(number, str):
            number = target.named_ports.get(number)
            if number is None:
                continue  # a port name the target does not declare admits nothing there
        if number is None:
            return True  # a rule without a port number: every port of that protocol
        if number <= port <= p.get("endPort", number):
            return True
    return False


def selecting_policies(policies: list[dict], target: Pod) -> list[dict]:
    return [p for p in policies
            if p["metadata"].get("namespace", target.namespace) == target.namespace
            and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
            and selects(p["spec"].get("podSelector"), target.labels)]


def ingress_allowed(policies: list[dict], source: Pod, target: Pod, port: int) -> bool:
    selecting = selecting_policies(policies, target)
    if not selecting:
        return True
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", target.namespace)
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            if (not peers or any(_peer_admits(peer, namespace, source) for peer in peers)) \
                    and _port_admits(rule.get("ports"), target, port):
                return True
    return False
