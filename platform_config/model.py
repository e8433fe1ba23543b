"""The typed stack config. Every field's default is stated here; stack files override them per environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from platform_config.services_model import ServicesConfig
from platform_config.teams_model import ModelConfig, TeamConfig

NatMode = Literal["single", "perAz"]
CapacityType = Literal["spot", "on-demand"]
IdentityMode = Literal["pod-identity", "irsa"]


@dataclass(frozen=True)
class NetworkConfig:
    cidr: ipaddress.IPv4Network
    """`vpcCidr`, default 10.0.0.0/16. Split into one private and one public subnet per AZ."""
    availability_zones: list[str]
    """`availabilityZones`, required, 2 to 6 zones of `aws:region`."""
    nat_gateways: NatMode = "single"
    """`natGateways`: `single` (cheap, one AZ's NAT is a single point of failure) or `perAz` (one per AZ)."""
    flow_logs: bool = False
    """`flowLogs.enabled`, default false: VPC flow logs to CloudWatch Logs."""
    flow_log_retention_days: int = 30
    """`flowLogs.retentionDays`, default 30 (one of CloudWatch Logs' retention values)."""
    transit_gateway_id: str = ""
    """`transitGateway.id`: attach the VPC's private subnets to this Transit Gateway (e.g. a network hub's, shared
    through RAM) and route `transitGateway.cidrs` through it; empty attaches nothing."""
    transit_gateway_cidrs: list[str] = field(default_factory=list)
    """`transitGateway.cidrs`: the networks behind the Transit Gateway (CI runners, VPN) that the private subnets
    route to; required with `transitGateway.id`."""


@dataclass(frozen=True)
class DataLakeConfig:
    protect: bool = True
    """`dataLake.protect`, default true: buckets and the key are protected and retained on `pulumi destroy`."""
    force_destroy: bool = False
    """`dataLake.forceDestroy`, default false: let `pulumi destroy` empty buckets. Conflicts with `protect`."""
    raw_infrequent_access_days: int = 30
    """`dataLake.rawInfrequentAccessDays`, default 30: raw objects move to STANDARD_IA after this many days."""
    raw_glacier_days: int = 180
    """`dataLake.rawGlacierDays`, default 180: raw objects move to GLACIER_IR; must exceed the IA transition."""
    noncurrent_version_days: int = 90
    """`dataLake.noncurrentVersionDays`, default 90: overwritten or deleted versions are removed after this."""
    access_log_retention_days: int = 365
    """`dataLake.accessLogRetentionDays`, default 365."""
    kms_deletion_window_days: int = 30
    """`dataLake.kmsDeletionWindowDays`, default 30 (AWS allows 7 to 30)."""


@dataclass(frozen=True)
class NodeGroupConfig:
    instance_types: list[str]
    """`systemNodes.instanceTypes`, default [m6i.large, m6a.large]."""
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_size_gib: int = 50


# Current-generation x86 types of 4-8 vCPUs: big enough for Kafka brokers and Prometheus, small enough to pack.
GENERAL_INSTANCE_TYPES = ("m6i.xlarge", "m6a.xlarge", "m7i.xlarge", "m6i.2xlarge", "m6a.2xlarge", "m7i.2xlarge",
                          "r6i.xlarge", "r7i.xlarge", "c6i.2xlarge", "c7i.2xlarge")


@dataclass(frozen=True)
class GeneralPoolConfig:
    """The untainted Karpenter pool for platform services and CPU workloads; the system group keeps what must not
    move (Karpenter itself, metrics-server)."""
    instance_types: list[str] = field(default_factory=lambda: list(GENERAL_INSTANCE_TYPES))
    """`generalPool.instanceTypes`: CPU types from platform_config/instance_catalog.py."""
    capacity_types: list[CapacityType] = field(default_factory=lambda: ["on-demand"])
    """`generalPool.capacityTypes`, default [on-demand]; [spot, on-demand] lets Karpenter prefer spot and fall back."""
    max_cpu: int = 32
    """`generalPool.maxCpu`, default 32: the pool's vCPU limit (Karpenter counts node capacity)."""
    max_memory_gib: int = 128
    """`generalPool.maxMemoryGiB`, default 128: the pool's memory limit."""
    disk_size_gib: int = 100
    """`generalPool.diskSizeGiB`, default 100: root volume per node (images, emptyDirs)."""
    consolidate_after: str = "10m"
    """`generalPool.consolidateAfter`, default 10m: how long an empty or underused node waits before removal."""


@dataclass(frozen=True)
class GpuSharing:
    """How a pool's physical GPUs are split into schedulable `nvidia.com/gpu` units; at most one of the two."""
    time_slicing_replicas: int = 0
    """`gpuPools[i].sharing.timeSlicing.replicas`: each GPU is advertised this many times (no memory isolation)."""
    mig_profile: str = ""
    """`gpuPools[i].sharing.mig`: a MIG profile (e.g. `1g.10gb`) every GPU of the pool is partitioned into; only on
    MIG-capable GPUs (platform_config/gpu_catalog.py)."""
    units_per_gpu: int = 1
    """Derived: schedulable units per physical GPU (the replicas, or the profile's instances per GPU)."""


@dataclass(frozen=True)
class GpuPoolConfig:
    name: str
    """`gpuPools[i].name`: lower-case, used in the NodePool name and the `mlplatform.io/gpu-pool` label."""
    instance_types: list[str]
    """`gpuPools[i].instanceTypes`: from the GPU catalog (platform_config/gpu_catalog.py)."""
    max_gpus_per_node: int
    """Derived from the catalog (the largest type's GPU count); not a config key."""
    capacity_type: CapacityType = "on-demand"
    """`gpuPools[i].capacityType`: `spot` or `on-demand`."""
    max_nodes: int = 2
    """`gpuPools[i].maxNodes`, default 2: the pool's node limit; its GPU limit is maxNodes x the largest type's GPUs."""
    disk_size_gib: int = 200
    """`gpuPools[i].diskSizeGiB`, default 200: CUDA images are large."""
    consolidate_after: str = "10m"
    """`gpuPools[i].consolidateAfter`, default 10m: how long an empty GPU node lives before it is removed."""
    sharing: GpuSharing = field(default_factory=GpuSharing)
    """`gpuPools[i].sharing`: time-slicing or MIG; default none (one pod per GPU)."""

    @property
    def max_gpus(self) -> int:
        """Physical GPUs: the NodePool's `nvidia.com/gpu` limit (Karpenter counts instance capacity)."""
        return self.max_nodes * self.max_gpus_per_node

    @property
    def max_units(self) -> int:
        """Schedulable `nvidia.com/gpu` units the pool can offer at its node limit: what quotas are measured in."""
        return self.max_gpus * self.sharing.units_per_gpu

    @property
    def max_units_per_node(self) -> int:
        return self.max_gpus_per_node * self.sharing.units_per_gpu


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    """Derived: `<project>-<stack>`; also the Karpenter discovery tag value."""
    version: str
    """`clusterVersion`, default in platform_config/versions.py; must be one whose add-on versions are pinned."""
    endpoint_public_access: bool = False
    """`endpointPublicAccess`, default false: the API server is reachable only from inside the VPC."""
    public_access_cidrs: list[str] = field(default_factory=list)
    """`publicAccessCidrs`: required (and never 0.0.0.0/0) when `endpointPublicAccess` is true."""
    deployer_cidrs: list[str] = field(default_factory=list)
    """`deployerCidrs`: networks `pulumi up` and the preview job run from, admitted on 443 to the API server's
    private endpoint; required when the endpoint is private. Each must be inside the VPC or behind
    `transitGateway.cidrs` (the stack routes those), since the VPC is created by this stack."""
    admin_arns: list[str] = field(default_factory=list)
    """`clusterAdmins`: IAM role/user ARNs (roles with their path) given cluster-admin through access entries. The
    role that runs `pulumi up` must be one of them: EKS's bootstrap entry for the cluster's creator is never used,
    since it collides (409) with an explicit entry for the same role and follows whoever created the cluster."""
    viewer_arns: list[str] = field(default_factory=list)
    """`clusterViewers`: IAM role/user ARNs given read-only access to every object (AmazonEKSAdminViewPolicy), such as
    the pull-request preview role, which must see the cluster to diff it but may change nothing."""
    log_retention_days: int = 90
    """`controlPlaneLogRetentionDays`, default 90."""
    workload_identity: IdentityMode = "pod-identity"
    """`workloadIdentity`: `pod-identity` (default) or `irsa`."""
    deletion_protection: bool = True
    """`clusterDeletionProtection`, default true: EKS refuses to delete the cluster until it is turned off."""
    addon_versions: dict[str, str] = field(default_factory=dict)
    """Pinned EKS add-on versions for `version`, overridable per add-on with `addonVersions`."""


@dataclass(frozen=True)
class PlatformConfig:
    environment: str
    """`environment`, required: dev, staging or prod. Used in names and tags, and for one default (`kafka.flavor`)."""
    region: str
    """`aws:region`, required."""
    network: NetworkConfig
    data_lake: DataLakeConfig
    cluster: ClusterConfig
    system_nodes: NodeGroupConfig
    general_pool: GeneralPoolConfig
    gpu_pools: list[GpuPoolConfig]
    services: ServicesConfig
    teams: list[TeamConfig]
    """`teams`: who shares the cluster's capacity (platform_config/teams_model.py)."""
    models: list[ModelConfig]
    """`models`: each team's models, each with its serving, training and drift workloads."""
    tags: dict[str, str]
    """`tags`: extra tags on every AWS resource (on top of project, stack and environment)."""
