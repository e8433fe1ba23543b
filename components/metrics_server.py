"""metrics-server: the resource metrics API (`kubectl top`, HorizontalPodAutoscaler CPU targets).

EKS does not run it (and this cluster bootstraps no self-managed add-ons), so without it the serving autoscaler
reports FailedGetResourceMetric and never scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.system_nodes import SYSTEM_POOL_LABEL
from platform_config.versions import METRICS_SERVER_REPO, METRICS_SERVER_VERSION


@dataclass(frozen=True, kw_only=True)
class MetricsServerArgs:
    k8s_provider: k8s.Provider
    depends_on: Sequence[pulumi.Resource] = ()


class MetricsServer(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:MetricsServer", name, None, opts)
        k8s.helm.v3.Release(
            name, name="metrics-server", chart="metrics-server", version=METRICS_SERVER_VERSION,
            repository_opts={"repo": METRICS_SERVER_REPO}, namespace="kube-system", atomic=True,
            values={"replicas": 2, "nodeSelector": SYSTEM_POOL_LABEL,
                    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
                    "resources": {"requests": {"cpu": "100m", "memory": "200Mi"},
                                  "limits": {"cpu": "500m", "memory": "400Mi"}}},
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on)))
        self.register_outputs({"chart_version": METRICS_SERVER_VERSION})
