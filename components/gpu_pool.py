"""A GPU node pool as a Karpenter NodePool + EC2NodeClass: empty until a pod asks for `nvidia.com/gpu`.

Nodes boot the EKS-optimized AL2023 NVIDIA AMI (driver and container toolkit included), carry the `nvidia.com/gpu`
NoSchedule taint so only pods that tolerate it land there, and are removed once empty for `consolidateAfter`.

Sharing (`gpuPools[i].sharing`): every node is labelled `nvidia.com/device-plugin.config: <config>`, which the
device plugin's config-manager reads to pick the pool's entry of the chart's `config.map`
(components/nvidia_device_plugin.py): time-slicing advertises each GPU `replicas` times, MIG advertises each MIG
device, both as `nvidia.com/gpu`. MIG devices must exist before the plugin starts; the node class's user data
creates them at boot (`mig_user_data`).

Karpenter does not know about sharing: it sizes a node by the instance type's physical GPU count
(aws/karpenter-provider-aws@v1.14.1 pkg/providers/instancetype/types.go `nvidiaGPUs`) and checks a pending pod
against that (kubernetes-sigs/karpenter@6e7eab7a0f48 pkg/controllers/provisioning/scheduling/nodeclaim.go `fits`).
So the NodePool's `nvidia.com/gpu` limit stays physical, a pod asking for more units than a type has physical GPUs
never gets a node launched for it, and a burst of one-unit pods launches one node per physical GPU until the first
node reports its real allocatable (state/statenode.go `Allocatable`); kube-scheduler then packs the pods onto it and
consolidation removes the extra, empty nodes after `consolidateAfter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.node_class import NODE_EXPIRY, KarpenterPoolArgs, base_requirements, node_class_spec
from platform_config import GpuPoolConfig

GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "mlplatform.io/gpu-pool"
# The label the chart's config-manager watches (NVIDIA/k8s-device-plugin@v0.19.3
# deployments/helm/nvidia-device-plugin/templates/daemonset-device-plugin.yml, NODE_LABEL).
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
DEFAULT_PLUGIN_CONFIG = "default"
MIG_SERVICE = "mlplatform-mig.service"


@dataclass(frozen=True, kw_only=True)
class GpuPoolArgs(KarpenterPoolArgs):
    config: GpuPoolConfig


def sharing_mode(cfg: GpuPoolConfig) -> str:
    """`time-slicing`, `mig` or `none`; a config that asks for both, or for too few replicas, is refused here so a
    pool never reaches the plugin with a config it would reject at start."""
    s = cfg.sharing
    if s.time_slicing_replicas and s.mig_profile:
        raise ValueError(f"GPU pool {cfg.name}: sharing takes timeSlicing or mig, not both")
    if s.time_slicing_replicas:
        # The plugin refuses fewer (NVIDIA/k8s-device-plugin@v0.19.3 api/config/v1/replicas.go: "must be >= 2").
        if s.time_slicing_replicas < 2:
            raise ValueError(f"GPU pool {cfg.name}: timeSlicing.replicas must be at least 2")
        return "time-slicing"
    if s.mig_profile:
        if s.units_per_gpu < 1:
            raise ValueError(f"GPU pool {cfg.name}: MIG profile {s.mig_profile} has no instances per GPU")
        return "mig"
    return "none"


def device_plugin_config_name(cfg: GpuPoolConfig) -> str:
    """The `config.map` entry the pool's nodes select: the pool's own when it shares, else the unshared default."""
    if sharing_mode(cfg) == "none":
        return DEFAULT_PLUGIN_CONFIG
    if cfg.name == DEFAULT_PLUGIN_CONFIG:
        raise ValueError(f"GPU pool {cfg.name}: a sharing pool cannot be named like the unshared default config")
    return cfg.name


def mig_user_data(cfg: GpuPoolConfig) -> str:
    """A shell script for the EC2NodeClass `userData` of a MIG pool.

    Karpenter 1.14.1 turns a shell script into a MIME part placed before its own NodeConfig
    (aws/karpenter-provider-aws@v1.14.1 website/content/en/docs/concepts/nodeclasses.md, "spec.userData", AL2023).
    cloud-init runs it in cloud-final, and nodeadm starts kubelet only after cloud-final
    (awslabs/amazon-eks-ami@v20260714 templates/al2023/runtime/rootfs/etc/systemd/system/nodeadm-run.service), so
    the MIG devices exist before kubelet and the device plugin do.

    The partitioning itself is a systemd unit, as NVIDIA's host-level mig-manager is (NVIDIA/mig-parted@v0.9.1
    deployments/systemd/nvidia-mig-manager.service: after nvidia-persistenced and nvidia-fabricmanager): MIG devices
    do not survive a reboot, and user data runs once per instance. When a GPU reset cannot apply MIG mode (GPU
    passthrough), the node reboots once to apply it, as mig-parted's service does. Any failure powers the instance
    off rather than letting it join with whole GPUs under a pool whose quotas count slices; Karpenter then drops the
    unregistered NodeClaim (kubernetes-sigs/karpenter@6e7eab7a0f48 pkg/controllers/nodeclaim/lifecycle/liveness.go,
    15 minutes) and launches another.
    """
    s = cfg.sharing
    if sharing_mode(cfg) != "mig":
        raise ValueError(f"GPU pool {cfg.name} is not a MIG pool")
    return f"""#!/bin/bash
