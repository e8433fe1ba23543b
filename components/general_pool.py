"""The general-purpose Karpenter pool: untainted CPU nodes for platform services and CPU workloads.

The system node group is fixed in size and keeps what must not move (Karpenter itself and metrics-server select
it); everything else (MLflow, Kafka, Prometheus, serving, ingestion, CoreDNS) schedules onto whichever untainted node
has room, and
Karpenter adds nodes here when none has, up to the pool's CPU and memory limits. Karpenter launches in the zone a
pending pod needs, so a broker or database whose EBS volume lives in one zone always gets a node there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.node_class import NODE_EXPIRY, KarpenterPoolArgs, base_requirements, node_class_spec
from platform_config import GeneralPoolConfig

NAME = "general"
POOL_LABEL = {"mlplatform.io/pool": NAME}


@dataclass(frozen=True, kw_only=True)
class GeneralPoolArgs(KarpenterPoolArgs):
    config: GeneralPoolConfig


def node_pool_spec(cfg: GeneralPoolConfig) -> dict:
    return {
        "template": {
            "metadata": {"labels": POOL_LABEL},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": NAME},
                "requirements": base_requirements(cfg.instance_types, cfg.capacity_types),
                "expireAfter": NODE_EXPIRY,
            },
        },
        # Karpenter counts node capacity against these, so they bound what the pool can ever cost.
        "limits": {"cpu": str(cfg.max_cpu), "memory": f"{cfg.max_memory_gib}Gi"},
        # Stateful services (brokers, databases) sit here: one node at a time, and their PodDisruptionBudgets hold.
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": cfg.consolidate_after,
                       "budgets": [{"nodes": "1"}]},
    }


class GeneralPool(pulumi.ComponentResource):
    node_pool: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: GeneralPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:GeneralPool", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        node_class = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": NAME, "labels": POOL_LABEL}, spec=node_class_spec(
                role=args.node_role_name, cluster_name=args.cluster_name,
                security_group_id=args.cluster_security_group_id, disk_size_gib=args.config.disk_size_gib,
                tags=POOL_LABEL), opts=k8s_opts)
        self.node_pool = k8s.apiextensions.CustomResource(
            f"{name}-nodepool", api_version="karpenter.sh/v1", kind="NodePool",
            metadata={"name": NAME, "labels": POOL_LABEL}, spec=node_pool_spec(args.config),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, node_class]))
        self.register_outputs({"node_pool": NAME, "max_cpu": args.config.max_cpu,
                               "max_memory_gib": args.config.max_memory_gib})
