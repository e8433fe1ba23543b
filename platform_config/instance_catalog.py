"""EC2 instance types the stacks use or allow, as the scheduler sees them: vCPUs, memory, max pods, allocatable.

Vendored data, not looked up: vCPUs (`karpenter.k8s.aws/instance-cpu`), memory in MiB
(`karpenter.k8s.aws/instance-memory`) and max pods (VPC CNI without prefix delegation: ENIs on the default card ×
(IPv4 addresses per ENI − 1) + 2) come from Karpenter's instance-type reference, aws/karpenter-provider-aws
`website/content/en/v1.14/reference/instance-types.md` (the docs published for v1.14.x, on `main` at 1d927085d "docs:
update for patch release v1.14.1"; the `v1.14.1` tag itself still carries them as `docs/`). That page also lists the
allocatable Karpenter computes for AL2023 ("Resources"); it is kept beside each type (`published_*`) so a test holds
`allocatable()` to it. The p3 types are not on the v1.13+ pages; theirs come from the same file under `v1.12/`.
Only amd64 types are listed. Add a type by copying its row from that page.

`allocatable()` is EKS's AL2023 reservation, which Karpenter v1.14.1 (`pkg/providers/instancetype/types.go`:
`kubeReservedResources`, `evictionThreshold`, `memory`) and nodeadm (awslabs/amazon-eks-ami v20260724,
`nodeadm/internal/kubelet/config.go`: `getCPUMillicoresToReserve`, `getMemoryMebibytesToReserve`, `evictionHard`)
compute alike. The VM memory overhead is Karpenter's `--vm-memory-overhead-percent` default (0.075,
`pkg/operator/options/options.go`), which Karpenter subtracts before it has seen a real node of the type; nodeadm has
no such term because the kubelet reads the real MemTotal, which AWS does not publish, so the same 7.5 % stands in for
it on managed node groups too (an estimate there).
"""

from __future__ import annotations

import math
from typing import NamedTuple

VM_MEMORY_OVERHEAD_PERCENT = 0.075
EVICTION_HARD_MEMORY_MIB = 100
# (from, to) millicores and the share of them kube-reserved takes: 6 % of the first core, 1 % of the second,
# 0.5 % of cores 3-4, 0.25 % of the rest.
KUBE_RESERVED_CPU = ((0, 1000, 0.06), (1000, 2000, 0.01), (2000, 4000, 0.005), (4000, 1 << 31, 0.0025))


class InstanceType(NamedTuple):
    vcpus: int
    memory_mib: int
    max_pods: int
    published_cpu_m: int
    published_memory_mib: int


