"""A team's home on the shared cluster: its namespace, the ceiling on what it may hold there, and its network fence.

What a team's people may do comes from three places: EKS access entries (components/cluster.py) give them edit in
this namespace and nothing else; the RoleBinding here lets them see and use their Kueue queue; the quota here bounds
what they can take without going through the queue. Their data boundary (lake prefix, topics, MLflow models) is
enforced by each workload's IAM role, Kafka grant and MLflow user, not by the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.kafka_msk import IAM_PORT as MSK_IAM_PORT
from components.kafka_strimzi import TLS_PORT as STRIMZI_TLS_PORT
from components.namespace import PlatformNamespace, PlatformNamespaceArgs
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.instance_catalog import allocatable
from platform_config.model import GeneralPoolConfig, GpuPoolConfig
from platform_config.teams_model import ModelConfig, TeamConfig

TEAM_LABEL = "mlplatform.io/team"
# The EKS Pod Identity agent listens on this link-local address on every node; without it no pod gets credentials.
POD_IDENTITY_AGENT = "169.254.170.23/32"
POD_IDENTITY_AGENT_PORT = 80
MLFLOW_NAMESPACE = "mlflow"
MLFLOW_PORT = 5000
KAFKA_NAMESPACE = "kafka"
# What a team's workloads hold outside the queue besides serving: its ingestion consumers and one drift monitor per
# model (the requests those components declare).
INGESTION_POD = (500, 1024)
DRIFT_POD = (500, 2048)


def team_group(team: TeamConfig) -> str:
    """The Kubernetes group a team's people are in (their access entries carry it; RoleBindings name it)."""
    return f"mlplatform:team:{team.name}"


def gpu_unit_share(pool: GpuPoolConfig) -> tuple[int, int]:
    """(millicores, MiB) that come with one GPU unit of a pool: the largest per-unit share of any of its instance
    types, so a job admitted for its GPUs is never refused for the CPU and memory sized from them."""
    shares = []
    for t in pool.instance_types:
        cpu_m, memory_mib = allocatable(t)
        units = GPU_INSTANCE_TYPES[t].gpus * pool.sharing.units_per_gpu
        shares.append((cpu_m // units, memory_mib // units))
    return max(c for c, _ in shares), max(m for _, m in shares)


def _ceiling(quota, limit: float) -> float:
    """What a ClusterQueue can hold of one resource: nominal plus what it may borrow, never beyond the pool."""
    if quota.borrowing_limit is None:
        return limit
    return min(limit, quota.nominal + quota.borrowing_limit)


def _quantity_cpu(millicores: float) -> str:
    return f"{int(millicores)}m"


def _quantity_memory(mib: float) -> str:
    return f"{int(mib)}Mi"


def _cpu_m(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _memory_mib(text: str) -> int:
    return int(text[:-2]) * (1024 if text.endswith("Gi") else 1)


def namespace_quota(team: TeamConfig, models: Sequence[ModelConfig], general: GeneralPoolConfig,
                    pools: Sequence[GpuPoolConfig], ingestion_replicas: int) -> dict[str, str]:
    """The ResourceQuota's hard limits: everything the team's queue could ever admit, plus its always-on workloads
    at their maximum scale. A Deployment or bare Pod that skips the queue can take no more than that."""
    cpu_m = _ceiling(team.quotas.cpu, general.max_cpu) * 1000
    memory_mib = _ceiling(team.quotas.memory_gib, general.max_memory_gib) * 1024
    gpus = 0.0
    for pool in pools:
        quota = team.quotas.gpus.get(pool.name)
        if quota is None:
            continue
        units = _ceiling(quota, pool.max_units)
        unit_cpu, unit_memory = gpu_unit_share(pool)
        gpus += units
        cpu_m += units * unit_cpu
        memory_mib += units * unit_memory
    own = [m for m in models if m.team == team.name]
    for model in own:
        cpu_m += model.serving.max_replicas * _cpu_m(model.serving.cpu) + DRIFT_POD[0]
        memory_mib += model.serving.max_replicas * _memory_mib(model.serving.memory) + DRIFT_POD[1]
        if model.serving.gpu_pool:
            gpus += model.serving.max_replicas
    cpu_m += ingestion_replicas * INGESTION_POD[0]
    memory_mib += ingestion_replicas * INGESTION_POD[1]
    return {"requests.cpu": _quantity_cpu(cpu_m), "requests.memory": _quantity_memory(memory_mib),
            "requests.nvidia.com/gpu": str(int(gpus)),
            # A team's services stay inside the cluster: no load balancer or node port can be opened to the VPC.
            "services.loadbalancers": "0", "services.nodeports": "0"}


@dataclass(frozen=True, kw_only=True)
class TeamArgs:
    config: TeamConfig
    models: Sequence[ModelConfig]
    general_pool: GeneralPoolConfig
    gpu_pools: Sequence[GpuPoolConfig]
    ingestion_replicas: int
    k8s_provider: k8s.Provider
    kafka_egress: list[dict[str, Any]]
    """NetworkPolicy egress rules that reach the Kafka brokers (in-cluster Strimzi or MSK in the VPC)."""
    queue_user_cluster_role: str
    """Kueue's ClusterRole for submitting to and reading a namespace's queues."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def egress_rules(kafka: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a team's pods may connect to: each other, DNS, MLflow, Kafka, the Pod Identity agent, and AWS APIs
    over HTTPS (S3 through the gateway endpoint has no fixed addresses a policy could list)."""
    return [
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MLFLOW_NAMESPACE}}}],
         "ports": [{"protocol": "TCP", "port": MLFLOW_PORT}]},
        *kafka,
        {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}],
         "ports": [{"protocol": "TCP", "port": POD_IDENTITY_AGENT_PORT}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
    ]


