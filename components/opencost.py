"""OpenCost: what every pod costs, priced from AWS's list prices and measured through the cluster's Prometheus.

OpenCost prices each node from AWS's public on-demand price list (a plain HTTPS download, no credentials) and, for
spot nodes without a spot data feed, from EC2's spot price history, the one AWS API it is allowed here; it exports
per-node prices and per-container allocations, which Prometheus scrapes. The cost rules
(components/observability/alert_rules.py, shipped here as PrometheusRule `ml-platform-cost`) turn those into cost
and GPU-hours per team, model and pool and each team's month forecast against its `monthlyBudgetUsd`; the Cost
dashboard shows them. OpenCost keeps nothing itself: it reads its history back from Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from components.iam import Statement
from components.monitoring import RELEASE as MONITORING_RELEASE
from components.observability.alert_rules import cost_rule_group
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config.teams_model import TeamConfig
from platform_config.versions import (OPENCOST_CHART_VERSION, OPENCOST_IMAGE_REGISTRY, OPENCOST_IMAGE_REPOSITORY,
                                      OPENCOST_IMAGE_TAG, OPENCOST_REPO)

RELEASE = "opencost"
CHART = "opencost"
SERVICE_ACCOUNT = "opencost"
# The chart's selector labels (templates/_helpers.tpl `opencost.selectorLabels`) for release `opencost`.
POD_LABELS = {"app.kubernetes.io/name": "opencost", "app.kubernetes.io/instance": RELEASE}
API_PORT = 9003  # the API and /metrics (chart value opencost.exporter.apiPort)
PROMETHEUS_PORT = 9090
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}  # prometheus-operator's label on the StatefulSet's pods
POD_IDENTITY_AGENT, POD_IDENTITY_AGENT_PORT = "169.254.170.23/32", 80
UID = 1001  # the exporter image's USER


def iam_statements() -> list[Statement]:
    """Least privilege for the one AWS API OpenCost calls here.

    - ec2:DescribeSpotPriceHistory: the price of a spot node when no spot data feed covers it (pkg/cloud/aws
      spotpricehistory.go, opencost/opencost#3731, spring 2026; without it, or in a build before it, OpenCost prices
      spot nodes at on-demand rates). Read-only market data, and the action has no resource-level permissions,
      hence `*`.
    Left out on purpose: pricing:GetProducts (on-demand prices come from the public bulk price list over plain
    HTTPS, pricelistapi.go), s3:Get*/List* on a spot data-feed bucket (none is configured: the feed is account-wide,
    lags by hours and bills the same market price the history reports), ec2:DescribeVolumes/DescribeAddresses (only
    the orphaned-resources report asks for them), and Athena/CUR access (cloud costs are off).
    """
    return [{"Sid": "SpotPrices", "Effect": "Allow", "Action": ["ec2:DescribeSpotPriceHistory"], "Resource": "*"}]


@dataclass(frozen=True, kw_only=True)
class OpenCostArgs:
    cluster_name: pulumi.Input[str]
    """The EKS cluster the Pod Identity association is made in."""
    cluster_id: str
    """The `cluster_id` OpenCost reports (the stack's cluster name)."""
    region: str
    prometheus_url: str
    """The cluster's Prometheus (Monitoring.prometheus_url): OpenCost reads its history there, not from its own."""
    k8s_provider: k8s.Provider
    identity: dict[str, Any]
    """Keyword arguments every WorkloadIdentityArgs needs (mode, OIDC provider, account)."""
    teams: Sequence[TeamConfig] = ()
    """Each team's monthlyBudgetUsd becomes its budget series; the alerts compare the forecast with it."""
    namespace: str = "opencost"
    monitoring_namespace: str = "monitoring"
    monitoring_crds: Sequence[pulumi.Resource] = ()
    """The chart's ServiceMonitor and the cost PrometheusRule need prometheus-operator's CRDs."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def chart_values(args: OpenCostArgs, service_account_annotations: pulumi.Input[dict[str, str]]) -> dict[str, Any]:
    container = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                 "capabilities": {"drop": ["ALL"]}}
    # The exporter writes its pricing configuration under /var/configs (CONFIG_PATH) and temporary files under /tmp;
    # everything else stays read-only.
    scratch = [("config", "/var/configs"), ("tmp", "/tmp")]
    return {
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT, "annotations": service_account_annotations},
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "service": {"type": "ClusterIP"},
        # One exporter: a second would export every series again under the same labels (honorLabels), and a rollout
        # stops the old pod before starting the new one for the same reason.
        "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        "extraVolumes": [{"name": name, "emptyDir": {"sizeLimit": "256Mi"}} for name, _ in scratch],
        "opencost": {
            "exporter": {
                "image": {"registry": OPENCOST_IMAGE_REGISTRY, "repository": OPENCOST_IMAGE_REPOSITORY,
                          "tag": OPENCOST_IMAGE_TAG, "pullPolicy": "IfNotPresent"},
                "replicas": 1,
                "defaultClusterId": args.cluster_id,
                # The AWS SDK asks IMDS for the region otherwise, which the nodes' hop limit of 1 keeps pods from.
                "env": [{"name": "AWS_REGION", "value": args.region}],
                # Parsing a region's price list (hundreds of MB of JSON, streamed) is what needs the memory.
                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                              "limits": {"cpu": "1", "memory": "2Gi"}},
                "startupProbe": {"enabled": True},
                "livenessProbe": {"enabled": True},
                "readinessProbe": {"enabled": True},
                "securityContext": container,
                "extraVolumeMounts": [{"name": name, "mountPath": path} for name, path in scratch],
            },
            "prometheus": {"internal": {"enabled": False},
                           "external": {"enabled": True, "url": args.prometheus_url}},
            "metrics": {
                # kube-state-metrics already exports the pod, node and namespace metrics; OpenCost's own copies
                # would double every sum over them (its docs' advice for a cluster with KSM v2).
                "kubeStateMetrics": {"emitKsmV1Metrics": False, "emitKsmV1MetricsOnly": False},
                "serviceMonitor": {"enabled": True},
            },
            # Off: the UI (Grafana's Cost dashboard is the platform's view, the API answers port-forwards) and the
            # MCP server for AI agents, an unauthenticated port nobody here needs.
            "ui": {"enabled": False},
            "mcp": {"enabled": False},
        },
    }


def network_policy_spec(monitoring_namespace: str) -> dict[str, Any]:
    """Only Prometheus may reach the API (it reports every team's costs); OpenCost reaches DNS, Prometheus, the Pod
    Identity agent and HTTPS (the API server, AWS's price list and EC2)."""
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace}},
                  "podSelector": {"matchLabels": PROMETHEUS_POD}}
    return {
        "podSelector": {"matchLabels": POD_LABELS},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [prometheus], "ports": [{"protocol": "TCP", "port": API_PORT}]}],
        "egress": [
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [prometheus], "ports": [{"protocol": "TCP", "port": PROMETHEUS_PORT}]},
            {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}],
             "ports": [{"protocol": "TCP", "port": POD_IDENTITY_AGENT_PORT}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        ],
    }


