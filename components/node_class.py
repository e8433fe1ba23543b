"""What every Karpenter pool's nodes share: the EC2NodeClass (AMI, subnets, security group, IMDS, root volume) and
the node lifetime.

AMIs: the alias pins one EKS-optimized AL2023 release (platform_config/versions.py AL2023_AMI_ALIAS); Karpenter
picks the variant per instance type (NVIDIA for GPU types) and the build for the control plane's Kubernetes minor,
so a cluster upgrade drifts nodes onto the same release for the new minor. Nodes pick up a patched AMI only when the
pin is bumped (drift then replaces them, within the pools' disruption budgets), not by expiring: a pinned alias
resolves to the same image every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.launch_template import IMDS_HOP_LIMIT, ROOT_DEVICE
from platform_config.versions import AL2023_AMI_ALIAS

# Nodes are replaced after 30 days at most: no node outlives a month of kubelet and containerd state. Long training
# runs opt out per pod with the karpenter.sh/do-not-disrupt annotation.
NODE_EXPIRY = "720h"


@dataclass(frozen=True, kw_only=True)
class KarpenterPoolArgs:
    """What every Karpenter pool component needs besides its own config."""
    cluster_name: str
    """Plain text: the subnet discovery tag value, not a call to the cluster."""
    node_role_name: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    k8s_provider: k8s.Provider
    depends_on: Sequence[pulumi.Resource] = ()
    """The Karpenter CRDs and controller."""


def node_class_spec(*, role: pulumi.Input[str], cluster_name: str, security_group_id: pulumi.Input[str],
                    disk_size_gib: int, tags: dict[str, str], user_data: str | None = None) -> dict[str, Any]:
    """`user_data`: a boot step for this class's nodes. Karpenter merges it with its own NodeConfig, which wins on
    cluster, kubelet, labels and taints, so it can only add to the boot (nodeclasses.md at v1.14.1, spec.userData);
    changing it drifts the class's nodes onto new instances."""
    spec: dict[str, Any] = {
        "role": role,
        "amiSelectorTerms": [{"alias": AL2023_AMI_ALIAS}],
        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster_name}}],
        "securityGroupSelectorTerms": [{"id": security_group_id}],
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required",
                            "httpPutResponseHopLimit": IMDS_HOP_LIMIT, "httpProtocolIPv6": "disabled"},
        "blockDeviceMappings": [{"deviceName": ROOT_DEVICE, "rootVolume": True, "ebs": {
            "volumeSize": f"{disk_size_gib}Gi", "volumeType": "gp3", "encrypted": True,
            "deleteOnTermination": True}}],
        "tags": tags,
    }
    if user_data is not None:
        spec["userData"] = user_data
    return spec


def base_requirements(instance_types: list[str], capacity_types: list[str]) -> list[dict[str, Any]]:
    return [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": instance_types},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity_types},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