INSTANCE_TYPES: dict[str, InstanceType] = {
    "m6i.large": InstanceType(2, 8192, 29, 1930, 6903),
    "m6i.xlarge": InstanceType(4, 16384, 58, 3920, 14162),
    "m6i.2xlarge": InstanceType(8, 32768, 58, 7910, 29317),
    "m6i.4xlarge": InstanceType(16, 65536, 234, 15890, 57691),

    "m6a.large": InstanceType(2, 8192, 29, 1930, 6903),
    "m6a.xlarge": InstanceType(4, 16384, 58, 3920, 14162),
    "m6a.2xlarge": InstanceType(8, 32768, 58, 7910, 29317),
    "m6a.4xlarge": InstanceType(16, 65536, 234, 15890, 57691),

    "m7i.large": InstanceType(2, 8192, 29, 1930, 6903),
    "m7i.xlarge": InstanceType(4, 16384, 58, 3920, 14162),
    "m7i.2xlarge": InstanceType(8, 32768, 58, 7910, 29317),
    "m7i.4xlarge": InstanceType(16, 65536, 234, 15890, 57691),

    "c6i.large": InstanceType(2, 4096, 29, 1930, 3114),
    "c6i.xlarge": InstanceType(4, 8192, 58, 3920, 6584),
    "c6i.2xlarge": InstanceType(8, 16384, 58, 7910, 14162),
    "c6i.4xlarge": InstanceType(16, 32768, 234, 15890, 27381),

    "c7i.large": InstanceType(2, 4096, 29, 1930, 3114),
    "c7i.xlarge": InstanceType(4, 8192, 58, 3920, 6584),
    "c7i.2xlarge": InstanceType(8, 16384, 58, 7910, 14162),
    "c7i.4xlarge": InstanceType(16, 32768, 234, 15890, 27381),

    "r6i.large": InstanceType(2, 16384, 29, 1930, 14481),
    "r6i.xlarge": InstanceType(4, 32768, 58, 3920, 29317),
    "r6i.2xlarge": InstanceType(8, 65536, 58, 7910, 59627),
    "r6i.4xlarge": InstanceType(16, 131072, 234, 15890, 118312),

    "r7i.large": InstanceType(2, 16384, 29, 1930, 14481),
    "r7i.xlarge": InstanceType(4, 32768, 58, 3920, 29317),
    "r7i.2xlarge": InstanceType(8, 65536, 58, 7910, 59627),
    "r7i.4xlarge": InstanceType(16, 131072, 234, 15890, 118312),

    "g4dn.xlarge": InstanceType(4, 16384, 29, 3920, 14481),
    "g4dn.2xlarge": InstanceType(8, 32768, 29, 7910, 29636),
    "g4dn.4xlarge": InstanceType(16, 65536, 29, 15890, 59946),
    "g4dn.8xlarge": InstanceType(32, 131072, 58, 31850, 120248),
    "g4dn.16xlarge": InstanceType(64, 262144, 58, 63770, 241490),
    "g4dn.12xlarge": InstanceType(48, 196608, 234, 47810, 178933),
    "g4dn.metal": InstanceType(96, 393216, 737, 95690, 355262),

    "g5.xlarge": InstanceType(4, 16384, 58, 3920, 14162),
    "g5.2xlarge": InstanceType(8, 32768, 58, 7910, 29317),
    "g5.4xlarge": InstanceType(16, 65536, 234, 15890, 57691),
    "g5.8xlarge": InstanceType(32, 131072, 234, 31850, 118312),
    "g5.16xlarge": InstanceType(64, 262144, 234, 63770, 239554),
    "g5.12xlarge": InstanceType(48, 196608, 737, 47810, 173400),
    "g5.24xlarge": InstanceType(96, 393216, 737, 95690, 355262),
    "g5.48xlarge": InstanceType(192, 786432, 345, 191450, 723299),

    "g6.xlarge": InstanceType(4, 16384, 58, 3920, 14162),
    "g6.2xlarge": InstanceType(8, 32768, 58, 7910, 29317),
    "g6.4xlarge": InstanceType(16, 65536, 234, 15890, 57691),
    "g6.8xlarge": InstanceType(32, 131072, 234, 31850, 118312),
    "g6.16xlarge": InstanceType(64, 262144, 737, 63770, 234021),
    "g6.12xlarge": InstanceType(48, 196608, 234, 47810, 178933),
    "g6.24xlarge": InstanceType(96, 393216, 737, 95690, 355262),
    "g6.48xlarge": InstanceType(192, 786432, 737, 191450, 718987),

    "g6e.xlarge": InstanceType(4, 32768, 58, 3920, 29317),
    "g6e.2xlarge": InstanceType(8, 65536, 58, 7910, 59627),
    "g6e.4xlarge": InstanceType(16, 131072, 234, 15890, 118312),
    "g6e.8xlarge": InstanceType(32, 262144, 234, 31850, 239554),
    "g6e.16xlarge": InstanceType(64, 524288, 737, 63770, 476504),
    "g6e.12xlarge": InstanceType(48, 393216, 292, 47810, 360157),
    "g6e.24xlarge": InstanceType(96, 786432, 492, 95690, 721682),
    "g6e.48xlarge": InstanceType(192, 1572864, 492, 191450, 1449132),

    "p4d.24xlarge": InstanceType(96, 1179648, 737, 95690, 1082712),

    "p4de.24xlarge": InstanceType(96, 1179648, 737, 95690, 1082712),

    "p5.48xlarge": InstanceType(192, 2097152, 100, 191450, 1938410),

    "p5e.48xlarge": InstanceType(192, 2097152, 100, 191450, 1938410),

    "p5en.48xlarge": InstanceType(192, 2097152, 198, 191450, 1937332),
}

# From the v1.12 page (same generator, same assumptions): later pages do not list the p3 family.
INSTANCE_TYPES.update({
    "p3.2xlarge": InstanceType(8, 62464, 58, 7910, 56786),
    "p3.8xlarge": InstanceType(32, 249856, 234, 31850, 228187),
    "p3.16xlarge": InstanceType(64, 499712, 234, 63770, 459304),
})


def capacity(instance_type: str) -> tuple[int, int]:
    """(cpu millicores, memory MiB) a node of this type reports, which is also what NodePool limits count."""
    it = INSTANCE_TYPES[instance_type]
    return it.vcpus * 1000, it.memory_mib - math.ceil(it.memory_mib * VM_MEMORY_OVERHEAD_PERCENT)


def allocatable(instance_type: str) -> tuple[int, int]:
    """(cpu millicores, memory MiB) left for pods (DaemonSets included) after kube-reserved and hard eviction."""
    cpu, memory = capacity(instance_type)
    reserved_cpu = sum(int((min(cpu, end) - start) * share) for start, end, share in KUBE_RESERVED_CPU if cpu > start)
    reserved_memory = 11 * INSTANCE_TYPES[instance_type].max_pods + 255
    return cpu - reserved_cpu, memory - reserved_memory - EVICTION_HARD_MEMORY_MIB