def kafka_client_egress(flavor: str, vpc_cidr: str) -> list[dict[str, Any]]:
    """Egress to the brokers: Strimzi's TLS listener in the `kafka` namespace, or MSK's IAM port in the VPC."""
    if flavor == "msk":
        return [{"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [{"protocol": "TCP", "port": MSK_IAM_PORT}]}]
    return [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": KAFKA_NAMESPACE}}}],
             "ports": [{"protocol": "TCP", "port": STRIMZI_TLS_PORT}]}]


class Team(pulumi.ComponentResource):
    namespace: PlatformNamespace
    name: str
    config: TeamConfig

    def __init__(self, name: str, args: TeamArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:teams:Team", name, None, opts)
        team = args.config
        ns = team.namespace
        self.namespace = PlatformNamespace(ns, PlatformNamespaceArgs(
            k8s_provider=args.k8s_provider, enforce="restricted", labels={TEAM_LABEL: team.name}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        inside = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[self.namespace.namespace])
        k8s.core.v1.ResourceQuota(f"{name}-quota", metadata={"name": "team", "namespace": ns}, spec={
            "hard": namespace_quota(team, args.models, args.general_pool, args.gpu_pools, args.ingestion_replicas)},
            opts=inside)
        # Default deny both ways; each workload adds who may reach it (its own ingress policy), and egress is
        # opened only to what workloads use.
        k8s.networking.v1.NetworkPolicy(f"{name}-default-deny", metadata={"name": "default-deny", "namespace": ns},
                                        spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, opts=inside)
        k8s.networking.v1.NetworkPolicy(f"{name}-egress", metadata={"name": "platform-egress", "namespace": ns},
                                        spec={"podSelector": {}, "policyTypes": ["Egress"],
                                              "egress": egress_rules(args.kafka_egress)}, opts=inside)
        k8s.rbac.v1.RoleBinding(f"{name}-queue-users", metadata={"name": "queue-users", "namespace": ns},
                                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                          "name": args.queue_user_cluster_role},
                                subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                           "name": team_group(team)}], opts=inside)
        self.name = team.name
        self.config = team
        self.register_outputs({"namespace": ns})
