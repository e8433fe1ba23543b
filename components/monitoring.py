"""Metrics, dashboards and alerts: kube-prometheus-stack, the NVIDIA DCGM exporter, and the platform's own rules.

Grafana's admin password is generated here and handed to the chart through an existing Secret, so it never appears
in Helm values (which Pulumi stores in state and shows in diffs). Prometheus discovers every ServiceMonitor,
PodMonitor and PrometheusRule in the cluster, not only the chart's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.gpu_pool import GPU_PRESENT_LABEL, GPU_TAINT
from components.kafka_msk import scrape_specs
from components.observability import dashboards
from components.observability.alert_rules import PLATFORM_GROUP, rule_groups
from components.observability.metric_catalog import ksm_label_allowlist
from platform_config.model import GpuPoolConfig
from platform_config.services_model import MonitoringConfig
from platform_config.teams_model import ModelConfig
from platform_config.versions import (DCGM_EXPORTER_REPO, DCGM_EXPORTER_VERSION, KUBE_PROMETHEUS_STACK_REPO,
                                      KUBE_PROMETHEUS_STACK_VERSION)

RELEASE = "kube-prometheus-stack"
GRAFANA_SECRET = "grafana-admin"
WEBHOOK_SECRET = "alertmanager-webhook"
# Alertmanager mounts each secret listed in alertmanagerSpec.secrets under this directory.
WEBHOOK_URL_FILE = f"/etc/alertmanager/secrets/{WEBHOOK_SECRET}/url"


# The chart's own inhibitions (kube-prometheus-stack 88.5.3 values.yaml `alertmanager.config.inhibit_rules`): Helm
# replaces lists, so setting our rule alone would drop them and every info alert would page. Kept equal to the
# vendored chart defaults by a test.
CHART_INHIBIT_RULES = [
    {"source_matchers": ["severity = critical"], "target_matchers": ["severity =~ warning|info"],
     "equal": ["namespace", "alertname"]},
    {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
     "equal": ["namespace", "alertname"]},
    {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"], "equal": ["namespace"]},
    {"target_matchers": ["alertname = InfoInhibitor"]},
]
# The platform's SLO alerts carry `model`: the chart's critical-silences-warning rule compares only namespace and
# alertname, so one model's page would hide another model's ticket in the same team namespace. Comparing `model`
# too changes nothing for alerts without it (absent on both sides counts as equal).
PLATFORM_INHIBIT_RULES = [{**CHART_INHIBIT_RULES[0], "equal": [*CHART_INHIBIT_RULES[0]["equal"], "model"]},
                          *CHART_INHIBIT_RULES[1:]]
# Control-plane components EKS runs out of sight: nothing to scrape, so the chart's "down" alerts would page forever.
# kube-proxy binds its metrics to 127.0.0.1 on EKS, so its targets would be down too (TargetDown).
UNSCRAPABLE_ON_EKS = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    config: MonitoringConfig
    namespace: str
    k8s_provider: k8s.Provider
    storage_class: str
    models: Sequence[ModelConfig] = ()
    """Each model gets its SLO and drift rules and its dashboard."""
    gpu_pools: Sequence[GpuPoolConfig] = ()
    """Each pool gets its panels on the queues dashboard; its GPUs must report the metrics GpuIdle reads."""
    msk_broker_hosts: pulumi.Output[list[str]] | None = None
    """MSK brokers whose open-monitoring exporters Prometheus scrapes. They become ScrapeConfig resources the
    operator picks up when they appear, so neither the chart nor Prometheus waits for MSK (tens of minutes)."""
    disposable: bool = False
    """Prometheus' volume is deleted with its StatefulSet (`dataLake.forceDestroy`, dev); otherwise it outlives a
    re-created Prometheus. A stack destroy deletes the namespace, and the claim with it, either way."""
    depends_on: Sequence[pulumi.Resource] = ()


def stack_values(cfg: MonitoringConfig, storage_class: str, disposable: bool = False) -> dict:
    values = {
        # Helm installs a chart's CRDs only on first install; the chart's upgrade job applies the new ones on every
        # upgrade (a version bump is a prometheus-operator CRD bump).
        "crds": {"upgradeJob": {"enabled": True}},
        **{component: {"enabled": False} for component in UNSCRAPABLE_ON_EKS},
        # The pod and node labels the cost dashboard and rules group by (model, pool) exist on kube_pod_labels and
        # kube_node_labels only when listed here.
        "kube-state-metrics": {"metricLabelsAllowlist": ksm_label_allowlist()},
        "grafana": {
            "admin": {"existingSecret": GRAFANA_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                                       "searchNamespace": "ALL"}},
            "service": {"type": "ClusterIP"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        },
        "prometheus": {"prometheusSpec": {
            "retention": cfg.retention,
            # Look at every monitor and rule in the cluster, not only those labelled for this release.
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "scrapeConfigSelectorNilUsesHelmValues": False,
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete" if disposable else "Retain",
                                                     "whenScaled": "Retain"},
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{cfg.storage_gib}Gi"}}}}},
        }},
        "alertmanager": {
            "alertmanagerSpec": {
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "200m", "memory": "256Mi"}},
                "secrets": [WEBHOOK_SECRET] if cfg.alert_webhook_url else [],
            },
            "config": alertmanager_config(bool(cfg.alert_webhook_url)),
        },
    }
    return values


def alertmanager_config(webhook: bool) -> dict:
    """Routing for the platform's alerts. The URL is read from a mounted secret file, never from Helm values."""
    platform = {"name": "platform"}
    if webhook:
        platform["webhook_configs"] = [{"url_file": WEBHOOK_URL_FILE, "send_resolved": True}]
    return {
        "route": {"receiver": "platform", "group_by": ["alertname", "namespace", "severity"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "4h",
                  # The chart's always-firing heartbeat and info inhibitor are not for people.
                  "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']},
                             {"receiver": "null", "matchers": ['alertname = "InfoInhibitor"']}]},
        # The chart's inhibitions, the first per model too: a model's page (critical burn) silences its own ticket
        # (warning burn), no other model's.
        "inhibit_rules": PLATFORM_INHIBIT_RULES,
        "receivers": [{"name": "null"}, platform],
    }