# mlplatform: MIG partitioning for GPU pool {cfg.name} ({s.units_per_gpu} x {s.mig_profile} per GPU)
set -euo pipefail
install -d /etc/mlplatform
cat > /etc/mlplatform/mig-partition.sh <<'SCRIPT'
#!/bin/bash
set -euo pipefail
MIG_PROFILE={s.mig_profile}
INSTANCES_PER_GPU={s.units_per_gpu}
not_enabled() {{ [ "$(nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader | sort -u)" != Enabled ]; }}
if not_enabled; then
  nvidia-smi -mig 1
  if not_enabled; then
    # All GPUs at once: NVSwitch systems reset together (mig-parted resets the same way).
    nvidia-smi -r -i "$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader | paste -sd, -)" || true
  fi
  if not_enabled; then
    if [ -e /var/lib/mlplatform/mig-rebooted ]; then
      echo "MIG mode is still not enabled after a reboot" >&2
      exit 1
    fi
    install -d /var/lib/mlplatform
    touch /var/lib/mlplatform/mig-rebooted
    systemctl reboot
    sleep infinity
  fi
fi
profiles=$MIG_PROFILE
for _ in $(seq 2 "$INSTANCES_PER_GPU"); do profiles="$profiles,$MIG_PROFILE"; done
for gpu in $(nvidia-smi --query-gpu=index --format=csv,noheader); do
  nvidia-smi mig -i "$gpu" -cgi "$profiles" -C
done
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
# Every MIG device is listed with a MIG- UUID; the plugin itself refuses a node with mixed profiles.
made=$(nvidia-smi -L | grep -c "UUID: MIG-" || true)
if [ "$made" -ne $((gpus * INSTANCES_PER_GPU)) ]; then
  echo "created $made $MIG_PROFILE MIG devices, expected $((gpus * INSTANCES_PER_GPU))" >&2
  exit 1
fi
SCRIPT
cat > /etc/systemd/system/{MIG_SERVICE} <<'UNIT'
[Unit]
Description=Partition every GPU into MIG devices before kubelet starts
After=nvidia-persistenced.service nvidia-fabricmanager.service
Before=nodeadm-run.service
OnFailure=poweroff.target
OnFailureJobMode=replace-irreversibly

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=900
ExecStart=/bin/bash /etc/mlplatform/mig-partition.sh

[Install]
WantedBy=multi-user.target
RequiredBy=nodeadm-run.service
UNIT
systemctl daemon-reload
systemctl enable {MIG_SERVICE}
# On this first boot kubelet's start is already queued: holding cloud-final keeps it waiting until poweroff.
systemctl start {MIG_SERVICE} || sleep infinity
"""


def gpu_node_class_spec(args: GpuPoolArgs) -> dict:
    return node_class_spec(role=args.node_role_name, cluster_name=args.cluster_name,
                           security_group_id=args.cluster_security_group_id, disk_size_gib=args.config.disk_size_gib,
                           tags={POOL_LABEL: args.config.name},
                           user_data=mig_user_data(args.config) if sharing_mode(args.config) == "mig" else None)


def node_pool_spec(cfg: GpuPoolConfig, node_class: str) -> dict:
    return {
        "template": {
            "metadata": {"labels": {POOL_LABEL: cfg.name, GPU_PRESENT_LABEL: "true",
                                    DEVICE_PLUGIN_CONFIG_LABEL: device_plugin_config_name(cfg)}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
                "requirements": base_requirements(cfg.instance_types, [cfg.capacity_type]),
                "taints": [GPU_TAINT],
                "expireAfter": NODE_EXPIRY,
            },
        },
        # Both bounds: `nodes` is the configured maxNodes, the GPU limit follows from the largest type's count.
        # Physical GPUs, not units: Karpenter counts the instance type's GPUs against it (see the module docstring).
        "limits": {"nodes": str(cfg.max_nodes), "nvidia.com/gpu": str(cfg.max_gpus)},
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": cfg.consolidate_after,
                       "budgets": [{"nodes": "10%"}]},
    }


class GpuPool(pulumi.ComponentResource):
    node_pool_name: str

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:GpuPool", name, None, opts)
        pool = args.config.name
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        node_class = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": pool, "labels": {POOL_LABEL: pool}}, spec=gpu_node_class_spec(args), opts=k8s_opts)
        k8s.apiextensions.CustomResource(
            f"{name}-nodepool", api_version="karpenter.sh/v1", kind="NodePool",
            metadata={"name": pool, "labels": {POOL_LABEL: pool}}, spec=node_pool_spec(args.config, pool),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, node_class]))
        self.node_pool_name = pool
        self.register_outputs({"node_pool": pool, "max_nodes": args.config.max_nodes,
                               "max_gpus": args.config.max_gpus, "max_units": args.config.max_units})
