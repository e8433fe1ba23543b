"""The network-policy referee: do the plan's NetworkPolicies admit every connection the platform needs, and refuse
the ones that must stay closed?

Nothing offline enforces a NetworkPolicy (no API server, no CNI), and a property check ("the MLflow policy lists
the workloads' namespace") passes as happily after that namespace was renamed as before. This evaluates the
documented semantics (kubernetes.io, "Network Policies") over the pods the plan would run:
- a pod is isolated for ingress (egress) when at least one policy in its namespace selects it and has that policy
  type; `policyTypes` absent means Ingress, plus Egress when the policy has egress rules. An isolated pod admits
  only what the union of the selecting policies' rules admits; a pod no policy isolates admits everything;
- a connection needs both the source's egress and the destination's ingress to allow it;
- a rule without `from`/`to` admits every peer, one without `ports` every port; the peers of a rule, and its
  ports, are ORed;
- a peer's `podSelector` picks pods in the policy's own namespace, its `namespaceSelector` namespaces by their
  labels (each Namespace carries `kubernetes.io/metadata.name`); both in one peer element must both hold (AND);
  an empty selector `{}` selects everything in its scope;
- `ipBlock` admits the addresses in `cidr` outside every `except`. Whether a pod's own address matches an ipBlock is
  up to the network plugin (the docs warn against relying on it), so for connections that must work a pod is
  never taken to match one, and for connections that must stay closed it is taken to match any block that
  overlaps the pod network (the VPC: the VPC CNI gives pods VPC addresses);
- a port entry matches its protocol (default TCP) and its numeric port, range up to `endPort`, or named port, which
  resolves against the destination pod's container ports.
Label selectors support matchLabels and the four matchExpressions operators. Anything else (an unknown field, an
unresolved value, a label whose value only the cluster knows) raises, so no connection silently passes.

Pods come from the plan's workloads (pod template labels and container ports, plus the labels their controller
adds) and from `UNSEEN`: what runs with labels the plan cannot show (a chart's or an operator's pods), each with
where the fact comes from. The connections checked come from the plan too (see `flows`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from offline.harness import SECRET, UNKNOWN, Plan

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
KAFKA = "kubernetes:kafka.strimzi.io/v1:Kafka"
KAFKA_NODE_POOL = "kubernetes:kafka.strimzi.io/v1:KafkaNodePool"
KAFKA_USER = "kubernetes:kafka.strimzi.io/v1:KafkaUser"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob", "Pod")

NAME_LABEL = "kubernetes.io/metadata.name"
TEAM_LABEL = "mlplatform.io/team"
APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Namespaces every cluster has without being declared.
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Labels controllers add whose values only the cluster knows (hashes, UIDs): a selector on one cannot be judged.
UNKNOWABLE_LABELS = {"pod-template-hash", "controller-revision-hash", "pod-template-generation", "controller-uid",
                     "batch.kubernetes.io/controller-uid"}
PROTOCOLS = ("TCP", "UDP", "SCTP")


class Unsupported(NotImplementedError):
    """The plan uses something this referee does not evaluate; better to stop than to guess."""


# --- what the plan cannot show ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unseen:
    what: str
    facts: str
    source: str


UNSEEN = (
    Unseen("CoreDNS", "Deployment coredns in kube-system, pods labelled k8s-app=kube-dns, container ports dns 53/UDP, "
           "dns-tcp 53/TCP, metrics 9153/TCP",
           "the EKS coredns add-on's manifest (the same labels as the self-managed default it replaces)"),
    Unseen("Prometheus", "the kube-prometheus-stack release's Prometheus, a StatefulSet in the release namespace with "
           "pods labelled app.kubernetes.io/name=prometheus; no NetworkPolicy of its own",
           "prometheus-operator's StatefulSet labels; chart values prometheus.networkPolicy.enabled: false "
           "(upstream/charts/kube-prometheus-stack-88.5.3/values.yaml)"),
    Unseen("Strimzi brokers", "per KafkaNodePool with the broker role: pods labelled strimzi.io/cluster=<Kafka>, "
           "strimzi.io/kind=Kafka, strimzi.io/name=<Kafka>-kafka, strimzi.io/pool-name=<pool>; a container port per "
           "listener (tcp-clientstls for the internal `tls` listener on 9093, else tcp-<name>) and tcp-prometheus "
           "9404 with metricsConfig; the Kafka exporter: strimzi.io/name=<Kafka>-kafka-exporter, tcp-prometheus 9404",
           "strimzi-kafka-operator 1.2.0 KafkaCluster.getContainerPortList, "
           "ListenersUtils.backwardsCompatiblePortName, MetricsModel, KafkaExporter"),
    Unseen("Strimzi's own NetworkPolicies", "<Kafka>-network-policy-kafka on the brokers: each listener's port from "
           "its networkPolicyPeers (absent: from everyone), 9404 from everyone (ports Strimzi's own components use "
           "are left out: no flow here starts from them); on the Kafka exporter: 9404 from everyone",
           "strimzi-kafka-operator 1.2.0 KafkaCluster.generateNetworkPolicy, KafkaExporter.generateNetworkPolicy; "
           "chart value generateNetworkPolicy: true"),
    Unseen("OpenCost", "the opencost chart's Deployment in the release namespace: pods labelled "
           "app.kubernetes.io/name=opencost (or nameOverride), app.kubernetes.io/instance=<release>, running as "
           "serviceAccount.name, container port http on opencost.exporter.apiPort (9003); its ServiceMonitor "
           "(opencost.metrics.serviceMonitor.enabled) scrapes /metrics there",
           "opencost chart 2.5.17 templates/deployment.yaml, templates/servicemonitor.yaml, templates/_helpers.tpl "
           "(opencost.selectorLabels, opencost.serviceAccountName), values.yaml"),
    Unseen("EKS Pod Identity agent", "a hostNetwork DaemonSet answering on 169.254.170.23:80/TCP",
           "AWS EKS User Guide, EKS Pod Identity agent"),
    Unseen("AWS APIs", "public endpoints (S3 through the gateway endpoint, STS, ...); 203.0.113.10 (TEST-NET-3) stands "
           "for any of them", "no fixed address a policy could list"),
    Unseen("MSK brokers", "addresses in the client subnets of the aws:msk Cluster, IAM authentication on 9098/TCP",
           "Amazon MSK Developer Guide, port information"),
)

COREDNS_LABELS = {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"}
PROMETHEUS_CHART = "kube-prometheus-stack"
OPENCOST_CHART = "opencost"
OPENCOST_API_PORT = 9003  # the chart's default opencost.exporter.apiPort
PROMETHEUS_PORT = 9090
POD_IDENTITY_AGENT = ("169.254.170.23", 80)
AWS_API_ADDRESS = "203.0.113.10"
MSK_IAM_PORT = 9098
STRIMZI_METRICS = ("tcp-prometheus", 9404)
# NCCL and gloo connect on ports the OS picks from the ephemeral range (32768-60999 on Linux); one stands for all.
EPHEMERAL_PORT = 45000


# --- model -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    name: str | None
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    owner: str
    """`<Kind> <namespace>/<name>` of what runs it, plus `[i]` for one of several distinguishable pods."""
    namespace: str
    labels: Mapping[str, str]
    ports: tuple[Port, ...] = ()
    service_account: str = "default"
    group: str = ""
    """Pods of one controller share it (a Job's pods are the peers of one training run)."""
    command: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.owner


@dataclass(frozen=True)
class Address:
    """An address outside the pod network (no policy of the plan's selects it)."""
    ip: str
    what: str

    def __str__(self) -> str:
        return f"{self.what} ({self.ip})"


Peer = Pod | Address


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    origin: str
    """The Pulumi resource that declares it, or what generates it in the cluster."""
    spec: Mapping[str, Any]
    types: tuple[str, ...]

    def __str__(self) -> str:
        return f"NetworkPolicy {self.namespace}/{self.name} ({self.origin})"


@dataclass
class Cluster:
    namespaces: dict[str, dict[str, str]]
    pods: list[Pod]
    policies: list[Policy]
    pod_network: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    notes: list[str] = field(default_factory=list)


def _known(value: Any, what: str) -> Any:
    if value in (UNKNOWN, SECRET):
        raise Unsupported(f"{what} is not known until deploy time ({value})")
    return value


def _only(mapping: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    extra = sorted(set(mapping) - set(allowed))
    if extra:
        raise Unsupported(f"{what}: {', '.join(extra)} not implemented")


def _meta(inputs: Mapping[str, Any], fallback: str) -> tuple[str, str]:
    meta = inputs.get("metadata") or {}
    return _known(meta.get("namespace", "default"), "a namespace"), _known(meta.get("name", fallback), "a name")


def namespaces(plan: Plan) -> dict[str, dict[str, str]]:
    """Each namespace's labels; the API server adds `kubernetes.io/metadata.name` to every one."""
    found = {n: {NAME_LABEL: n} for n in BUILTIN_NAMESPACES}
    for r in plan.of_type(NAMESPACE):
        meta = r["inputs"].get("metadata") or {}
        name = _known(meta.get("name", r["name"]), "a namespace's name")
        found[name] = {**(meta.get("labels") or {}), NAME_LABEL: name}
    return found


def _container_ports(spec: Mapping[str, Any], owner: str) -> tuple[Port, ...]:
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            _only(p, ("name", "containerPort", "protocol", "hostPort", "hostIP"), f"{owner} container port")
            protocol = p.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                raise Unsupported(f"{owner}: protocol {protocol!r}")
            ports.append(Port(p.get("name"), int(_known(p["containerPort"], "a containerPort")), protocol))
    return tuple(ports)


def _command(spec: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(part) for c in spec.get("containers") or [] for part in [*(c.get("command") or []),
                                                                               *(c.get("args") or [])])


def _count(value: Any, default: int = 1) -> int:
    return default if value is None else int(_known(value, "a replica count"))


def _workload_pods(r: dict[str, Any]) -> list[Pod]:
    kind = r["type"].rsplit(":", 1)[-1]
    inputs = r["inputs"]
    ns, name = _meta(inputs, r["name"])
    spec = inputs.get("spec") or {}
    owner = f"{kind} {ns}/{name}"
    if kind == "Pod":
        template, pod_spec = {"metadata": inputs.get("metadata") or {}}, spec
    else:
        job = (spec.get("jobTemplate") or {}).get("spec") or {} if kind == "CronJob" else spec
        template = job.get("template") or {}
        pod_spec = template.get("spec") or {}
    if pod_spec.get("hostNetwork"):
        raise Unsupported(f"{owner}: hostNetwork pods are not subject to NetworkPolicy and are not modelled")
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    base = dict(namespace=ns, ports=_container_ports(pod_spec, owner),
                service_account=pod_spec.get("serviceAccountName") or "default", group=owner,
                command=_command(pod_spec))
    if kind in ("Job", "CronJob"):
        # A CronJob's Jobs are named `<cronjob>-<schedule time>` (or by `kubectl create job --from`).
        job_name = name if kind == "Job" else f"{name}-<run>"
        labels |= {"batch.kubernetes.io/job-name": job_name, "job-name": job_name}
        count = min(_count(job.get("parallelism")), _count(job.get("completions"), _count(job.get("parallelism"))))
        if job.get("completionMode") == "Indexed":
            # Kubernetes >= 1.28 labels each pod of an Indexed Job with its index (PodIndexLabel).
            return [Pod(f"{owner}[{i}]", labels={**labels, "batch.kubernetes.io/job-completion-index": str(i)},
                        **base) for i in range(count)]
        return [Pod(owner, labels=labels, **base)]
    if kind == "StatefulSet":
        return [Pod(f"{owner}[{i}]", labels={**labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                                             "apps.kubernetes.io/pod-index": str(i)}, **base)
                for i in range(max(1, _count(spec.get("replicas"))))]
    return [Pod(owner, labels=labels, **base)]


def _listeners(kafka: dict[str, Any]) -> list[dict[str, Any]]:
    return ((kafka["inputs"].get("spec") or {}).get("kafka") or {}).get("listeners") or []


def _strimzi(plan: Plan) -> tuple[list[Pod], list[Policy]]:
    pods: list[Pod] = []
    policies: list[Policy] = []
    releases = [r for r in plan.of_type(HELM_RELEASE) if r["inputs"].get("chart") == "strimzi-kafka-operator"]
    generate = all((r["inputs"].get("values") or {}).get("generateNetworkPolicy", True) for r in releases)
    pools = plan.of_type(KAFKA_NODE_POOL)
    for r in plan.of_type(KAFKA):
        ns, cluster = _meta(r["inputs"], r["name"])
        spec = r["inputs"].get("spec") or {}
        metrics = "metricsConfig" in (spec.get("kafka") or {})
        listeners = _listeners(r)
        ports = []
        for lst in listeners:
            if lst.get("name") == "tls" and lst.get("port") == 9093 and lst.get("type") == "internal":
                port_name = "tcp-clientstls"
            elif lst.get("name") == "plain" and lst.get("port") == 9092 and lst.get("type") == "internal":
                port_name = "tcp-clients"
            else:
                port_name = f"tcp-{lst['name']}"
            ports.append(Port(port_name, int(lst["port"])))
        if metrics:
            ports.append(Port(*STRIMZI_METRICS))
        selector = {"strimzi.io/cluster": cluster, "strimzi.io/name": f"{cluster}-kafka", "strimzi.io/kind": "Kafka"}
        for pool in pools:
            pool_ns, pool_name = _meta(pool["inputs"], pool["name"])
            pool_spec = pool["inputs"].get("spec") or {}
            pool_labels = (pool["inputs"].get("metadata") or {}).get("labels") or {}
            if pool_ns != ns or pool_labels.get("strimzi.io/cluster") != cluster:
                continue
            if "broker" not in (pool_spec.get("roles") or []):
                continue
            for i in range(_count(pool_spec.get("replicas"))):
                pods.append(Pod(f"KafkaNodePool {ns}/{pool_name}[{i}] (broker)", ns,
                                {**selector, "strimzi.io/pool-name": pool_name, "strimzi.io/broker-role": "true"},
                                tuple(ports), group=f"Kafka {ns}/{cluster}"))
        exporter = {"strimzi.io/cluster": cluster, "strimzi.io/name": f"{cluster}-kafka-exporter",
                    "strimzi.io/kind": "Kafka"}
        if "kafkaExporter" in spec:
            pods.append(Pod(f"Kafka {ns}/{cluster} (Kafka exporter)", ns, exporter, (Port(*STRIMZI_METRICS),),
                            group=f"Kafka {ns}/{cluster} exporter"))
        if not generate:
            continue
        origin = f"generated by the Strimzi operator from Kafka {cluster}"
        rules = [{"from": list(lst.get("networkPolicyPeers") or []),
                  "ports": [{"protocol": "TCP", "port": lst["port"]}]} for lst in listeners]
        if metrics:
            rules.append({"ports": [{"protocol": "TCP", "port": STRIMZI_METRICS[1]}]})
        for rule in rules:
            if not rule.get("from"):
                rule.pop("from", None)
        policies.append(checked_policy(ns, f"{cluster}-network-policy-kafka", origin,
                                       {"podSelector": {"matchLabels": selector}, "ingress": rules}))
        if "kafkaExporter" in spec:
            policies.append(checked_policy(ns, f"{cluster}-kafka-exporter", origin, {
                "podSelector": {"matchLabels": exporter},
                "ingress": [{"ports": [{"protocol": "TCP", "port": STRIMZI_METRICS[1]}]}]}))
    return pods, policies


def _unseen_pods(plan: Plan) -> list[Pod]:
    pods = [Pod("Deployment kube-system/coredns (EKS add-on)", "kube-system", COREDNS_LABELS,
                (Port("dns", 53, "UDP"), Port("dns-tcp", 53, "TCP"), Port("metrics", 9153, "TCP")),
                group="coredns")]
    for r in plan.of_type(HELM_RELEASE):
        inputs = r["inputs"]
        values = inputs.get("values") or {}
        if inputs.get("chart") == PROMETHEUS_CHART and (values.get("prometheus") or {}).get("enabled", True):
            ns = _known(inputs.get("namespace", "default"), "a release namespace")
            pods.append(Pod(f"Prometheus {ns} (release {inputs.get('name', r['name'])})", ns,
                            {APP_LABEL: "prometheus"}, (Port("http-web", PROMETHEUS_PORT),), group="prometheus"))
        if inputs.get("chart") == OPENCOST_CHART:
            pods.append(_opencost_pod(r))
    return pods


def _opencost_pod(r: dict[str, Any]) -> Pod:
    inputs = r["inputs"]
    values = inputs.get("values") or {}
    ns = _known(inputs.get("namespace", "default"), "a release namespace")
    release = _known(inputs.get("name", r["name"]), "a release name")
    name = values.get("nameOverride") or OPENCOST_CHART
    # opencost.fullname: the release name when it contains the chart's name, else <release>-<name>.
    fullname = values.get("fullnameOverride") or (release if name in release else f"{release}-{name}")
    account = (values.get("serviceAccount") or {}).get("name") or fullname
    port = ((values.get("opencost") or {}).get("exporter") or {}).get("apiPort", OPENCOST_API_PORT)
    return Pod(f"OpenCost {ns} (release {release})", ns, {APP_LABEL: name, "app.kubernetes.io/instance": release},
               (Port("http", int(_known(port, "opencost.exporter.apiPort"))),),
               service_account=_known(account, "the OpenCost service account"), group=f"opencost-{release}")


def _opencost_scraped(plan: Plan) -> bool:
    return any(((((r["inputs"].get("values") or {}).get("opencost") or {}).get("metrics") or {}).get(
        "serviceMonitor") or {}).get("enabled") for r in plan.of_type(HELM_RELEASE)
        if r["inputs"].get("chart") == OPENCOST_CHART)


def _policy(r: dict[str, Any]) -> Policy:
    ns, name = _meta(r["inputs"], r["name"])
    return checked_policy(ns, name, f"resource {r['name']}", r["inputs"].get("spec"))


def checked_policy(ns: str, name: str, origin: str, spec: Any) -> Policy:
    """A NetworkPolicy whose every field this referee evaluates, with its effective policy types."""
    where = f"NetworkPolicy {ns}/{name}"
    if not isinstance(spec, dict) or "podSelector" not in spec:
        raise Unsupported(f"{where}: spec.podSelector is required")
    _only(spec, ("podSelector", "policyTypes", "ingress", "egress"), where)
    check_selector(spec["podSelector"], f"{where} podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            _only(rule, (peers, "ports"), f"{where} {direction} rule")
            for peer in rule.get(peers) or []:
                _only(peer, ("podSelector", "namespaceSelector", "ipBlock"), f"{where} peer")
                if "ipBlock" in peer and len(peer) > 1:
                    raise Unsupported(f"{where}: ipBlock with a selector in one peer is invalid")
                if "ipBlock" in peer:
                    _only(peer["ipBlock"], ("cidr", "except"), f"{where} ipBlock")
                    _block(peer["ipBlock"])
                for key in ("podSelector", "namespaceSelector"):
                    if key in peer:
                        check_selector(peer[key], f"{where} {key}")
            for port in rule.get("ports") or []:
                _only(port, ("protocol", "port", "endPort"), f"{where} port")
                if port.get("protocol", "TCP") not in PROTOCOLS:
                    raise Unsupported(f"{where}: protocol {port.get('protocol')!r}")
                if "endPort" in port and not isinstance(port.get("port"), int):
                    raise Unsupported(f"{where}: endPort needs a numeric port")
    types = spec.get("policyTypes")
    if types is None:
        types = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    if set(types) - {"Ingress", "Egress"}:
        raise Unsupported(f"{where}: policyTypes {types}")
    return Policy(ns, name, origin, spec, tuple(types))


def pod_network(plan: Plan) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Where pod addresses come from: the VPC (the VPC CNI), or anywhere when the plan has no VPC."""
    blocks = [r["inputs"]["cidrBlock"] for r in plan.of_type("aws:ec2/vpc:Vpc") if r["inputs"].get("cidrBlock")]
    return [ipaddress.ip_network(b) for b in blocks] or [ipaddress.ip_network("0.0.0.0/0"),
                                                          ipaddress.ip_network("::/0")]


def model(plan: Plan) -> Cluster:
    ns = namespaces(plan)
    pods: list[Pod] = []
    for r in plan.resources:
        if r["type"].startswith("kubernetes:") and r["type"].rsplit(":", 1)[-1] in WORKLOAD_KINDS \
                and r["type"].split(":")[1].split("/")[0] in ("apps", "batch", "core"):
            pods += _workload_pods(r)
    strimzi_pods, strimzi_policies = _strimzi(plan)
    pods += strimzi_pods + _unseen_pods(plan)
    policies = [_policy(r) for r in plan.of_type(NETWORK_POLICY)] + strimzi_policies
    notes = [f"{p} runs in namespace {p.namespace}, which the plan does not declare"
             for p in pods if p.namespace not in ns]
    notes += [f"{p} is in namespace {p.namespace}, which the plan does not declare"
              for p in policies if p.namespace not in ns]
    return Cluster(ns, pods, policies, pod_network(plan), notes)


# --- semantics -------------------------------------------------------------------------------------------------

def check_selector(selector: Mapping[str, Any] | None, where: str = "label selector") -> None:
    """Refuse a selector this referee cannot evaluate: unknown fields or operators, unresolved values, or a key whose
    value only the cluster knows."""
    selector = selector or {}
    _only(selector, ("matchLabels", "matchExpressions"), where)
    expressions = selector.get("matchExpressions") or []
    for e in expressions:
        _only(e, ("key", "operator", "values"), f"{where} matchExpression")
        if e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise Unsupported(f"{where}: matchExpressions operator {e.get('operator')!r}")
        for v in e.get("values") or []:
            _known(v, f"{where} value")
    for key, value in (selector.get("matchLabels") or {}).items():
        _known(value, f"{where} value")
    for key in [*(selector.get("matchLabels") or {}), *(e.get("key") for e in expressions)]:
        if key in UNKNOWABLE_LABELS:
            raise Unsupported(f"{where} on {key!r}, whose value only the cluster knows")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector: matchLabels and matchExpressions all hold; `{}` selects everything."""
    check_selector(selector)
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], e.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        else:
            ok = key not in labels
        if not ok:
            return False
    return True


def _block(ip_block: Mapping[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks an ipBlock admits: `cidr` without its `except` ranges."""
    remaining = [ipaddress.ip_network(_known(ip_block["cidr"], "an ipBlock cidr"), strict=False)]
    for text in ip_block.get("except") or []:
        hole = ipaddress.ip_network(_known(text, "an ipBlock except"), strict=False)
        next_remaining = []
        for net in remaining:
            if net.version != hole.version or not net.overlaps(hole):
                next_remaining.append(net)
            elif not hole.supernet_of(net):
                next_remaining += list(net.address_exclude(hole))
        remaining = next_remaining
    return remaining


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, other: Peer, cluster: Cluster, lenient: bool) -> bool:
    if "ipBlock" in peer:
        nets = _block(peer["ipBlock"])
        if isinstance(other, Address):
            ip = ipaddress.ip_address(other.ip)
            return any(ip.version == n.version and ip in n for n in nets)
        return lenient and any(n.version == p.version and n.overlaps(p) for n in nets for p in cluster.pod_network)
    if isinstance(other, Address):
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], cluster.namespaces.get(other.namespace, {})):
            return False
    elif other.namespace != policy_ns:
        return False
    return "podSelector" not in peer or selector_matches(peer["podSelector"], other.labels)


def _port_matches(entry: Mapping[str, Any], number: int, protocol: str, destination: Peer) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    port = _known(entry.get("port"), "a policy port")
    if port is None:
        return True
    if isinstance(port, str):
        # A named port means whatever port that name has on the destination pod, for that protocol.
        return isinstance(destination, Pod) and any(
            p.name == port and p.number == number and p.protocol == protocol for p in destination.ports)
    return int(port) <= number <= int(entry.get("endPort", port))


def rule_admits(rule: Mapping[str, Any], direction: str, policy_ns: str, other: Peer, number: int, protocol: str,
                destination: Peer, cluster: Cluster, lenient: bool = False) -> bool:
    """One ingress/egress rule: a missing or empty peer list admits everyone, a missing or empty port list every
    port; otherwise some peer and some port must match."""
    peers = rule.get("from" if direction == "Ingress" else "to") or []
    ports = rule.get("ports") or []
    return ((not peers or any(_peer_matches(p, policy_ns, other, cluster, lenient) for p in peers))
            and (not ports or any(_port_matches(e, number, protocol, destination) for e in ports)))


@dataclass(frozen=True)
class Side:
    """One end's verdict: which policies isolate the pod that way, and which of their rules admit the peer."""
    direction: str
    isolating: tuple[Policy, ...]
    admitting: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.isolating or bool(self.admitting)


def side(cluster: Cluster, pod: Peer, direction: str, other: Peer, number: int, protocol: str,
         lenient: bool = False) -> Side:
    if isinstance(pod, Address):
        return Side(direction, (), ())
    key = direction.lower()
    isolating = tuple(p for p in cluster.policies if p.namespace == pod.namespace and direction in p.types
                      and selector_matches(p.spec.get("podSelector"), pod.labels))
    destination = other if direction == "Egress" else pod
    admitting = tuple(f"{p} {key} rule {i}" for p in isolating for i, rule in enumerate(p.spec.get(key) or [])
                      if rule_admits(rule, direction, p.namespace, other, number, protocol, destination, cluster,
                                     lenient))
    return Side(direction, isolating, admitting)


@dataclass(frozen=True)
class Verdict:
    egress: Side
    ingress: Side

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


def connection(cluster: Cluster, source: Pod, destination: Peer, number: int, protocol: str = "TCP",
               lenient: bool = False) -> Verdict:
    """Whether `source` may open a connection to `destination` on `number`/`protocol`: its egress and the
    destination's ingress must both allow it."""
    return Verdict(side(cluster, source, "Egress", destination, number, protocol, lenient),
                   side(cluster, destination, "Ingress", source, number, protocol, lenient))


# --- the platform's connections --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    source: Pod
    destination: Peer
    port: int
    protocol: str
    why: str
    must: bool = True
    """True: the platform needs it; False: it must stay closed."""

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination} {self.port}/{self.protocol} ({self.why})"


def _tcp_ports(pod: Pod) -> list[int]:
    return sorted({p.number for p in pod.ports if p.protocol == "TCP"})


def _monitor_namespaces(spec: Mapping[str, Any], own: str, cluster: Cluster) -> list[str]:
    selector = spec.get("namespaceSelector")
    if selector is None:
        return [own]
    _only(selector, ("any", "matchNames"), "monitor namespaceSelector")
    if selector.get("any"):
        return sorted(cluster.namespaces)
    # prometheus-operator: neither `any` nor names means the monitor's own namespace.
    return list(selector.get("matchNames") or [own])


def monitor_targets(plan: Plan, cluster: Cluster) -> list[tuple[str, Pod, int]]:
    """(monitor, pod, port) for every target Prometheus discovers from the plan's PodMonitors and ServiceMonitors;
    a monitor with no target at all is returned with no pod (the scrape it was made for cannot happen)."""
    targets: list[tuple[str, Pod | None, int]] = []
    for r in plan.of_type(POD_MONITOR):
        ns, name = _meta(r["inputs"], r["name"])
        spec = r["inputs"].get("spec") or {}
        where = f"PodMonitor {ns}/{name}"
        found = []
        scope = _monitor_namespaces(spec, ns, cluster)
        for endpoint in spec.get("podMetricsEndpoints") or []:
            if "port" not in endpoint or {"portNumber", "targetPort"} & set(endpoint):
                raise Unsupported(f"{where}: only named `port` endpoints are implemented")
            for pod in cluster.pods:
                if pod.namespace in scope and selector_matches(spec.get("selector"), pod.labels):
                    found += [(where, pod, p.number) for p in pod.ports if p.name == endpoint["port"]
                              and p.protocol == "TCP"]
        targets += found or [(where, None, 0)]
    services = plan.of_type(SERVICE)
    for r in plan.of_type(SERVICE_MONITOR):
        ns, name = _meta(r["inputs"], r["name"])
        spec = r["inputs"].get("spec") or {}
        where = f"ServiceMonitor {ns}/{name}"
        found = []
        scope = _monitor_namespaces(spec, ns, cluster)
        for endpoint in spec.get("endpoints") or []:
            if "port" not in endpoint or "targetPort" in endpoint:
                raise Unsupported(f"{where}: only named `port` endpoints are implemented")
            for svc in services:
                svc_ns, _ = _meta(svc["inputs"], svc["name"])
                svc_labels = (svc["inputs"].get("metadata") or {}).get("labels") or {}
                svc_spec = svc["inputs"].get("spec") or {}
                if svc_ns not in scope or not selector_matches(spec.get("selector"), svc_labels):
                    continue
                pod_selector = svc_spec.get("selector")
                if not pod_selector:
                    continue  # no selector: endpoints are managed by hand, nothing the plan can resolve
                for sp in svc_spec.get("ports") or []:
                    if sp.get("name") != endpoint["port"] or sp.get("protocol", "TCP") != "TCP":
                        continue
                    target = sp.get("targetPort", sp["port"])
                    for pod in cluster.pods:
                        if pod.namespace != svc_ns or not selector_matches({"matchLabels": pod_selector}, pod.labels):
                            continue
                        if isinstance(target, str):
                            found += [(where, pod, p.number) for p in pod.ports if p.name == target
                                      and p.protocol == "TCP"]
                        else:
                            found.append((where, pod, int(target)))
        targets += found or [(where, None, 0)]
    return targets


def _rendezvous_port(pod: Pod) -> int | None:
    for part in pod.command:
        m = re.search(r"--rdzv[-_]endpoint[= ]\S*:(\d+)$", part)
        if m:
            return int(m.group(1))
    return None


def _msk_brokers(plan: Plan) -> list[Address]:
    subnets = {r["id"]: r["inputs"].get("cidrBlock") for r in plan.of_type("aws:ec2/subnet:Subnet") if r.get("id")}
    brokers = []
    for r in plan.of_type(MSK_CLUSTER):
        inputs = r["inputs"]
        sasl = ((inputs.get("clientAuthentication") or {}).get("sasl") or {})
        if not sasl.get("iam"):
            raise Unsupported(f"MSK cluster {r['name']}: only IAM client authentication is implemented")
        for subnet_id in (inputs.get("brokerNodeGroupInfo") or {}).get("clientSubnets") or []:
            cidr = subnets.get(_known(subnet_id, "an MSK client subnet"))
            if cidr is None:
                raise Unsupported(f"MSK cluster {r['name']}: client subnet {subnet_id} is not in the plan")
            net = ipaddress.ip_network(cidr)
            brokers.append(Address(str(net.network_address + 10), f"MSK broker in {cidr}"))
    return brokers


def _aws_identities(plan: Plan) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(namespace, service account) pairs with a Pod Identity association, and those with an IRSA role."""
    pod_identity = {(r["inputs"].get("namespace"), r["inputs"].get("serviceAccount"))
                    for r in plan.of_type(POD_IDENTITY)}
    irsa = set()
    for r in plan.of_type(SERVICE_ACCOUNT):
        meta = r["inputs"].get("metadata") or {}
        if "eks.amazonaws.com/role-arn" in (meta.get("annotations") or {}):
            irsa.add(_meta(r["inputs"], r["name"]))
    return pod_identity, irsa


def flows(plan: Plan, cluster: Cluster) -> list[Flow]:
    """The connections the platform needs (`must`) and those it must not have, derived from the plan:
    - every pod with an AWS identity (a Pod Identity association or an IRSA role on its service account) -> AWS APIs
      on 443, and with Pod Identity -> the agent;
    - the MLflow server and its migration Job (app.kubernetes.io/component=migration) -> the in-cluster database
      pods on their ports; its auth sync Job (component auth-sync) -> the server;
    - every pod in a team namespace (labelled mlplatform.io/team) -> CoreDNS 53/UDP and 53/TCP, -> the MLflow
      server pods (app.kubernetes.io/name=mlflow) on their ports, -> the Kafka brokers on each listener port (Strimzi)
      or the MSK brokers on the IAM port;
    - Prometheus -> every PodMonitor/ServiceMonitor target;
    - the pods of one multi-pod Job -> each other on the rendezvous port of their torchrun command, and on an
      ephemeral port (NCCL, the process-group store);
    - every pod of a team namespace -> the serving pods (app.kubernetes.io/component=serving) in it on their ports;
    - OpenCost -> CoreDNS and -> Prometheus on 9090 (its history); Prometheus -> OpenCost's API port when the chart's
      ServiceMonitor is on;
    must stay closed: a team's pods -> another team's serving pods; a team's pods -> MLflow's database pods
    (app.kubernetes.io/component=database in MLflow's namespace) on their ports; a team's pods -> OpenCost's API,
    which reports every team's costs.
    """
    out: list[Flow] = []
    teams = {n for n, labels in cluster.namespaces.items() if TEAM_LABEL in labels}
    team_pods = [p for p in cluster.pods if p.namespace in teams]
    dns = [p for p in cluster.pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
    mlflow = [p for p in cluster.pods if p.labels.get(APP_LABEL) == "mlflow"]
    mlflow_namespaces = {p.namespace for p in mlflow}
    databases = [p for p in cluster.pods if p.namespace in mlflow_namespaces
                 and p.labels.get(COMPONENT_LABEL) == "database"]
    brokers = [p for p in cluster.pods if p.labels.get("strimzi.io/broker-role") == "true"]
    listener_ports = {_meta(r["inputs"], r["name"]): [int(lst["port"]) for lst in _listeners(r)]
                      for r in plan.of_type(KAFKA)}
    msk = _msk_brokers(plan)
    pod_identity, irsa = _aws_identities(plan)
    serving = [p for p in cluster.pods if p.namespace in teams and p.labels.get(COMPONENT_LABEL) == "serving"]
    for pod in cluster.pods:
        account = (pod.namespace, pod.service_account)
        if account in pod_identity:
            out.append(Flow(pod, Address(POD_IDENTITY_AGENT[0], "EKS Pod Identity agent"), POD_IDENTITY_AGENT[1],
                            "TCP", "workload credentials"))
        if account in pod_identity or account in irsa:
            out.append(Flow(pod, Address(AWS_API_ADDRESS, "AWS APIs"), 443, "TCP", "AWS APIs"))
    # The server and its migration Job use the database; the auth sync Job talks to the server as its admin.
    for pod in cluster.pods:
        if pod.namespace not in mlflow_namespaces:
            continue
        if pod in mlflow or pod.labels.get(COMPONENT_LABEL) == "migration":
            out += [Flow(pod, db, port, "TCP", "MLflow backend store") for db in databases for port in _tcp_ports(db)]
        if pod.labels.get(COMPONENT_LABEL) == "auth-sync":
            out += [Flow(pod, m, port, "TCP", "MLflow auth sync") for m in mlflow for port in _tcp_ports(m)]
    for pod in team_pods:
        for d in dns:
            out += [Flow(pod, d, 53, proto, "DNS") for proto in ("UDP", "TCP")]
        for m in mlflow:
            out += [Flow(pod, m, port, "TCP", "MLflow tracking") for port in _tcp_ports(m)]
        for b in brokers:
            ports = listener_ports.get((b.namespace, b.labels["strimzi.io/cluster"]), [])
            out += [Flow(pod, b, port, "TCP", "Kafka") for port in ports]
        out += [Flow(pod, b, MSK_IAM_PORT, "TCP", "Kafka (MSK, IAM)") for b in msk]
        for s in serving:
            if s.group == pod.group:
                continue
            for port in _tcp_ports(s):
                if s.namespace == pod.namespace:
                    out.append(Flow(pod, s, port, "TCP", "predictions inside the team"))
                else:
                    out.append(Flow(pod, s, port, "TCP", "another team's model", must=False))
        for db in databases:
            out += [Flow(pod, db, port, "TCP", "MLflow's database", must=False) for port in _tcp_ports(db)]
    prometheus = [p for p in cluster.pods if p.labels.get(APP_LABEL) == "prometheus"]
    for monitor, target, port in monitor_targets(plan, cluster):
        if target is not None:
            out += [Flow(p, target, port, "TCP", f"scrape for {monitor}") for p in prometheus]
    opencost = [p for p in cluster.pods if p.group.startswith("opencost-")]
    for pod in opencost:
        for d in dns:
            out += [Flow(pod, d, 53, proto, "DNS") for proto in ("UDP", "TCP")]
        out += [Flow(pod, p, PROMETHEUS_PORT, "TCP", "OpenCost's Prometheus queries") for p in prometheus]
        api = [port.number for port in pod.ports if port.name == "http"]
        if _opencost_scraped(plan):
            out += [Flow(p, pod, port, "TCP", "scrape for the opencost chart's ServiceMonitor")
                    for p in prometheus for port in api]
        out += [Flow(t, pod, port, "TCP", "OpenCost's API: every team's costs", must=False)
                for t in team_pods for port in api]
    groups: dict[str, list[Pod]] = {}
    for pod in cluster.pods:
        groups.setdefault(pod.group, []).append(pod)
    for members in groups.values():
        port = _rendezvous_port(members[0])
        if len(members) < 2 or port is None:
            continue
        for a in members:
            for b in members:
                if a is not b:
                    out += [Flow(a, b, port, "TCP", "torchrun rendezvous"),
                            Flow(a, b, EPHEMERAL_PORT, "TCP", "NCCL / process group between workers")]
    return out


def _blame(verdict: Verdict) -> str:
    parts = []
    for s in (verdict.egress, verdict.ingress):
        if s.allowed:
            continue
        # The policy that should admit it: one with rules that way (a default-deny has none to extend).
        ruled = [p for p in s.isolating if p.spec.get(s.direction.lower())] or list(s.isolating)
        parts.append(f"{s.direction.lower()} closed: no rule of {' or '.join(map(str, ruled))} admits it")
    return "; ".join(parts)


def _admitted_by(s: Side) -> str:
    return ", ".join(s.admitting) if s.isolating else "not isolated (no policy selects it that way)"


def judge(plan: Plan, cluster: Cluster | None = None) -> list[tuple[Flow, Verdict]]:
    cluster = cluster or model(plan)
    return [(f, connection(cluster, f.source, f.destination, f.port, f.protocol, lenient=not f.must))
            for f in flows(plan, cluster)]


def problems(plan: Plan) -> list[str]:
    """Each needed connection the policies refuse, with the policy that should admit it; each connection that must
    stay closed but is admitted, with what admits it; monitors with no target; objects in undeclared namespaces."""
    cluster = model(plan)
    found = list(cluster.notes)
    if any(TEAM_LABEL in labels for labels in cluster.namespaces.values()):
        if not [p for p in cluster.pods if p.labels.get(APP_LABEL) == "mlflow"]:
            found.append("no MLflow server pods (app.kubernetes.io/name=mlflow) in the plan: the teams' tracking flows "
                         "cannot be checked")
    for monitor, target, _ in monitor_targets(plan, cluster):
        if target is None:
            found.append(f"{monitor} selects no pod with its endpoint port: Prometheus has nothing to scrape")
    for flow, verdict in judge(plan, cluster):
        if flow.must and not verdict.allowed:
            found.append(f"{flow}: {_blame(verdict)}")
        elif not flow.must and verdict.allowed:
            found.append(f"{flow} must be refused but is admitted: egress {_admitted_by(verdict.egress)}; "
                         f"ingress {_admitted_by(verdict.ingress)}")
    return sorted(dict.fromkeys(found))


def render(plan: Plan) -> list[str]:
    """The referee's verdict in a few lines, for `make plan`."""
    results = judge(plan)
    found = problems(plan)
    needed = sum(1 for f, _ in results if f.must)
    lines = [f"network policies: {'ok' if not found else f'{len(found)} PROBLEM(S)'} ({needed} needed connections, "
             f"{len(results) - needed} that must stay closed)"]
    return lines + [f"  {p}" for p in found]
