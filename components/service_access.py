"""Building blocks for managed services the cluster talks to (RDS, MSK): a KMS key and a cluster-only port."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def service_key(name: str, description: str, protect: bool, parent: pulumi.Resource,
                retain: bool | None = None) -> aws.kms.Key:
    """A rotating customer-managed key; protected with the data it encrypts, and retained on destroy whenever that
    data (or a snapshot of it) outlives the stack (`retain`, default: when protected)."""
    return aws.kms.Key(f"{name}-key", description=description, enable_key_rotation=True, deletion_window_in_days=30,
                       opts=pulumi.ResourceOptions(parent=parent, protect=protect,
                                                   retain_on_delete=protect if retain is None else retain))


def cluster_only_port(name: str, *, vpc_id: pulumi.Input[str], port: int, cluster_security_group_id: pulumi.Input[str],
                      what: str, parent: pulumi.Resource, to_port: int | None = None) -> aws.ec2.SecurityGroup:
    """A security group admitting `port` (to `to_port`) from the cluster's nodes only (managed and Karpenter nodes
    share the cluster security group)."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=vpc_id, description=f"{what}: cluster only", opts=child)
    allow_from_cluster(name, group, port, to_port or port, cluster_security_group_id, what, parent)
    return group


def allow_from_cluster(name: str, group: aws.ec2.SecurityGroup, port: int, to_port: int,
                       cluster_security_group_id: pulumi.Input[str], what: str, parent: pulumi.Resource) -> None:
    aws.vpc.SecurityGroupIngressRule(f"{name}-from-cluster", security_group_id=group.id, ip_protocol="tcp",
                                     from_port=port, to_port=to_port,
                                     referenced_security_group_id=cluster_security_group_id,
                                     description=f"{what} from cluster nodes", opts=pulumi.ResourceOptions(parent=parent))
