"""The network-policy referee (offline/netpol.py): NetworkPolicy semantics on small plans, then the real stacks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline import netpol
from offline.harness import STACKS, Plan
from offline.netpol import Address, Unsupported, connection, model, problems

POLICY = netpol.NETWORK_POLICY


def res(type_: str, name: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": type_, "name": name, "urn": f"urn:pulumi:unit::ml-platform::{type_}::{name}", "parent": None,
            "id": extra.pop("id", f"{name}-id"), "custom": True, "inputs": inputs, **extra}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return res(netpol.NAMESPACE, name, {"metadata": {"name": name, "labels": labels}})


def deployment(ns: str, name: str, labels: dict[str, str] | None = None,
               ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    labels = labels or {"app.kubernetes.io/name": name}
    return res("kubernetes:apps/v1:Deployment", f"{ns}-{name}-deployment", {
        "metadata": {"name": name, "namespace": ns}, "spec": {"template": {
            "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "ports": ports or []}]}}}})


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return res(POLICY, f"{ns}-{name}", {"metadata": {"name": name, "namespace": ns}, "spec": spec})


def plan(*resources: dict[str, Any]) -> Plan:
    return Plan(stack="unit", project="ml-platform", resources=list(resources), outputs={})


def pod(cluster: netpol.Cluster, owner_part: str) -> netpol.Pod:
    (found,) = [p for p in cluster.pods if owner_part in p.owner]
    return found


HTTP = [{"name": "http", "containerPort": 8080}]
BASE = [namespace("a", team="a"), namespace("b", team="b"),
        deployment("a", "client"), deployment("a", "server", ports=HTTP), deployment("b", "client")]


def allowed(resources: list[dict[str, Any]], src: str, dst: str | Address, port: int, protocol: str = "TCP",
            lenient: bool = False) -> bool:
    cluster = model(plan(*resources))
    destination = dst if isinstance(dst, Address) else pod(cluster, dst)
    return connection(cluster, pod(cluster, src), destination, port, protocol, lenient=lenient).allowed


# --- isolation -------------------------------------------------------------------------------------------------

def test_a_pod_no_policy_selects_admits_everything():
    assert allowed(BASE, "b/client", "a/server", 8080)


def test_default_deny_isolates_and_an_allow_rule_reopens():
    deny = policy("a", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not allowed([*BASE, deny], "a/client", "a/server", 8080)
    allow = policy("a", "allow", {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "server"}},
                                  "ingress": [{"from": [{"podSelector": {}}]}]})
    assert allowed([*BASE, deny, allow], "a/client", "a/server", 8080)
    assert not allowed([*BASE, deny, allow], "b/client", "a/server", 8080)


def test_policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules():
    ingress_only = policy("a", "p", {"podSelector": {}, "ingress": []})
    # Ingress isolated (no rules: nothing admitted); egress untouched.
    assert not allowed([*BASE, ingress_only], "b/client", "a/server", 8080)
    assert allowed([*BASE, ingress_only], "a/client", "b/client", 8080)
    with_egress = policy("a", "p", {"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}]})
    assert not allowed([*BASE, with_egress], "a/client", "b/client", 8080)
    assert allowed([*BASE, with_egress], "a/client", "a/server", 8080) is False  # ingress isolated too, no rules


def test_a_connection_needs_both_the_sources_egress_and_the_destinations_ingress():
    egress_open = policy("a", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    ingress_closed = policy("b", "in", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert allowed([*BASE, egress_open], "a/client", "b/client", 80)
    assert not allowed([*BASE, egress_open, ingress_closed], "a/client", "b/client", 80)
    egress_closed = policy("a", "out", {"podSelector": {}, "policyTypes": ["Egress"]})
    assert not allowed([*BASE, egress_closed], "a/client", "b/client", 80)


def test_rules_of_all_selecting_policies_are_ored():
    deny = policy("a", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    one = policy("a", "one", {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]})
    other = policy("a", "other", {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nope"}},
                                  "ingress": [{"ports": [{"port": 9090}]}]})
    assert allowed([*BASE, deny, one, other], "b/client", "a/server", 8080)
    assert not allowed([*BASE, deny, one, other], "b/client", "a/server", 9090)


# --- peers -----------------------------------------------------------------------------------------------------

def _ingress(*peers: dict[str, Any]) -> dict[str, Any]:
    return policy("a", "in", {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "server"}},
                              "policyTypes": ["Ingress"], "ingress": [{"from": list(peers)}]})


EXTRA = [deployment("a", "other"), deployment("b", "server", ports=HTTP)]


def test_namespace_and_pod_selector_in_one_peer_must_both_hold():
    both = _ingress({"namespaceSelector": {"matchLabels": {"team": "b"}},
                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "client"}}})
    assert allowed([*BASE, *EXTRA, both], "b/client", "a/server", 8080)
    assert not allowed([*BASE, *EXTRA, both], "a/client", "a/server", 8080)   # right pod, wrong namespace
    assert not allowed([*BASE, *EXTRA, both], "b/server", "a/server", 8080)   # right namespace, wrong pod


def test_separate_peers_are_ored_and_a_pod_selector_alone_means_the_policys_namespace():
    either = _ingress({"namespaceSelector": {"matchLabels": {"team": "b"}}},
                      {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "client"}}})
    assert allowed([*BASE, *EXTRA, either], "b/server", "a/server", 8080)    # by namespace
    assert allowed([*BASE, *EXTRA, either], "a/client", "a/server", 8080)    # by pod, policy's namespace
    assert not allowed([*BASE, *EXTRA, either], "a/other", "a/server", 8080)


def test_every_namespace_has_its_name_label():
    by_name = _ingress({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}})
    assert allowed([*BASE, by_name], "b/client", "a/server", 8080)
    assert not allowed([*BASE, by_name], "a/client", "a/server", 8080)


def test_match_expressions():
    def expr(op: str, values: list[str] | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {"key": "team", "operator": op}
        if values is not None:
            e["values"] = values
        return _ingress({"namespaceSelector": {"matchExpressions": [e]}})

    assert allowed([*BASE, expr("In", ["b", "c"])], "b/client", "a/server", 8080)
    assert not allowed([*BASE, expr("In", ["c"])], "b/client", "a/server", 8080)
    assert not allowed([*BASE, expr("NotIn", ["b"])], "b/client", "a/server", 8080)
    assert allowed([*BASE, expr("Exists")], "b/client", "a/server", 8080)
    assert not allowed([*BASE, expr("DoesNotExist")], "b/client", "a/server", 8080)


def test_ip_block_with_except():
    out = policy("a", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]})
    assert allowed([*BASE, out], "a/client", Address("10.2.3.4", "x"), 443)
    assert not allowed([*BASE, out], "a/client", Address("10.1.2.3", "x"), 443)
    assert not allowed([*BASE, out], "a/client", Address("192.168.0.1", "x"), 443)


def test_an_ip_block_never_admits_a_needed_pod_connection_but_may_admit_a_forbidden_one():
    vpc = res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"})
    wide = _ingress({"ipBlock": {"cidr": "10.0.0.0/8"}})
    assert not allowed([*BASE, vpc, wide], "b/client", "a/server", 8080)
    assert allowed([*BASE, vpc, wide], "b/client", "a/server", 8080, lenient=True)
    carved = _ingress({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/16"]}})
    assert not allowed([*BASE, vpc, carved], "b/client", "a/server", 8080, lenient=True)


# --- ports -----------------------------------------------------------------------------------------------------

def _ports(*ports: dict[str, Any]) -> dict[str, Any]:
    return policy("a", "in", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": list(ports)}]})


def test_named_ports_resolve_against_the_destination_pods_container_ports():
    named = _ports({"port": "http"})
    assert allowed([*BASE, named], "b/client", "a/server", 8080)
    assert not allowed([*BASE, named], "b/client", "a/server", 9090)
    assert not allowed([*BASE, named], "b/client", "a/client", 8080)   # no port named http there


def test_a_named_egress_port_resolves_against_the_destination():
    out = policy("b", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})
    assert allowed([*BASE, out], "b/client", "a/server", 8080)
    assert not allowed([*BASE, out], "b/client", "a/client", 8080)
    assert not allowed([*BASE, out], "b/client", Address("10.0.0.1", "x"), 8080)


def test_protocol_defaults_to_tcp_and_end_port_is_a_range():
    dns = _ports({"port": 53})
    assert allowed([*BASE, dns], "b/client", "a/server", 53)
    assert not allowed([*BASE, dns], "b/client", "a/server", 53, "UDP")
    span = _ports({"protocol": "TCP", "port": 32000, "endPort": 32768})
    assert allowed([*BASE, span], "b/client", "a/server", 32768)
    assert not allowed([*BASE, span], "b/client", "a/server", 32769)


# --- refusing what it cannot judge -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}], "extra": 1}]},
    {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
    {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
    {"ingress": []},
    {"podSelector": {"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]}},
    {"podSelector": {"matchLabels": {"pod-template-hash": "abc"}}},
    {"podSelector": {"matchLabels": {"app": "[unknown]"}}},
])
def test_what_it_does_not_implement_raises(spec):
    with pytest.raises(Unsupported):
        problems(plan(*BASE, policy("a", "odd", spec)))


def test_host_network_pods_raise():
    host = deployment("a", "host")
    host["inputs"]["spec"]["template"]["spec"]["hostNetwork"] = True
    with pytest.raises(Unsupported):
        model(plan(*BASE, host))


# --- pods the plan implies -------------------------------------------------------------------------------------

def test_indexed_job_pods_carry_their_index_and_job_name():
    cron = res("kubernetes:batch/v1:CronJob", "train", {"metadata": {"name": "train", "namespace": "a"}, "spec": {
        "jobTemplate": {"spec": {"completionMode": "Indexed", "completions": 2, "parallelism": 2, "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "train"}},
            "spec": {"containers": [{"name": "t", "command": ["torchrun", "--rdzv-endpoint=h:29400"]}]}}}}}})
    cluster = model(plan(*BASE, cron))
    pods = [p for p in cluster.pods if p.owner.startswith("CronJob")]
    assert [p.labels["batch.kubernetes.io/job-completion-index"] for p in pods] == ["0", "1"]
    assert {p.labels["batch.kubernetes.io/job-name"] for p in pods} == {"train-<run>"}
    peer_flows = [f for f in netpol.flows(plan(*BASE, cron), cluster) if f.why == "torchrun rendezvous"]
    assert len(peer_flows) == 2 and {f.port for f in peer_flows} == {29400}


# --- flows on a miniature platform ------------------------------------------------------------------------------

def _mini() -> list[dict[str, Any]]:
    team = {"mlplatform.io/team": "a"}
    return [
        namespace("team-a", **team), namespace("team-b", **{"mlplatform.io/team": "b"}), namespace("mlflow"),
        namespace("monitoring"),
        deployment("team-a", "model", {"app.kubernetes.io/name": "model", "app.kubernetes.io/component": "serving"},
                   ports=HTTP),
        deployment("team-a", "drift"), deployment("team-b", "drift"),
        deployment("mlflow", "mlflow", ports=[{"name": "http", "containerPort": 5000}]),
        res(netpol.HELM_RELEASE, "prom", {"chart": "kube-prometheus-stack", "namespace": "monitoring", "values": {}}),
        res(netpol.POD_MONITOR, "pm", {"metadata": {"name": "model", "namespace": "team-a"}, "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "model"}},
            "podMetricsEndpoints": [{"port": "http"}]}}),
        *[policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
          for ns in ("team-a", "team-b")],
        *[policy(ns, "platform-egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": {}}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}}}],
             "ports": [{"port": 5000}]}]}) for ns in ("team-a", "team-b")],
        policy("team-a", "model", {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "model"}},
                                   "policyTypes": ["Ingress"], "ingress": [{"from": [
                                       {"podSelector": {}},
                                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                              "monitoring"}}}],
                                       "ports": [{"port": 8080}]}]}),
    ]


def test_a_miniature_platform_passes():
    assert problems(plan(*_mini())) == []


def _edit(resources: list[dict[str, Any]], name: str, change) -> list[dict[str, Any]]:
    resources = copy.deepcopy(resources)
    change(next(r for r in resources if r["name"] == name)["inputs"]["spec"])
    return resources


def test_a_lost_dns_rule_is_reported_per_pod_with_the_policy_to_fix():
    found = problems(plan(*_edit(_mini(), "team-b-platform-egress", lambda s: s["egress"].pop(1))))
    assert found == [f"Deployment team-b/drift -> Deployment kube-system/coredns (EKS add-on) 53/{p} (DNS): egress "
                     "closed: no rule of NetworkPolicy team-b/platform-egress (resource team-b-platform-egress) admits "
                     "it" for p in ("TCP", "UDP")]


def test_a_serving_policy_open_to_every_namespace_is_reported():
    def open_up(spec):
        spec["ingress"][0]["from"].append({"namespaceSelector": {}})
    resources = _edit(_mini(), "team-a-model", open_up)
    # team-b's egress still stops it: the referee reports it only when both ends let it through.
    assert problems(plan(*resources)) == []
    resources = _edit(resources, "team-b-platform-egress", lambda s: s["egress"].append({"ports": [{"port": 8080}]}))
    (found,) = problems(plan(*resources))
    assert found.startswith("Deployment team-b/drift -> Deployment team-a/model 8080/TCP (another team's model) must "
                            "be refused but is admitted")


def test_a_scrape_the_serving_policy_refuses_is_reported():
    resources = _edit(_mini(), "team-a-model", lambda s: s["ingress"][0]["from"].pop(1))
    (found,) = problems(plan(*resources))
    assert found.startswith("Prometheus monitoring (release prom) -> Deployment team-a/model 8080/TCP (scrape for "
                            "PodMonitor team-a/model): ingress closed: no rule of NetworkPolicy team-a/model")


def test_a_monitor_that_selects_nothing_is_reported():
    resources = copy.deepcopy(_mini())
    next(r for r in resources if r["name"] == "pm")["inputs"]["spec"]["podMetricsEndpoints"][0]["port"] = "metrics"
    assert problems(plan(*resources)) == ["PodMonitor team-a/model selects no pod with its endpoint port: Prometheus "
                                          "has nothing to scrape"]


def _strimzi(peers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    listener: dict[str, Any] = {"name": "tls", "port": 9093, "type": "internal", "tls": True}
    if peers is not None:
        listener["networkPolicyPeers"] = peers
    return [namespace("kafka"),
            res(netpol.KAFKA, "kafka", {"metadata": {"name": "platform", "namespace": "kafka"}, "spec": {
                "kafka": {"listeners": [listener], "metricsConfig": {"type": "jmxPrometheusExporter"}}}}),
            res(netpol.KAFKA_NODE_POOL, "pool", {"metadata": {"name": "dual-role", "namespace": "kafka",
                                                              "labels": {"strimzi.io/cluster": "platform"}},
                                                 "spec": {"replicas": 1, "roles": ["controller", "broker"]}})]


def test_strimzis_generated_listener_policy_admits_everyone_unless_peers_are_set():
    resources = _mini()
    kafka_rule = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}],
                  "ports": [{"port": 9093}]}
    for team in ("team-a", "team-b"):
        resources = _edit(resources, f"{team}-platform-egress", lambda s: s["egress"].append(kafka_rule))
    assert problems(plan(*resources, *_strimzi())) == []
    assert problems(plan(*_mini(), *_strimzi()))   # the miniature's own egress has no Kafka rule
    only_team_a = [{"namespaceSelector": {"matchLabels": {"mlplatform.io/team": "a"}}}]
    assert problems(plan(*resources, *_strimzi(only_team_a))) == [
        "Deployment team-b/drift -> KafkaNodePool kafka/dual-role[0] (broker) 9093/TCP (Kafka): ingress closed: no "
        "rule of NetworkPolicy kafka/platform-network-policy-kafka (generated by the Strimzi operator from Kafka "
        "platform) admits it"]


def test_a_service_monitor_resolves_through_the_services_target_port():
    svc = res(netpol.SERVICE, "svc", {"metadata": {"name": "model", "namespace": "team-a",
                                                   "labels": {"app.kubernetes.io/name": "model"}},
                                      "spec": {"selector": {"app.kubernetes.io/name": "model"},
                                               "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    monitor = res(netpol.SERVICE_MONITOR, "sm", {"metadata": {"name": "model", "namespace": "team-a"}, "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "model"}}, "endpoints": [{"port": "web"}]}})
    cluster = model(plan(*_mini(), svc, monitor))
    assert [(m, t.owner, port) for m, t, port in netpol.monitor_targets(plan(*_mini(), svc, monitor), cluster)
            if m.startswith("Service")] == [("ServiceMonitor team-a/model", "Deployment team-a/model", 8080)]
    monitor["inputs"]["spec"]["endpoints"][0]["port"] = "http"   # a container port name, not the Service's
    assert "ServiceMonitor team-a/model selects no pod with its endpoint port: Prometheus has nothing to scrape" in \
        problems(plan(*_mini(), svc, monitor))


def test_pods_with_pod_identity_must_reach_the_agent_and_aws():
    association = res(netpol.POD_IDENTITY, "pia", {"namespace": "team-a", "serviceAccount": "default"})
    found = problems(plan(*_mini(), association))
    assert sorted(found) == found and len(found) == 4
    assert all(f.startswith("Deployment team-a/") and "egress closed" in f for f in found)
    assert {f.split(" (")[1].split(")")[0] for f in found} == {"169.254.170.23", "203.0.113.10"}
    resources = _edit(_mini(), "team-a-platform-egress", lambda s: s["egress"].extend([
        {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"port": 80}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}]))
    assert problems(plan(*resources, association)) == []


# --- the real stacks -------------------------------------------------------------------------------------------

def _stack(stack: str) -> Plan:
    from tests.conftest import stack_plan
    return stack_plan(stack)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stacks_policies_admit_what_the_platform_needs(stack):
    assert problems(_stack(stack)) == []


def _real_edit(stack: str, type_: str, name: str, change) -> Plan:
    base = _stack(stack)
    resources = copy.deepcopy(base.resources)
    change(next(r for r in resources if r["type"] == type_ and r["name"] == name)["inputs"]["spec"])
    return Plan(stack=base.stack, project=base.project, resources=resources, outputs=base.outputs)


def _new_problems(stack: str, edited: Plan) -> list[str]:
    before = set(problems(_stack(stack)))
    return [p for p in problems(edited) if p not in before]


def test_mlflow_ingress_without_the_team_namespaces_is_reported():
    def drop_teams(spec):
        # A rule left with no peers would admit everyone: it goes too.
        kept = []
        for rule in spec["ingress"]:
            peers = [p for p in rule.get("from") or [] if "mlplatform.io/team" not in str(p) and "team-" not in str(p)]
            if peers or not rule.get("from"):
                kept.append({**rule, "from": peers} if peers else rule)
        spec["ingress"] = kept
    found = [p for p in problems(_real_edit("dev", POLICY, "mlflow-ingress", drop_teams)) if "(MLflow tracking)" in p]
    teams = {r["inputs"]["metadata"]["name"] for r in _stack("dev").of_type(netpol.NAMESPACE)
             if "mlplatform.io/team" in (r["inputs"]["metadata"].get("labels") or {})}
    assert found and all("(MLflow tracking): ingress closed: no rule of NetworkPolicy mlflow/mlflow (resource "
                         "mlflow-ingress) admits it" in p for p in found)
    assert {p.split("/")[0].split()[-1] for p in found} == teams


def test_a_team_egress_without_its_dns_rule_is_reported():
    base = _stack("dev")
    egress = next(r for r in base.of_type(POLICY) if r["inputs"]["metadata"]["name"] == "platform-egress")
    ns = egress["inputs"]["metadata"]["namespace"]

    def drop_dns(spec):
        spec["egress"] = [rule for rule in spec["egress"] if "kube-dns" not in str(rule)]
    # Only what the defect adds: the stack's own verdict is test_every_stacks_policies_admit_what_the_platform_needs.
    found = _new_problems("dev", _real_edit("dev", POLICY, egress["name"], drop_dns))
    assert found and all(f" (DNS): egress closed: no rule of NetworkPolicy {ns}/platform-egress" in p for p in found)
    assert {p.split(" -> ")[0].split()[1].split("/")[0] for p in found} == {ns}
    assert {p.split(" (DNS)")[0].rsplit(" ", 1)[-1] for p in found} == {"53/UDP", "53/TCP"}
