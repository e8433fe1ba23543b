"""What every reference workload component shares: its IAM identity, its Kafka access, and its scrape config.

A workload gets exactly one service account and one role, with the S3 statements and Kafka grant it declares, so a
compromised inference pod cannot read the raw lake and an ingestion pod cannot write predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.iam import Statement
from components.kafka_access import Kafka, KafkaClientAccess, KafkaGrant
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config.teams_model import TeamConfig


@dataclass(frozen=True, kw_only=True)
class WorkloadContext:
    """Platform and team facts every workload component needs; built once per team in __main__.py."""
    team: TeamConfig
    """The owning team: its namespace, lake prefix and topics bound everything the workload may touch."""
    namespace: str
    cluster_name: pulumi.Input[str]
    region: str
    k8s_provider: k8s.Provider
    identity: dict[str, Any]
    kafka: Kafka
    mlflow_tracking_uri: str
    lake_buckets: pulumi.Output[dict[str, str]]
    lake_bucket_arns: pulumi.Output[dict[str, str]]
    lake_kms_key_arn: pulumi.Input[str]
    mlflow_credentials: tuple[dict[str, Any], dict[str, Any]] | None = None
    """The volume and mount of the team's MLflow credentials file (from the team's Secret, never in plain text)."""
    monitoring_crds: Sequence[pulumi.Resource] = ()
    """The monitoring chart, which installs the ServiceMonitor/PodMonitor CRDs."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def mlflow_volumes(ctx: WorkloadContext) -> tuple[list[dict], list[dict]]:
    """The team's MLflow credentials file as (volumes, mounts), for a workload that calls MLflow."""
    creds = ctx.mlflow_credentials
    return ([creds[0]], [creds[1]]) if creds else ([], [])


def team_prefix(ctx: WorkloadContext, prefix: str) -> str:
    """A key prefix inside the team's part of the lake."""
    return f"{ctx.team.lake_prefix}{prefix}"


def s3_statements(ctx: WorkloadContext, *, read: Sequence[tuple[str, str]] = (),
                  write: Sequence[tuple[str, str]] = ()) -> list[Statement]:
    """(lake area, key prefix) pairs -> object- and prefix-scoped S3 statements plus use of the lake's KMS key."""
    statements: list[Statement] = []
    for actions, pairs in ((["s3:GetObject"], read), (["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], write)):
        if not pairs:
            continue
        statements.append({"Effect": "Allow", "Action": actions, "Resource": [
            ctx.lake_bucket_arns.apply(lambda arns, a=area, p=prefix: f"{arns[a]}/{p}*") for area, prefix in pairs]})
    for area, prefix in [*read, *write]:
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"],
                           "Resource": [ctx.lake_bucket_arns.apply(lambda arns, a=area: arns[a])],
                           "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}})
    if statements:
        statements.append(lake_key_statement(ctx.lake_kms_key_arn, ctx.region))
    return statements


def lake_key_statement(key_arn: pulumi.Input[str], region: str) -> Statement:
    """Use of the lake key only through S3: the role cannot call KMS with it directly (decrypt arbitrary blobs)."""
    return {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}}


def lake_uri(ctx: WorkloadContext, area: str, prefix: str) -> pulumi.Output[str]:
    return ctx.lake_buckets.apply(lambda b: f"s3://{b[area]}/{prefix}")


class WorkloadBase(pulumi.ComponentResource):
    """Declares the identity and Kafka access; subclasses declare the Kubernetes objects."""

    kafka_access: KafkaClientAccess | None

    def _identity(self, name: str, ctx: WorkloadContext, statements: list[Statement],
                  kafka: KafkaGrant | None) -> WorkloadIdentity:
        self.kafka_access = ctx.kafka.grant(kafka, self) if kafka else None
        all_statements = [*statements, *(self.kafka_access.statements if self.kafka_access else [])]
        return WorkloadIdentity(name, WorkloadIdentityArgs(
            cluster_name=ctx.cluster_name, namespace=ctx.namespace, service_account=name,
            statements=all_statements, create_service_account=True, k8s_provider=ctx.k8s_provider,
            depends_on=ctx.depends_on, **ctx.identity), opts=pulumi.ResourceOptions(parent=self))

    def _k8s_opts(self, ctx: WorkloadContext, *extra: pulumi.Resource) -> pulumi.ResourceOptions:
        after = list(self.kafka_access.depends_on) if self.kafka_access else []
        return pulumi.ResourceOptions(parent=self, provider=ctx.k8s_provider,
                                      depends_on=[*ctx.depends_on, *after, *extra])

    def _kafka_env(self) -> dict[str, pulumi.Input[str]]:
        return dict(self.kafka_access.env) if self.kafka_access else {}

    def _pod_annotations(self) -> dict[str, pulumi.Input[str]]:
        """Changes when the Kafka client certificate is re-issued, so pods restart onto the new files."""
        return dict(self.kafka_access.pod_annotations) if self.kafka_access else {}

    def _kafka_volumes(self) -> tuple[list[dict], list[dict]]:
        if not self.kafka_access:
            return [], []
        return list(self.kafka_access.volumes), list(self.kafka_access.volume_mounts)

    def _pod_monitor(self, name: str, ctx: WorkloadContext, port: str,
                     only_labels: dict[str, str] | None = None) -> None:
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": name, "namespace": ctx.namespace},
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": name, **(only_labels or {})}},
                  "podMetricsEndpoints": [{"port": port, "path": "/metrics", "interval": "30s"}]},
            opts=self._monitor_opts(ctx))

    def _ingress_policy(self, name: str, ctx: WorkloadContext, opts: pulumi.ResourceOptions,
                        rules: list[dict[str, Any]]) -> None:
        """Only the listed peers may open connections to this workload's pods; egress is left open (Kafka, MLflow,
        S3 through the VPC endpoint, AWS APIs)."""
        k8s.networking.v1.NetworkPolicy(f"{name}-ingress", metadata={"name": name, "namespace": ctx.namespace}, spec={
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "policyTypes": ["Ingress"],
            "ingress": rules}, opts=opts)

    def _monitor_opts(self, ctx: WorkloadContext) -> pulumi.ResourceOptions:
        """Monitors need their CRDs (the monitoring chart) and their namespace."""
        return pulumi.ResourceOptions(parent=self, provider=ctx.k8s_provider,
                                      depends_on=[*ctx.monitoring_crds, *ctx.depends_on])


def from_namespaces(*names: str) -> list[dict[str, Any]]:
    return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}} for n in names]


def tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


# Prometheus runs in this namespace; every workload's metrics port admits it.
MONITORING_NAMESPACE = "monitoring"
