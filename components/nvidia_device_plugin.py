"""The NVIDIA device plugin DaemonSet, which advertises each GPU node's GPUs as the `nvidia.com/gpu` resource.

The AL2023 NVIDIA AMI ships the driver and container toolkit but not this plugin; without it a pod's
`nvidia.com/gpu` request can never be satisfied and Karpenter would launch nodes that stay useless.

Per-pool sharing (NVIDIA/k8s-device-plugin@v0.19.3 README.md, "Multiple Config File Example" and "Updating
Per-Node Configuration With a Node Label"): when any pool shares its GPUs, the chart gets one named config per
sharing pool in `config.map` plus an unshared `default`, and each node's `nvidia.com/device-plugin.config` label
(set by its NodePool, components/gpu_pool.py) picks one. The chart then runs config-manager as an init container and
a sidecar that watch that label; they read the Node through the chart's own ClusterRole (templates/role.yml grants
nodes get/list/watch unconditionally), so nothing else is needed for them. A label naming a config the map lacks
stops the plugin on that node (cmd/config-manager/main.go: "specified config ... does not exist").

- Time-slicing keeps the resource name `nvidia.com/gpu` (`renameByDefault: false`) so quotas, requests and
  tolerations are the same for every pool; a pool's nodes simply advertise `replicas` units per GPU. It sets
  `failRequestsGreaterThanOne: true`, which the README recommends: a second replica of a time-sliced GPU adds no
  compute or memory (CUDA time-slices all clients equally), and Karpenter could not launch a node for a request
  above the type's physical GPU count anyway (components/gpu_pool.py). Containers on such pools ask for one unit.
- MIG pools get `migStrategy: single`, which advertises MIG devices as `nvidia.com/gpu` (internal/rm/rm.go
  `AddDefaultResourcesToConfig` maps every MIG profile to `gpu`) and refuses nodes whose GPUs mix MIG and non-MIG
  or profiles (internal/rm/device_map.go). gpu-feature-discovery is not needed for that: it only labels nodes
  (`nvidia.com/gpu.product` etc.), and pools are selected by `mlplatform.io/gpu-pool` here, so gfd and NFD stay off.
  The MIG devices are created at boot by the pool's node class (components/gpu_pool.py `mig_user_data`).

With a config map the chart adds the SYS_ADMIN capability to the plugin container and sets
NVIDIA_MIG_MONITOR_DEVICES (templates/_helpers.tpl `requiresCapSysAdmin`, `allPossibleMigStrategiesAreNone`); the
plugin runs in kube-system. Without sharing pools no config map is set and the chart renders as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.gpu_pool import (DEFAULT_PLUGIN_CONFIG, GPU_PRESENT_LABEL, GPU_TAINT, device_plugin_config_name,
                                 sharing_mode)
from platform_config import GpuPoolConfig
from platform_config.versions import NVIDIA_DEVICE_PLUGIN_REPO, NVIDIA_DEVICE_PLUGIN_VERSION

NAMESPACE = "kube-system"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True, kw_only=True)
class NvidiaDevicePluginArgs:
    k8s_provider: k8s.Provider
    gpu_pools: Sequence[GpuPoolConfig] = ()
    """Every GPU pool of the stack: each sharing pool gets its own plugin config."""
    depends_on: Sequence[pulumi.Resource] = ()


def plugin_config(cfg: GpuPoolConfig | None) -> dict:
    """The plugin's config file (api/config/v1 `Config`) for one pool; None is the unshared default."""
    mode = "none" if cfg is None else sharing_mode(cfg)
    config: dict = {"version": "v1", "flags": {"migStrategy": "single" if mode == "mig" else "none"}}
    if mode == "time-slicing":
        config["sharing"] = {"timeSlicing": {
            "renameByDefault": False,
            "failRequestsGreaterThanOne": True,
            "resources": [{"name": GPU_RESOURCE, "replicas": cfg.sharing.time_slicing_replicas}],
        }}
    return config


def plugin_config_map(gpu_pools: Sequence[GpuPoolConfig]) -> dict[str, str]:
    """`config.map`: name -> config file text; empty when no pool shares (the chart then renders no config-manager)."""
    sharing = [p for p in gpu_pools if sharing_mode(p) != "none"]
    if not sharing:
        return {}
    configs = {DEFAULT_PLUGIN_CONFIG: plugin_config(None)}
    for pool in sharing:
        name = device_plugin_config_name(pool)
        if name in configs:
            raise ValueError(f"GPU pools share the device plugin config name {name}")
        configs[name] = plugin_config(pool)
    return {name: yaml.safe_dump(body, sort_keys=False) for name, body in configs.items()}


def device_plugin_values(gpu_pools: Sequence[GpuPoolConfig] = ()) -> dict:
    values = {
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
    config_map = plugin_config_map(gpu_pools)
    if config_map:
        # An explicit default, so a node without the label (or a new pool) gets whole GPUs, never a fallback guess.
        values["config"] = {"map": config_map, "default": DEFAULT_PLUGIN_CONFIG}
    return values


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
            values=device_plugin_values(args.gpu_pools),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on)),
        )
        self.register_outputs({"chart_version": NVIDIA_DEVICE_PLUGIN_VERSION})
