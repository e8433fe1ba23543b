"""One IAM role for one Kubernetes service account, with a least-privilege inline policy.

Every workload that touches AWS gets its own `WorkloadIdentity`, bound either through EKS Pod Identity (default) or
IRSA. The trust policy admits exactly one namespace/service-account pair, so a role cannot be borrowed by another pod.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.iam import Statement, check_least_privilege, policy_document

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityArgs:
    cluster_name: pulumi.Input[str]
    namespace: str
    service_account: str
    statements: Sequence[Statement] = ()
    """Inline policy. Wildcard actions on wildcard resources are rejected before anything is declared."""
    managed_policy_arns: Sequence[str] = ()
    """AWS-managed policies scoped by AWS for one job (e.g. the EBS CSI driver's); use sparingly."""
    mode: Literal["pod-identity", "irsa"] = "pod-identity"
    oidc_provider_arn: pulumi.Input[str] | None = None
    """Required for `irsa`: the cluster's IAM OIDC provider."""
    oidc_issuer: pulumi.Input[str] | None = None
    """Required for `irsa`: the cluster's issuer URL (https://oidc.eks...)."""
    account_id: pulumi.Input[str] = ""
    """Pod Identity trust is limited to this account (confused-deputy protection)."""
    create_service_account: bool = False
    """Create the ServiceAccount here; leave false when a Helm chart or an EKS add-on creates it."""
    k8s_provider: k8s.Provider | None = None
    """Required with `create_service_account`."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def trust_policy(args: WorkloadIdentityArgs) -> pulumi.Output[str]:
    if args.mode == "pod-identity":
        # Pod Identity passes the namespace and service account as session tags; matching them pins the role to
        # one service account even if someone creates a second association for it.
        return policy_document([{
            "Effect": "Allow",
            "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {
                "StringEquals": {
                    "aws:SourceAccount": args.account_id,
                    "aws:RequestTag/eks-cluster-name": args.cluster_name,
                    "aws:RequestTag/kubernetes-namespace": args.namespace,
                    "aws:RequestTag/kubernetes-service-account": args.service_account,
                },
            },
        }])
    if args.oidc_provider_arn is None or args.oidc_issuer is None:
        raise ValueError("WorkloadIdentityArgs: mode 'irsa' needs oidc_provider_arn and oidc_issuer")
    issuer = pulumi.Output.from_input(args.oidc_issuer).apply(lambda url: url.removeprefix("https://"))
    return pulumi.Output.all(args.oidc_provider_arn, issuer).apply(lambda a: json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": a[0]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{a[1]}:sub": f"system:serviceaccount:{args.namespace}:{args.service_account}",
                f"{a[1]}:aud": "sts.amazonaws.com",
            }},
        }],
    }))


class WorkloadIdentity(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]
    service_account_annotations: pulumi.Output[dict[str, str]]
    """Annotations the service account needs: the role ARN under IRSA, nothing under Pod Identity."""

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:identity:WorkloadIdentity", name, None, opts)
        check_least_privilege(args.statements, f"WorkloadIdentity {name}")
        if args.create_service_account and args.k8s_provider is None:
            raise ValueError(f"WorkloadIdentity {name}: create_service_account needs k8s_provider")
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(name, assume_role_policy=trust_policy(args),
                            description=f"workload identity for {args.namespace}/{args.service_account}",
                            max_session_duration=3600, opts=child)
        if args.statements:
            aws.iam.RolePolicy(name, role=role.id, policy=policy_document(args.statements), opts=child)
        for i, arn in enumerate(args.managed_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-{i}", role=role.name, policy_arn=arn, opts=child)

        if args.mode == "pod-identity":
            aws.eks.PodIdentityAssociation(name, cluster_name=args.cluster_name, namespace=args.namespace,
                                           service_account=args.service_account, role_arn=role.arn,
                                           opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
            self.service_account_annotations = pulumi.Output.from_input({})
        else:
            self.service_account_annotations = role.arn.apply(lambda arn: {"eks.amazonaws.com/role-arn": arn})

        if args.create_service_account:
            k8s.core.v1.ServiceAccount(name, metadata={
                "name": args.service_account, "namespace": args.namespace,
                "annotations": self.service_account_annotations,
                "labels": {"app.kubernetes.io/managed-by": "pulumi"},
            }, opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                           depends_on=list(args.depends_on)))

        self.role_arn = role.arn
        self.role_name = role.name
        self.register_outputs({"role_arn": self.role_arn})