def check_prometheus(url: str, monitoring_namespace: str) -> None:
    """The network policy admits kube-prometheus-stack's Prometheus pods on its port; the URL must lead there."""
    parsed = urlparse(url)
    want = f"{MONITORING_RELEASE}-prometheus.{monitoring_namespace}.svc.cluster.local"
    if parsed.hostname != want or parsed.port != PROMETHEUS_PORT:
        raise ValueError(f"OpenCost: {url} is not {want}:{PROMETHEUS_PORT}, the Prometheus its network policy admits")


class OpenCost(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    api_url: str

    def __init__(self, name: str, args: OpenCostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cost:OpenCost", name, None, opts)
        check_prometheus(args.prometheus_url, args.monitoring_namespace)
        # Built before anything is declared: a team's bad budget fails here, not half-way through.
        rules = cost_rule_group(list(args.teams))
        identity = WorkloadIdentity(name, WorkloadIdentityArgs(
            cluster_name=args.cluster_name, namespace=args.namespace, service_account=SERVICE_ACCOUNT,
            statements=iam_statements(), depends_on=args.depends_on, **args.identity),
            opts=pulumi.ResourceOptions(parent=self))
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        k8s.networking.v1.NetworkPolicy(f"{name}-network", metadata={"name": RELEASE, "namespace": args.namespace},
                                        spec=network_policy_spec(args.monitoring_namespace), opts=k8s_opts)
        self.release = k8s.helm.v3.Release(
            name, name=RELEASE, chart=CHART, version=OPENCOST_CHART_VERSION,
            repository_opts={"repo": OPENCOST_REPO}, namespace=args.namespace, atomic=True, timeout=600,
            values=chart_values(args, identity.service_account_annotations),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, *args.monitoring_crds, identity]))
        k8s.apiextensions.CustomResource(
            f"{name}-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata={"name": f"ml-platform-{rules['name']}", "namespace": args.monitoring_namespace},
            spec={"groups": [rules]},
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[*args.monitoring_crds]))
        self.api_url = f"http://{RELEASE}.{args.namespace}.svc.cluster.local:{API_PORT}"
        self.register_outputs({"api_url": self.api_url, "chart_version": OPENCOST_CHART_VERSION})
