"""The NVIDIA device plugin DaemonSet, which advertises each GPU node's GPUs as the `nvidia.com/gpu` resource.

The AL2023 NVIDIA AMI ships the driver and container toolkit but not this plugin; without it a pod's
`nvidia.com/gpu` request can never be satisfied and Karpenter would launch nodes that stay useless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.gpu_pool import GPU_PRESENT_LABEL, GPU_TAINT
from platform_config.versions import NVIDIA_DEVICE_PLUGIN_REPO, NVIDIA_DEVICE_PLUGIN_VERSION

NAMESPACE = "kube-system"


@dataclass(frozen=True, kw_only=True)
class NvidiaDevicePluginArgs:
    k8s_provider: k8s.Provider
    depends_on: Sequence[pulumi.Resource] = ()


def device_plugin_values() -> dict:
    return {
        # Only GPU nodes (labelled by their NodePool). The chart's default node affinity (kept: Helm merges maps, so
        # it cannot be emptied with {}) accepts Node Feature Discovery labels or `nvidia.com/gpu.present=true`; this
        # platform runs no NFD, and the GPU pools set that label.
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]},
                        {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "gfd": {"enabled": False},
        "nfd": {"enabled": False},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    }


class NvidiaDevicePlugin(pulumi.ComponentResource):
    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:NvidiaDevicePlugin", name, None, opts)
        self.release = k8s.helm.v3.Release(
            name,
            name="nvidia-device-plugin",
            chart="nvidia-device-plugin",
            version=NVIDIA_DEVICE_PLUGIN_VERSION,
            repository_opts={"repo": NVIDIA_DEVICE_PLUGIN_REPO},
            namespace=NAMESPACE,
            atomic=True,
            values=device_plugin_values(),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on)),
        )
        self.register_outputs({"chart_version": NVIDIA_DEVICE_PLUGIN_VERSION})