def dcgm_values() -> dict:
    return {
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}],
        # honorLabels keeps the exporter's namespace/pod/container labels (the pod holding each GPU) instead of
        # Prometheus overwriting them with the exporter pod's own; the GPU dashboards and GpuIdle rely on them.
        "serviceMonitor": {"enabled": True, "interval": "15s", "honorLabels": True},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    }


class Monitoring(pulumi.ComponentResource):
    stack_release: k8s.helm.v3.Release
    grafana_url: str
    prometheus_url: str

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:monitoring:Monitoring", name, None, opts)
        ns = args.namespace
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        password = random.RandomPassword(f"{name}-grafana-password", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        secret = k8s.core.v1.Secret(f"{name}-grafana-admin", metadata={"name": GRAFANA_SECRET, "namespace": ns},
                                    string_data={"admin-user": "admin", "admin-password": password.result},
                                    opts=k8s_opts)
        webhook = []
        if args.config.alert_webhook_url:
            webhook = [k8s.core.v1.Secret(f"{name}-alert-webhook", metadata={"name": WEBHOOK_SECRET, "namespace": ns},
                                          string_data={"url": pulumi.Output.secret(args.config.alert_webhook_url)},
                                          opts=k8s_opts)]
        self.stack_release = k8s.helm.v3.Release(
            f"{name}-stack", name=RELEASE, chart="kube-prometheus-stack", version=KUBE_PROMETHEUS_STACK_VERSION,
            repository_opts={"repo": KUBE_PROMETHEUS_STACK_REPO}, namespace=ns, atomic=True, timeout=900,
            values=stack_values(args.config, args.storage_class, args.disposable),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[secret, *webhook])))
        after_stack = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[self.stack_release])
        k8s.helm.v3.Release(
            f"{name}-dcgm-exporter", name="dcgm-exporter", chart="dcgm-exporter", version=DCGM_EXPORTER_VERSION,
            repository_opts={"repo": DCGM_EXPORTER_REPO}, namespace=ns, atomic=True, values=dcgm_values(),
            opts=after_stack)
        models, pools = list(args.models), list(args.gpu_pools)
        groups = rule_groups(args.config, models, pools)  # checks the pools before anything is declared
        for file_name, body in dashboards.rendered(models, pools).items():
            k8s.core.v1.ConfigMap(f"{name}-dashboard-{file_name.removesuffix('.json')}", metadata={
                "name": file_name.removesuffix(".json"), "namespace": ns, "labels": {"grafana_dashboard": "1"}},
                data={file_name: body}, opts=k8s_opts)
        if args.msk_broker_hosts is not None:
            specs = args.msk_broker_hosts.apply(scrape_specs)
            for job in ("msk-jmx", "msk-node"):
                k8s.apiextensions.CustomResource(
                    f"{name}-scrape-{job}", api_version="monitoring.coreos.com/v1alpha1", kind="ScrapeConfig",
                    metadata={"name": job, "namespace": ns}, spec=specs.apply(lambda s, j=job: s[j]),
                    opts=after_stack)
        # One PrometheusRule per model besides the platform's: each stays small however many models there are, and
        # a model's change touches only its own object.
        for group in groups:
            suffix = "" if group["name"] == PLATFORM_GROUP else f"-{group['name']}"
            k8s.apiextensions.CustomResource(
                f"{name}-rules{suffix}", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata={"name": f"ml-platform{suffix}", "namespace": ns}, spec={"groups": [group]},
                opts=after_stack)
        self.grafana_url = f"http://{RELEASE}-grafana.{ns}.svc.cluster.local:80"
        self.prometheus_url = f"http://{RELEASE}-prometheus.{ns}.svc.cluster.local:9090"
        self.register_outputs({"grafana_url": self.grafana_url, "prometheus_url": self.prometheus_url})
