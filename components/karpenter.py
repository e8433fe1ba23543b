"""Karpenter: the controller that launches (and removes) GPU nodes on demand, so GPU pools scale from and to zero.

Everything it needs is declared here: its node role and access entry, the spot-interruption queue with the
EventBridge rules that feed it, its own least-privilege identity, and the CRD and controller charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.iam import Statement, policy_document
from components.system_nodes import SYSTEM_POOL_LABEL, node_role
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config.versions import KARPENTER_CHART, KARPENTER_CRD_CHART, KARPENTER_VERSION

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"

# EventBridge events Karpenter reacts to before AWS takes a node away (spot reclaim, rebalance, scheduled health).
INTERRUPTION_EVENTS = {
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
}

EC2_READ_ACTIONS = [
    "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
]
INSTANCE_PROFILE_ACTIONS = ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                            "iam:DeleteInstanceProfile"]


def controller_statements(*, region: str, account_id: pulumi.Input[str], cluster_name: str,
                          cluster_arn: pulumi.Input[str], queue_arn: pulumi.Input[str],
                          node_role_arn: pulumi.Input[str]) -> list[Statement]:
    """Karpenter v1's controller policy, every write scoped to resources tagged as this cluster's."""
    ec2 = pulumi.Output.concat("arn:aws:ec2:", region, ":", account_id, ":")
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    requested = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned",
                 "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    profiles = pulumi.Output.concat("arn:aws:iam::", account_id, ":instance-profile/*")
    profile_tags = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned",
                    "aws:ResourceTag/topology.kubernetes.io/region": region}
    profile_request_tags = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned",
                            "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                            "aws:RequestTag/topology.kubernetes.io/region": region}
    tagged_kinds = ["fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"]
    return [
        {"Sid": "RunInstancesFromSharedResources", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
         "Resource": [f"arn:aws:ec2:{region}::image/*", f"arn:aws:ec2:{region}::snapshot/*",
                      pulumi.Output.concat(ec2, "security-group/*"), pulumi.Output.concat(ec2, "subnet/*"),
                      pulumi.Output.concat(ec2, "capacity-reservation/*"),
                      pulumi.Output.concat(ec2, "placement-group/*")]},
        {"Sid": "RunInstancesFromOwnLaunchTemplates", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"], "Resource": pulumi.Output.concat(ec2, "launch-template/*"),
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "CreateTaggedInstances", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
         "Resource": [pulumi.Output.concat(ec2, kind, "/*") for kind in tagged_kinds],
         "Condition": {"StringEquals": requested, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": [pulumi.Output.concat(ec2, kind, "/*") for kind in tagged_kinds],
         "Condition": {"StringEquals": {**requested,
                                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "TagOwnInstances", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": pulumi.Output.concat(ec2, "instance/*"),
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                       "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                       "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim",
                                                                     "Name"]}}},
        {"Sid": "DeleteOwnInstances", "Effect": "Allow",
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
         "Resource": [pulumi.Output.concat(ec2, "instance/*"), pulumi.Output.concat(ec2, "launch-template/*")],
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "RegionalReads", "Effect": "Allow", "Action": EC2_READ_ACTIONS, "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "ReadAmiParameters", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*"},
        {"Sid": "ReadPrices", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {"Sid": "ConsumeInterruptionQueue", "Effect": "Allow",
         "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"], "Resource": queue_arn},
        {"Sid": "PassNodeRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": node_role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "CreateInstanceProfiles", "Effect": "Allow", "Action": "iam:CreateInstanceProfile",
         "Resource": profiles, "Condition": {"StringEquals": profile_request_tags,
                                             "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "TagOwnInstanceProfiles", "Effect": "Allow", "Action": "iam:TagInstanceProfile",
         "Resource": profiles, "Condition": {"StringEquals": {**profile_tags, **profile_request_tags},
                                             "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                                            "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "ManageOwnInstanceProfiles", "Effect": "Allow", "Action": INSTANCE_PROFILE_ACTIONS,
         "Resource": profiles, "Condition": {"StringEquals": profile_tags,
                                             "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "ReadInstanceProfiles", "Effect": "Allow", "Action": "iam:GetInstanceProfile", "Resource": profiles},
        {"Sid": "ListInstanceProfiles", "Effect": "Allow", "Action": "iam:ListInstanceProfiles", "Resource": "*"},
        {"Sid": "DiscoverApiServer", "Effect": "Allow", "Action": "eks:DescribeCluster", "Resource": cluster_arn},
        # An account that has never run Spot has no AWSServiceRoleForEC2Spot, and CreateFleet fails with
        # ServiceLinkedRoleCreationNotPermitted unless its caller may create it. Letting EC2 create that one role on
        # first use works whether or not it exists, where declaring it would fail in accounts that have it.
        {"Sid": "CreateSpotServiceLinkedRole", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
         "Resource": pulumi.Output.concat("arn:aws:iam::", account_id,
                                          ":role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"),
         "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}},
    ]


@dataclass(frozen=True, kw_only=True)
class KarpenterArgs:
    cluster_name: pulumi.Output[str]
    """The cluster's name Output: EKS calls that name the cluster (access entry, Pod Identity) then wait for it."""
    cluster_key: str
    """The same name as plain text, for IAM condition keys, tag keys and the queue name, which cannot be Outputs."""
    cluster_arn: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    k8s_provider: k8s.Provider
    identity: Mapping[str, object]
    """Keyword arguments every WorkloadIdentityArgs needs (mode, OIDC provider, account)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The system nodes and add-ons the controller runs on."""


