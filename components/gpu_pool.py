"""A GPU node pool as a Karpenter NodePool + EC2NodeClass: empty until a pod asks for `nvidia.com/gpu`.

Nodes boot the EKS-optimized AL2023 NVIDIA AMI (driver and container toolkit included), carry the `nvidia.com/gpu`
NoSchedule taint so only pods that tolerate it land there, and are removed once empty for `consolidateAfter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.node_class import NODE_EXPIRY, KarpenterPoolArgs, base_requirements, node_class_spec
from platform_config import GpuPoolConfig

GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "mlplatform.io/gpu-pool"


@dataclass(frozen=True, kw_only=True)
class GpuPoolArgs(KarpenterPoolArgs):
    config: GpuPoolConfig


def gpu_node_class_spec(args: GpuPoolArgs) -> dict:
    return node_class_spec(role=args.node_role_name, cluster_name=args.cluster_name,
                           security_group_id=args.cluster_security_group_id, disk_size_gib=args.config.disk_size_gib,
                           tags={POOL_LABEL: args.config.name})


def node_pool_spec(cfg: GpuPoolConfig, node_class: str) -> dict:
    return {
        "template": {
            "metadata": {"labels": {POOL_LABEL: cfg.name, GPU_PRESENT_LABEL: "true"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
                "requirements": base_requirements(cfg.instance_types, [cfg.capacity_type]),
                "taints": [GPU_TAINT],
                "expireAfter": NODE_EXPIRY,
            },
        },
        # Both bounds: `nodes` is the configured maxNodes, the GPU limit follows from the largest type's count.
        "limits": {"nodes": str(cfg.max_nodes), "nvidia.com/gpu": str(cfg.max_gpus)},
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": cfg.consolidate_after,
                       "budgets": [{"nodes": "10%"}]},
    }


class GpuPool(pulumi.ComponentResource):
    node_pool_name: str

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:GpuPool", name, None, opts)
        pool = args.config.name
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        node_class = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": pool, "labels": {POOL_LABEL: pool}}, spec=gpu_node_class_spec(args), opts=k8s_opts)
        k8s.apiextensions.CustomResource(
            f"{name}-nodepool", api_version="karpenter.sh/v1", kind="NodePool",
            metadata={"name": pool, "labels": {POOL_LABEL: pool}}, spec=node_pool_spec(args.config, pool),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, node_class]))
        self.node_pool_name = pool
        self.register_outputs({"node_pool": pool, "max_nodes": args.config.max_nodes,
                               "max_gpus": args.config.max_gpus})
