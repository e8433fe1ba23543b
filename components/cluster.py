"""The EKS control plane built from pulumi_aws resources, its kubeconfig, and the Kubernetes provider built from it.

Deliberately not pulumi-eks: that component registers as one opaque remote resource, so nothing inside it could be
planned, tested or policy-checked offline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.iam import managed_policy, service_trust_policy
from components.team import team_group
from platform_config import ClusterConfig
from platform_config.teams_model import TeamConfig

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Read-only on every object, Secrets included: a preview must read what it would change.
CLUSTER_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"
# Edit on most namespaced objects (pods, jobs, deployments, secrets; quotas and limit ranges read-only), scoped to
# the team's namespaces (EKS user guide, access-policy-reference.adoc).
TEAM_MEMBER_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    config: ClusterConfig
    region: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets for the control plane's network interfaces."""
    network_ready: Sequence[pulumi.Resource] = ()
    """Routes back to `deployerCidrs` (Transit Gateway): the Kubernetes provider is used only after they exist."""
    teams: Sequence[TeamConfig] = ()
    """Each team's members get edit in the team's namespace and its Kubernetes group (for the queue RoleBinding)."""


def member_access(teams: Sequence[TeamConfig]) -> dict[str, list[TeamConfig]]:
    """Principal -> the teams it belongs to: EKS allows one access entry per principal, so a person in two teams
    gets one entry with both namespaces."""
    access: dict[str, list[TeamConfig]] = {}
    for team in teams:
        for arn in team.members:
            access.setdefault(arn, []).append(team)
    return access


def deployer_principal(opts: pulumi.InvokeOptions | None = None) -> str:
    """The IAM principal behind the caller's credentials: an assumed role's session resolves to the role's ARN (with
    its path), which is what an access entry must name."""
    caller = aws.get_caller_identity(opts=opts)
    return aws.iam.get_session_context(arn=caller.arn, opts=opts).issuer_arn


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


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
        # The networks `pulumi up` runs from reach the private endpoint through this group, attached to the
        # control plane's network interfaces only (not to nodes, as the cluster security group is).
        api_access = aws.ec2.SecurityGroup(f"{name}-api-deployers", vpc_id=args.vpc_id,
                                           description=f"{cfg.name} API server: deployer networks on 443",
                                           opts=child)
        deployer_rules = [
            aws.vpc.SecurityGroupIngressRule(f"{name}-api-from-{cidr.replace('/', '-')}",
                                             security_group_id=api_access.id, ip_protocol="tcp", from_port=443,
                                             to_port=443, cidr_ipv4=cidr, description="pulumi up / preview",
                                             opts=child)
            for cidr in cfg.deployer_cidrs]

        cluster = aws.eks.Cluster(
            name,
            name=cfg.name,
            version=cfg.version,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": list(args.subnet_ids),
                "security_group_ids": [api_access.id],
                "endpoint_private_access": True,
                "endpoint_public_access": cfg.endpoint_public_access,
                **({"public_access_cidrs": cfg.public_access_cidrs} if cfg.endpoint_public_access else {}),
            },
            # No bootstrap entry: it would follow whoever created the cluster and collide (409) with an explicit entry
            # for the same role; the deploy role is one of `clusterAdmins`.
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False},
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            # Add-ons are managed (and pinned) by ClusterAddons; EKS's unmanaged copies would fight them.
            bootstrap_self_managed_addons=False,
            # STANDARD avoids extended-support charges, but at the end of standard support EKS upgrades the control
            # plane itself, past the pinned version and add-ons; bump clusterVersion before that date (the program
            # warns ahead of it, platform_config/versions.py EKS_END_OF_STANDARD_SUPPORT).
            upgrade_policy={"support_type": "STANDARD"},
            deletion_protection=cfg.deletion_protection,
            # With EKS deletion protection on, `pulumi destroy` would remove everything else first and only then
            # fail on the cluster; protecting it makes the destroy refuse up front instead.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs], protect=cfg.deletion_protection),
        )

        access_policies = []
        for arn, policy in [*((a, CLUSTER_ADMIN_POLICY) for a in cfg.admin_arns),
                            *((v, CLUSTER_VIEW_POLICY) for v in cfg.viewer_arns)]:
            # Named by the principal, so reordering the lists never replaces an entry (EKS refuses a second one).
            entry = aws.eks.AccessEntry(f"{name}-access-{_short(arn)}", cluster_name=cluster.name, principal_arn=arn,
                                        type="STANDARD", opts=child)
            access_policies.append(aws.eks.AccessPolicyAssociation(
                f"{name}-access-{_short(arn)}", cluster_name=cluster.name, principal_arn=arn, policy_arn=policy,
                access_scope={"type": "cluster"}, opts=pulumi.ResourceOptions(parent=self, depends_on=[entry])))
        for arn, teams in member_access(args.teams).items():
            entry = aws.eks.AccessEntry(f"{name}-access-{_short(arn)}", cluster_name=cluster.name, principal_arn=arn,
                                        type="STANDARD", kubernetes_groups=[team_group(t) for t in teams], opts=child)
            # Not among the provider's dependencies: the deploy never acts as a team member.
            aws.eks.AccessPolicyAssociation(
                f"{name}-access-{_short(arn)}", cluster_name=cluster.name, principal_arn=arn,
                policy_arn=TEAM_MEMBER_POLICY,
                access_scope={"type": "namespace", "namespaces": [t.namespace for t in teams]},
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
        # Every Kubernetes call waits for the access entries (the deploy role's among them), the security-group rules
        # that admit the deployer networks, and the routes back to them.
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=pulumi.ResourceOptions(
            parent=self, depends_on=[*access_policies, *deployer_rules, *args.network_ready]))

        self.name = cluster.name
        self.arn = cluster.arn
        self.endpoint = cluster.endpoint
        self.security_group_id = cluster.vpc_config.cluster_security_group_id
        self.register_outputs({"name": self.name, "arn": self.arn, "endpoint": self.endpoint,
                               "kubeconfig": self.kubeconfig})
