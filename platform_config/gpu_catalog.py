"""GPU instance types the platform knows how to schedule: GPUs per instance, the GPU, and its memory.

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
