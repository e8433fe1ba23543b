"""Drift monitoring: compares recent curated data with the training reference and exports PSI per feature.

It runs as a long-lived Deployment that re-evaluates on an interval, so its gauges stay scrapeable between runs and
the DataDriftDetected alert sees a steady value rather than a metric that vanishes with a finished job.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, http_probe, labels, pod_security,
                                 resources, selector, tmp_volume)
from components.workload_base import (MONITORING_NAMESPACE, WorkloadBase, WorkloadContext, from_namespaces, lake_uri,
                                      s3_statements, tcp, team_prefix)
from platform_config.teams_model import DriftConfig

METRICS_PORT = 9100
PREFIX = "transactions/"


@dataclass(frozen=True, kw_only=True)
class DriftMonitorArgs:
    context: WorkloadContext
    image: str
    config: DriftConfig
    """Threshold, window (the last `window_hours` of curated data against everything before) and interval."""


class DriftMonitor(WorkloadBase):
    def __init__(self, name: str, args: DriftMonitorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:workloads:DriftMonitor", name, None, opts)
        ctx = args.context
        cfg = args.config
        prefix = team_prefix(ctx, PREFIX)
        identity = self._identity(name, ctx, s3_statements(ctx, read=[("curated", prefix)]), kafka=None)
        opts_k8s = self._k8s_opts(ctx, identity)
        meta = {"name": name, "namespace": ctx.namespace, "labels": labels(name, "monitoring")}
        tmp, tmp_mount = tmp_volume()
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={
            "replicas": 1, "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels(name, "monitoring")}, "spec": {
                "serviceAccountName": name, "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [{
                    "name": "drift", "image": args.image, **ALWAYS_PULL,
                    "args": ["--recent-hours", str(cfg.window_hours),
                             "--interval-seconds", str(cfg.interval_seconds)],
                    "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                    "env": env({"LAKE_CURATED_URI": lake_uri(ctx, "curated", prefix),
                                "DRIFT_PSI_THRESHOLD": f"{cfg.psi_threshold:g}", "METRICS_PORT": str(METRICS_PORT),
                                "AWS_REGION": ctx.region}),
                    "readinessProbe": http_probe("/metrics", "metrics", period=10, failures=3),
                    "livenessProbe": http_probe("/metrics", "metrics", period=30, failures=3, delay=10),
                    "resources": resources("500m", "2Gi"), "securityContext": container_security(),
                    "volumeMounts": [tmp_mount],
                }],
                "volumes": [tmp],
            }},
        }, opts=opts_k8s)
        self._ingress_policy(name, ctx, opts_k8s, [{"from": from_namespaces(MONITORING_NAMESPACE),
                                                    "ports": tcp(METRICS_PORT)}])
        self._pod_monitor(name, ctx, "metrics")
        self.register_outputs({})
