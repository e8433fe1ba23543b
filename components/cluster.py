"""The EKS control plane built from pulumi_aws resources, its kubeconfig, and the Kubernetes provider built from it.

Deliberately not pulumi-eks: that component registers as one opaque remote resource, so nothing inside it could be
planned, tested or policy-checked offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.iam import managed_policy, service_trust_policy
from platform_config import ClusterConfig

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    config: ClusterConfig
    region: str
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets for the control plane's network interfaces."""


def build_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token`, so it holds no credential of its own."""
    user = f"{cluster_name}-aws"
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
        "users": [{"name": user, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["--region", region, "eks", "get-token", "--cluster-name", cluster_name, "--output", "json"],
            "interactiveMode": "Never",
        }}}],
    }, indent=2)


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str] | None
    oidc_issuer: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:Cluster", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(f"{name}-control-plane", assume_role_policy=service_trust_policy("eks.amazonaws.com"),
                            opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-control-plane", role=role.name,
                                     policy_arn=managed_policy("AmazonEKSClusterPolicy"), opts=child)
        secrets_key = aws.kms.Key(f"{name}-secrets", description=f"{cfg.name} Kubernetes secrets envelope encryption",
                                  enable_key_rotation=True, opts=child)
        # Declared before the cluster so EKS writes into a group with a retention period instead of one kept forever.
        logs = aws.cloudwatch.LogGroup(f"{name}-control-plane", name=f"/aws/eks/{cfg.name}/cluster",
                                       retention_in_days=cfg.log_retention_days, opts=child)

        cluster = aws.eks.Cluster(
            name,
            name=cfg.name,
            version=cfg.version,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": list(args.subnet_ids),
                "endpoint_private_access": True,
                "endpoint_public_access": cfg.endpoint_public_access,
                **({"public_access_cidrs": cfg.public_access_cidrs} if cfg.endpoint_public_access else {}),
            },
            access_config={"authentication_mode": "API",
                           "bootstrap_cluster_creator_admin_permissions": cfg.bootstrap_creator_admin},
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            # Add-ons are managed (and pinned) by ClusterAddons; EKS's unmanaged copies would fight them.
            bootstrap_self_managed_addons=False,
            # STANDARD makes an out-of-support version fail loudly instead of silently billing extended support.
            upgrade_policy={"support_type": "STANDARD"},
            deletion_protection=cfg.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
        )

        for i, arn in enumerate(cfg.admin_arns):
            entry = aws.eks.AccessEntry(f"{name}-admin-{i}", cluster_name=cluster.name, principal_arn=arn,
                                        type="STANDARD", opts=child)
            aws.eks.AccessPolicyAssociation(f"{name}-admin-{i}", cluster_name=cluster.name, principal_arn=arn,
                                            policy_arn=CLUSTER_ADMIN_POLICY, access_scope={"type": "cluster"},
                                            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))

        self.oidc_issuer = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        self.oidc_provider_arn = None
        if cfg.workload_identity == "irsa":
            oidc = aws.iam.OpenIdConnectProvider(f"{name}-oidc", url=self.oidc_issuer,
                                                 client_id_lists=["sts.amazonaws.com"], opts=child)
            self.oidc_provider_arn = oidc.arn

        ca = cluster.certificate_authority.apply(lambda c: c.data)
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(cluster.name, cluster.endpoint, ca).apply(
            lambda a: build_kubeconfig(a[0], a[1], a[2], args.region)))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)

        self.name = cluster.name
        self.arn = cluster.arn
        self.endpoint = cluster.endpoint
        self.security_group_id = cluster.vpc_config.cluster_security_group_id
        self.register_outputs({"name": self.name, "arn": self.arn, "endpoint": self.endpoint,
                               "kubeconfig": self.kubeconfig})
