"""On-demand managed node group for the add-ons and controllers every other node depends on (CoreDNS, Karpenter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws

from components.iam import managed_policy, service_trust_policy
from components.launch_template import IMDS_HOP_LIMIT, ROOT_DEVICE
from platform_config import NodeGroupConfig

NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonSSMManagedInstanceCore")
SYSTEM_POOL_LABEL = {"mlplatform.io/pool": "system"}


def node_role(name: str, parent: pulumi.Resource) -> aws.iam.Role:
    """A node role with only what the kubelet needs: no CNI rights (the VPC CNI has its own identity), no S3."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=service_trust_policy("ec2.amazonaws.com"), opts=child)
    for policy in NODE_POLICIES:
        aws.iam.RolePolicyAttachment(f"{name}-{policy}", role=role.name, policy_arn=managed_policy(policy), opts=child)
    return role


@dataclass(frozen=True, kw_only=True)
class SystemNodesArgs:
    config: NodeGroupConfig
    cluster_name: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    depends_on: Sequence[pulumi.Resource] = ()
    """Add-ons that must exist before nodes join (VPC CNI, kube-proxy, Pod Identity agent)."""


class SystemNodes(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: SystemNodesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:SystemNodes", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        role = node_role(f"{name}-node", self)
        template = aws.ec2.LaunchTemplate(
            name,
            description="system nodes: IMDSv2 only, encrypted gp3 root volume",
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": IMDS_HOP_LIMIT, "instance_metadata_tags": "disabled"},
            block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": {
                "volume_size": cfg.disk_size_gib, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true"}}],
            tag_specifications=[{"resource_type": kind, "tags": {"Name": f"{name}-system"}}
                                for kind in ("instance", "volume")],
            update_default_version=True,
            opts=child,
        )
        group = aws.eks.NodeGroup(
            name,
            cluster_name=args.cluster_name,
            node_role_arn=role.arn,
            subnet_ids=list(args.subnet_ids),
            capacity_type="ON_DEMAND",
            ami_type="AL2023_x86_64_STANDARD",
            instance_types=cfg.instance_types,
            scaling_config={"min_size": cfg.min_size, "desired_size": cfg.desired_size, "max_size": cfg.max_size},
            update_config={"max_unavailable": 1},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels=SYSTEM_POOL_LABEL,
            # Size changes made by operators or autoscalers are not drift to revert on the next `pulumi up`.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on),
                                        ignore_changes=["scalingConfig.desiredSize"]),
        )
        self.node_group_name = group.node_group_name
        self.role_arn = role.arn
        self.register_outputs({"node_group_name": self.node_group_name})
