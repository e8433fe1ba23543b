"""EKS managed add-ons at pinned versions, with their own workload identities where they call AWS.

Split in two phases because of a real ordering constraint: nodes cannot become Ready without the VPC CNI and
kube-proxy, while CoreDNS and the EBS CSI controller cannot become healthy without nodes to run on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.iam import managed_policy
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs

BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
# The VPC CNI enforces Kubernetes NetworkPolicies only when asked to; the platform's policies (MLflow) need it.
ADDON_CONFIGURATION = {"vpc-cni": json.dumps({"enableNetworkPolicy": "true"})}
AFTER_NODES = ("coredns", "aws-ebs-csi-driver")

# Add-ons that call AWS, with the service account the add-on runs as and the AWS-managed policy scoped to its job.
ADDON_IDENTITIES = {
    "vpc-cni": ("aws-node", "AmazonEKS_CNI_Policy"),
    "aws-ebs-csi-driver": ("ebs-csi-controller-sa", "service-role/AmazonEBSCSIDriverPolicy"),
}


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    cluster_name: pulumi.Input[str]
    versions: Mapping[str, str]
    identity: Mapping[str, object]
    """Keyword arguments every WorkloadIdentityArgs needs (mode, OIDC provider, account)."""


class ClusterAddons(pulumi.ComponentResource):
    """Call `install(phase, depends_on)` once with BEFORE_NODES and once with AFTER_NODES."""

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:ClusterAddons", name, None, opts)
        self._name = name
        self._args = args
        self.addons: dict[str, aws.eks.Addon] = {}

    def install(self, phase: tuple[str, ...], depends_on: list[pulumi.Resource]) -> list[aws.eks.Addon]:
        installed = []
        for addon in phase:
            role_arn = None
            after = list(depends_on)
            if addon in ADDON_IDENTITIES:
                service_account, policy = ADDON_IDENTITIES[addon]
                identity = WorkloadIdentity(f"{self._name}-{addon}", WorkloadIdentityArgs(
                    cluster_name=self._args.cluster_name, namespace="kube-system", service_account=service_account,
                    managed_policy_arns=[managed_policy(policy)], **self._args.identity),
                    opts=pulumi.ResourceOptions(parent=self))
                after.append(identity)
                if self._args.identity.get("mode") == "irsa":
                    role_arn = identity.role_arn
            self.addons[addon] = aws.eks.Addon(
                f"{self._name}-{addon}",
                cluster_name=self._args.cluster_name,
                addon_name=addon,
                addon_version=self._args.versions[addon],
                service_account_role_arn=role_arn,
                configuration_values=ADDON_CONFIGURATION.get(addon),
                # Overwrite on create adopts what EKS may have pre-installed; preserve on update keeps local edits.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )
            installed.append(self.addons[addon])
        return installed

    def default_storage_class(self, provider: k8s.Provider) -> k8s.storage.v1.StorageClass:
        """Encrypted gp3 as the default class, bound in the zone where the pod lands (zonal EBS volumes)."""
        return k8s.storage.v1.StorageClass(
            f"{self._name}-gp3",
            metadata={"name": "gp3-encrypted", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.addons["aws-ebs-csi-driver"]]),
        )

    def finish(self) -> None:
        self.register_outputs({"addons": {k: v.addon_version for k, v in self.addons.items()}})