class Karpenter(pulumi.ComponentResource):
    node_role_name: pulumi.Output[str]
    crds: k8s.helm.v3.Release
    controller: k8s.helm.v3.Release

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        role = node_role(f"{name}-node", self)
        # Nodes Karpenter launches join through an EC2_LINUX access entry (no aws-auth ConfigMap in API mode).
        entry = aws.eks.AccessEntry(f"{name}-node", cluster_name=args.cluster_name, principal_arn=role.arn,
                                    type="EC2_LINUX", opts=child)

        queue = aws.sqs.Queue(f"{name}-interruptions", name=f"{args.cluster_key}-karpenter",
                              message_retention_seconds=300, sqs_managed_sse_enabled=True, opts=child)
        rules = []
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{event}", event_pattern=pulumi.Output.json_dumps(pattern),
                                            description=f"Karpenter interruption handling: {event}", opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{event}", rule=rule.name, arn=queue.arn, opts=child)
            rules.append(rule)
        aws.sqs.QueuePolicy(f"{name}-interruptions", queue_url=queue.url, policy=policy_document([
            # Only this cluster's interruption rules may deliver (the reference policy admits any rule).
            {"Sid": "EventBridgeDelivers", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
             "Action": "sqs:SendMessage", "Resource": queue.arn,
             "Condition": {"ArnEquals": {"aws:SourceArn": [r.arn for r in rules]}}},
            {"Sid": "SqsDelivers", "Effect": "Allow", "Principal": {"Service": "sqs.amazonaws.com"},
             "Action": "sqs:SendMessage", "Resource": queue.arn},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "sqs:*",
             "Resource": queue.arn, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ]), opts=child)

        identity = WorkloadIdentity(f"{name}-controller", WorkloadIdentityArgs(
            cluster_name=args.cluster_name, namespace=NAMESPACE, service_account=SERVICE_ACCOUNT,
            statements=controller_statements(region=args.region, account_id=args.account_id,
                                             cluster_name=args.cluster_key, cluster_arn=args.cluster_arn,
                                             queue_arn=queue.arn, node_role_arn=role.arn),
            **args.identity), opts=child)

        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        self.crds = k8s.helm.v3.Release(f"{name}-crd", name="karpenter-crd", chart=KARPENTER_CRD_CHART,
                                        version=KARPENTER_VERSION, namespace=NAMESPACE, atomic=True, opts=k8s_opts)
        self.controller = k8s.helm.v3.Release(
            name,
            name="karpenter",
            chart=KARPENTER_CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            # CRDs come from the karpenter-crd chart, which (unlike a chart's crds/ folder) Helm also upgrades.
            skip_crds=True,
            atomic=True,
            values={
                "settings": {"clusterName": args.cluster_name, "interruptionQueue": queue.name},
                "serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": identity.service_account_annotations},
                "replicas": 2,
                # Never on the nodes it manages: a consolidation would evict the controller doing it.
                "nodeSelector": SYSTEM_POOL_LABEL,
                "controller": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                             "limits": {"cpu": "1", "memory": "1Gi"}},
                               # Without AWS_REGION Karpenter asks IMDS, which the hop limit of 1 keeps pods from
                               # reaching; set it rather than rely on the identity webhook injecting it.
                               "env": [{"name": "AWS_REGION", "value": args.region}]},
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, self.crds, identity, entry]),
        )
        self.node_role_name = role.name
        self.register_outputs({"node_role_name": self.node_role_name, "interruption_queue": queue.name})
