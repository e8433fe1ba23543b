"""GPU instance types the platform knows how to schedule: GPUs per instance, the GPU, its memory, and its MIG profiles.

A pool's GPU limit is derived from these counts, and a typo in an instance type would otherwise surface only when
Karpenter finds nothing to launch; so unknown types are rejected at config time. Add a type here to allow it.
"""

from __future__ import annotations

from typing import NamedTuple


class GpuInstance(NamedTuple):
    gpus: int
    gpu: str
    gpu_memory_gib: int


def _family(gpu: str, memory: int, sizes: dict[int, list[str]], prefix: str) -> dict[str, GpuInstance]:
    return {f"{prefix}.{size}": GpuInstance(count, gpu, memory) for count, names in sizes.items() for size in names}


GPU_INSTANCE_TYPES: dict[str, GpuInstance] = {
    **_family("T4", 16, {1: ["xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"], 4: ["12xlarge"], 8: ["metal"]}, "g4dn"),
    **_family("A10G", 24, {1: ["xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"], 4: ["12xlarge", "24xlarge"],
                           8: ["48xlarge"]}, "g5"),
    **_family("L4", 24, {1: ["xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"], 4: ["12xlarge", "24xlarge"],
                         8: ["48xlarge"]}, "g6"),
    **_family("L40S", 48, {1: ["xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"], 4: ["12xlarge", "24xlarge"],
                           8: ["48xlarge"]}, "g6e"),
    **_family("V100", 16, {1: ["2xlarge"], 4: ["8xlarge"], 8: ["16xlarge"]}, "p3"),
    **_family("A100", 40, {8: ["24xlarge"]}, "p4d"),
    **_family("A100", 80, {8: ["24xlarge"]}, "p4de"),
    **_family("H100", 80, {8: ["48xlarge"]}, "p5"),
    **_family("H200", 141, {8: ["48xlarge"]}, "p5e"),
    **_family("H200", 141, {8: ["48xlarge"]}, "p5en"),
}

# MIG profiles per (GPU, memory GiB as in GPU_INSTANCE_TYPES) -> GPU instances of that profile one GPU holds when
# the whole GPU is partitioned into it (`gpuPools[i].sharing.mig`). Source: NVIDIA Multi-Instance GPU User Guide,
# "Supported MIG Profiles" (https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html:
# "Number of Instances Available"), cross-checked against the all-<profile> configs NVIDIA's MIG manager applies
# (github.com/NVIDIA/mig-parted, deployments/systemd/config-default.yaml @ 5ffc59fe). The +me (media extension)
# profiles are left out: only one of them fits a GPU, so they cannot partition a whole GPU uniformly.
# The T4, A10G, L4, L40S and V100 have no MIG, so they have no row.
MIG_PROFILES: dict[tuple[str, int], dict[str, int]] = {
    ("A100", 40): {"1g.5gb": 7, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1},
    ("A100", 80): {"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1},
    ("H100", 80): {"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1},
    ("H200", 141): {"1g.18gb": 7, "1g.35gb": 4, "2g.35gb": 3, "3g.71gb": 2, "4g.71gb": 1, "7g.141gb": 1},
}


def mig_profiles(instance_type: str) -> dict[str, int]:
    """The MIG profiles of an instance type's GPU (empty when the GPU has no MIG)."""
    gpu = GPU_INSTANCE_TYPES[instance_type]
    return MIG_PROFILES.get((gpu.gpu, gpu.gpu_memory_gib), {})
