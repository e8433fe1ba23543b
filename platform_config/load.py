"""Parse and validate the stack config into `PlatformConfig`, reporting every problem in one `ConfigError`."""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any, Mapping

from platform_config.gpu_catalog import GPU_INSTANCE_TYPES, MIG_PROFILES, mig_profiles
from platform_config.instance_catalog import INSTANCE_TYPES
from platform_config.model import (GENERAL_INSTANCE_TYPES, ClusterConfig, DataLakeConfig, GeneralPoolConfig,
                                   GpuPoolConfig, GpuSharing, NetworkConfig, NodeGroupConfig, PlatformConfig)
from platform_config.load_services import load_services
from platform_config.load_teams import load_models, load_teams
from platform_config.reader import IAM_PRINCIPAL, ConfigError, Problems, Section, decode
from platform_config.versions import (DEFAULT_CLUSTER_VERSION, EKS_ADDON_VERSIONS, EKS_END_OF_STANDARD_SUPPORT,
                                      SUPPORT_WARNING_DAYS)

_NAME = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"
_DURATION = r"[1-9][0-9]*(s|m|h)"
_IAM_PRINCIPAL = IAM_PRINCIPAL
# Time-slicing: 1 would change nothing; past 16 a replica of a 16 GiB T4 has under 1 GiB, less than a CUDA context
# and a model need, and nothing isolates one replica's memory from another's.
TIME_SLICING_REPLICAS = (2, 16)
_TRANSIT_GATEWAY = r"tgw-[0-9a-f]{8}([0-9a-f]{9})?"
# CloudWatch Logs accepts only these retention periods (pulumi_aws LogGroup.retention_in_days); 0 keeps logs forever,
# which the platform does not allow.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)


def load_config(values: Mapping[str, str], project: str, stack: str) -> PlatformConfig:
    """`values` is the flat `namespace:key -> text` map the Pulumi language host provides."""
    problems = Problems()
    ns = f"{project}:"
    raw = {k[len(ns):]: decode(v) for k, v in values.items() if k.startswith(ns)}
    top = Section(raw, project, problems, separator=":")
    region = values.get("aws:region", "")
    if not region:
        problems.add("aws:region", "required; set it with `pulumi config set aws:region us-east-1`")

    environment = top.string("environment", choices=("dev", "staging", "prod"))
    network = _network(top, region)
    data_lake = _data_lake(top.section("dataLake"))
    cluster = _cluster(top, f"{project}-{stack}", network)
    system_nodes = _system_nodes(top.section("systemNodes"))
    general_pool = _general_pool(top.section("generalPool"))
    gpu_pools = _gpu_pools(top)
    services = load_services(top, environment, len(network.availability_zones), gpu_pools)
    teams = load_teams(top, cluster, general_pool, gpu_pools)
    models = load_models(top, teams, gpu_pools, services)
    tags = top.string_map("tags")
    top.finish()
    if problems.items:
        raise ConfigError(stack, problems.items)
    return PlatformConfig(environment=environment, region=region, network=network, data_lake=data_lake,
                          cluster=cluster, system_nodes=system_nodes, general_pool=general_pool,
                          gpu_pools=gpu_pools, services=services, teams=teams, models=models,
                          tags=tags)


def _network(top: Section, region: str) -> NetworkConfig:
    cidr = top.cidr("vpcCidr", "10.0.0.0/16", min_prefix=16, max_prefix=20)
    zones = top.string_list("availabilityZones", [], min_items=2)
    if len(zones) > 6:
        top.problems.add(top.key("availabilityZones"), f"at most 6 zones are supported, got {len(zones)}")
    for zone in zones:
        if region and not (zone.startswith(region) and len(zone) == len(region) + 1):
            top.problems.add(top.key("availabilityZones"), f"{zone!r} is not a zone of aws:region {region!r} "
                                                            f"(expected e.g. {region}a)")
    nat = top.string("natGateways", "single", choices=("single", "perAz"))
    flow = top.section("flowLogs")
    enabled = flow.boolean("enabled", False)
    retention = log_retention(flow, "retentionDays", 30)
    flow.finish()
    vpc = cidr or ipaddress.IPv4Network("10.0.0.0/16")
    tgw = top.section("transitGateway")
    tgw_id = tgw.string("id", "", pattern=_TRANSIT_GATEWAY,
                        hint=" (a Transit Gateway id such as tgw-0123456789abcdef0)")
    tgw_cidrs = [str(n) for n in _cidrs(tgw, "cidrs")]
    for text in tgw_cidrs:
        if ipaddress.IPv4Network(text).overlaps(vpc):
            tgw.problems.add(tgw.key("cidrs"), f"{text} overlaps the VPC ({vpc}); list only networks behind the "
                                               "Transit Gateway")
    if tgw_id and not tgw_cidrs:
        tgw.problems.add(tgw.key("cidrs"), "required with transitGateway.id: the networks the private subnets route "
                                           "through it (CI runners, VPN)")
    if tgw_cidrs and not tgw_id:
        tgw.problems.add(tgw.key("id"), "required with transitGateway.cidrs")
    tgw.finish()
    return NetworkConfig(cidr=vpc, availability_zones=zones, nat_gateways=nat, flow_logs=enabled,
                         flow_log_retention_days=retention, transit_gateway_id=tgw_id,
                         transit_gateway_cidrs=tgw_cidrs)


def log_retention(s: Section, name: str, default: int) -> int:
    days = s.integer(name, default, minimum=1, maximum=3653)
    if days not in LOG_RETENTION_DAYS:
        s.problems.add(s.key(name), f"{days} is not a CloudWatch Logs retention period; use one of "
                                    f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
    return days


def _cidrs(s: Section, name: str) -> list[ipaddress.IPv4Network]:
    networks = []
    for text in s.string_list(name, []):
        try:
            network = ipaddress.IPv4Network(text)
        except ValueError:
            s.problems.add(s.key(name), f"{text!r} is not an IPv4 CIDR block")
            continue
        if network.prefixlen == 0:
            s.problems.add(s.key(name), "0.0.0.0/0 is the whole internet; list your runner or VPN ranges instead")
            continue
        networks.append(network)
    return networks


def _data_lake(s: Section) -> DataLakeConfig:
    lake = DataLakeConfig(
        protect=s.boolean("protect", True),
        force_destroy=s.boolean("forceDestroy", False),
        raw_infrequent_access_days=s.integer("rawInfrequentAccessDays", 30, minimum=30, maximum=3650),
        raw_glacier_days=s.integer("rawGlacierDays", 180, minimum=31, maximum=3650),
        noncurrent_version_days=s.integer("noncurrentVersionDays", 90, minimum=1, maximum=3650),
        access_log_retention_days=s.integer("accessLogRetentionDays", 365, minimum=1, maximum=3650),
        kms_deletion_window_days=s.integer("kmsDeletionWindowDays", 30, minimum=7, maximum=30),
    )
    if lake.protect and lake.force_destroy:
        s.problems.add(s.key("forceDestroy"), "true conflicts with dataLake.protect=true; protected data is never "
                                              "destroyed, so set one of them to false")
    if lake.raw_glacier_days <= lake.raw_infrequent_access_days:
        s.problems.add(s.key("rawGlacierDays"), f"{lake.raw_glacier_days} must be greater than "
                                                f"rawInfrequentAccessDays ({lake.raw_infrequent_access_days})")
    s.finish()
    return lake


def _cluster(top: Section, name: str, network: NetworkConfig) -> ClusterConfig:
    version = top.string("clusterVersion", DEFAULT_CLUSTER_VERSION, choices=EKS_ADDON_VERSIONS)
    public = top.boolean("endpointPublicAccess", False)
    cidrs = top.string_list("publicAccessCidrs", [])
    for text in cidrs:
        try:
            if ipaddress.IPv4Network(text).prefixlen == 0:
                top.problems.add(top.key("publicAccessCidrs"), "0.0.0.0/0 opens the API server to the internet; "
                                                               "list your office or VPN ranges instead")
        except ValueError:
            top.problems.add(top.key("publicAccessCidrs"), f"{text!r} is not an IPv4 CIDR block")
    if public and not cidrs:
        top.problems.add(top.key("publicAccessCidrs"), "required when endpointPublicAccess is true; list the CIDR "
                                                       "blocks allowed to reach the API server")
    if cidrs and not public:
        top.problems.add(top.key("publicAccessCidrs"), "set, but endpointPublicAccess is false; remove it or set "
                                                       "endpointPublicAccess: true")
    deployers = _cidrs(top, "deployerCidrs")
    routed = [network.cidr, *(ipaddress.IPv4Network(c) for c in network.transit_gateway_cidrs)]
    for cidr in deployers:
        if not any(cidr.subnet_of(r) for r in routed):
            top.problems.add(top.key("deployerCidrs"), f"{cidr} is neither inside the VPC ({network.cidr}) nor behind "
                                                       "transitGateway.cidrs, so no route reaches it; add it there "
                                                       "with the Transit Gateway it comes through")
    if not public and not deployers:
        top.problems.add(top.key("deployerCidrs"), "required when endpointPublicAccess is false: the API server is "
                                                   "then private, and this stack creates the VPC, so list the "
                                                   "networks pulumi up and the preview job run from (a CI runner "
                                                   "subnet or VPN behind transitGateway)")
    for retired, why in (("bootstrapCreatorAdmin", "EKS's bootstrap entry for the creator collides with an explicit "
                                                   "one for the same role"),
                         ("deployerIsAdmin", "an entry for whoever runs pulumi would change with every caller")):
        if retired in top.raw:
            top.known.add(retired)
            top.problems.add(top.key(retired), f"no longer a setting ({why}); list the deploy role in clusterAdmins "
                                               "and the preview role in clusterViewers")
    admins = top.string_list("clusterAdmins", [])
    viewers = top.string_list("clusterViewers", [])
    for key, arns in (("clusterAdmins", admins), ("clusterViewers", viewers)):
        for arn in arns:
            if not _matches(_IAM_PRINCIPAL, arn):
                top.problems.add(top.key(key), f"{arn!r} is not an IAM role or user ARN "
                                               "(arn:aws:iam::<account>:role/<name>)")
    for arn in sorted(set(admins) & set(viewers)):
        top.problems.add(top.key("clusterViewers"), f"{arn} is also in clusterAdmins; an IAM principal can have only "
                                                    "one access entry, so list it once")
    if not admins:
        top.problems.add(top.key("clusterAdmins"), "required: at least the role that runs pulumi up, or nothing "
                                                   "could manage the cluster's Kubernetes objects")
    overrides = top.string_map("addonVersions")
    known_addons = EKS_ADDON_VERSIONS.get(version, {})
    for addon in sorted(set(overrides) - set(known_addons)):
        top.problems.add(top.key(f"addonVersions.{addon}"), f"unknown add-on; known: {', '.join(sorted(known_addons))}")
    return ClusterConfig(
        name=name, version=version, endpoint_public_access=public, public_access_cidrs=cidrs,
        deployer_cidrs=[str(c) for c in deployers], admin_arns=admins, viewer_arns=viewers,
        log_retention_days=log_retention(top, "controlPlaneLogRetentionDays", 90),
        deletion_protection=top.boolean("clusterDeletionProtection", True),
        workload_identity=top.string("workloadIdentity", "pod-identity", choices=("pod-identity", "irsa")),
        addon_versions={**known_addons, **overrides},
    )


def _system_nodes(s: Section) -> NodeGroupConfig:
    nodes = NodeGroupConfig(
        instance_types=s.string_list("instanceTypes", ["m6i.large", "m6a.large"], min_items=1),
        min_size=s.integer("minSize", 2, minimum=1, maximum=100),
        desired_size=s.integer("desiredSize", 2, minimum=1, maximum=100),
        max_size=s.integer("maxSize", 4, minimum=1, maximum=100),
        disk_size_gib=s.integer("diskSizeGiB", 50, minimum=20, maximum=1000),
    )
    for t in nodes.instance_types:
        if t in GPU_INSTANCE_TYPES:
            s.problems.add(s.key("instanceTypes"), f"{t} is a GPU type; system nodes run add-ons, put GPUs in gpuPools")
    if nodes.min_size > nodes.max_size:
        s.problems.add(s.key("minSize"), f"{nodes.min_size} is above maxSize ({nodes.max_size})")
    if not nodes.min_size <= nodes.desired_size <= nodes.max_size:
        s.problems.add(s.key("desiredSize"), f"{nodes.desired_size} must be between minSize ({nodes.min_size}) "
                                             f"and maxSize ({nodes.max_size})")
    s.finish()
    return nodes


def _general_pool(s: Section) -> GeneralPoolConfig:
    types = s.string_list("instanceTypes", list(GENERAL_INSTANCE_TYPES), min_items=1)
    for t in types:
        if t in GPU_INSTANCE_TYPES:
            s.problems.add(s.key("instanceTypes"), f"{t} is a GPU type; the general pool runs CPU work, put GPUs in "
                                                   "gpuPools")
        elif t not in INSTANCE_TYPES:
            s.problems.add(s.key("instanceTypes"), f"{t!r} is not in platform_config/instance_catalog.py; add its row "
                                                   "(vCPUs, memory, max pods) there first")
    capacity = s.string_list("capacityTypes", ["on-demand"], min_items=1)
    for c in capacity:
        if c not in ("spot", "on-demand"):
            s.problems.add(s.key("capacityTypes"), f"{c!r} is not allowed; use spot and/or on-demand")
    pool = GeneralPoolConfig(
        instance_types=types, capacity_types=capacity,  # type: ignore[arg-type]
        max_cpu=s.integer("maxCpu", 32, minimum=4, maximum=2000),
        max_memory_gib=s.integer("maxMemoryGiB", 128, minimum=8, maximum=16000),
        disk_size_gib=s.integer("diskSizeGiB", 100, minimum=20, maximum=4000),
        consolidate_after=s.string("consolidateAfter", "10m", pattern=_DURATION, hint=" (e.g. 30s, 10m, 1h)"),
    )
    known = [t for t in types if t in INSTANCE_TYPES]
    if known and pool.max_cpu < min(INSTANCE_TYPES[t].vcpus for t in known):
        s.problems.add(s.key("maxCpu"), f"{pool.max_cpu} is below the smallest instance type's vCPUs; no node could "
                                        "ever be launched")
    s.finish()
    return pool


def _gpu_pools(top: Section) -> list[GpuPoolConfig]:
    pools = []
    for s in top.sections("gpuPools", []):
        name = s.string("name", pattern=_NAME, hint=" (lower-case letters, digits and '-', 2-32 characters)")
        types = s.string_list("instanceTypes", [], min_items=1)
        unknown = [t for t in types if t not in GPU_INSTANCE_TYPES]
        for t in unknown:
            s.problems.add(s.key("instanceTypes"), f"{t!r} is not a known GPU instance type; known families: "
                                                   "g4dn, g5, g6, g6e, p3, p4d, p4de, p5, p5e, p5en "
                                                   "(platform_config/gpu_catalog.py)")
        counts = [GPU_INSTANCE_TYPES[t].gpus for t in types if t in GPU_INSTANCE_TYPES]
        pools.append(GpuPoolConfig(
            name=name, instance_types=types, max_gpus_per_node=max(counts, default=1),
            capacity_type=s.string("capacityType", "on-demand", choices=("spot", "on-demand")),
            max_nodes=s.integer("maxNodes", 2, minimum=1, maximum=100),
            disk_size_gib=s.integer("diskSizeGiB", 200, minimum=50, maximum=4000),
            consolidate_after=s.string("consolidateAfter", "10m", pattern=_DURATION, hint=" (e.g. 30s, 10m, 1h)"),
            sharing=_sharing(s.section("sharing"), [t for t in types if t in GPU_INSTANCE_TYPES]),
        ))
        s.finish()
    names = [p.name for p in pools]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        top.problems.add(top.key("gpuPools"), f"pool name {dup!r} is used more than once")
    return pools


def _sharing(s: Section, types: list[str]) -> GpuSharing:
    slicing = s.section("timeSlicing")
    low, high = TIME_SLICING_REPLICAS
    replicas = slicing.integer("replicas", 0, minimum=low, maximum=high)
    if "timeSlicing" in s.raw and "replicas" not in slicing.raw:
        slicing.problems.add(slicing.key("replicas"), f"required with timeSlicing: how many pods share each GPU "
                                                      f"({low}-{high})")
    slicing.finish()
    profile = s.string("mig", "")
    s.finish()
    if replicas and profile:
        s.problems.add(s.prefix, "set timeSlicing or mig, not both")
        return GpuSharing()
    if replicas:
        return GpuSharing(time_slicing_replicas=replicas, units_per_gpu=replicas)
    if not profile:
        return GpuSharing()
    counts = []
    for t in types:
        profiles = mig_profiles(t)
        gpu = GPU_INSTANCE_TYPES[t]
        if not profiles:
            capable = sorted(f"{g} {m}GB" for g, m in MIG_PROFILES)
            s.problems.add(s.key("mig"), f"{t} has {gpu.gpu} GPUs, which have no MIG; use timeSlicing, or only "
                                         f"types with MIG-capable GPUs ({', '.join(capable)})")
        elif profile not in profiles:
            s.problems.add(s.key("mig"), f"{profile!r} is not a MIG profile of the {gpu.gpu} {gpu.gpu_memory_gib}GB "
                                         f"({t}); its profiles: {', '.join(profiles)}")
        else:
            counts.append(profiles[profile])
    # One profile can give different counts on different GPUs (1g.10gb: 4 on an A100 40GB, 7 on an 80GB); the pool
    # promises the smaller, which every node it may launch can keep.
    return GpuSharing(mig_profile=profile, units_per_gpu=min(counts) if len(counts) == len(types) and counts else 1)


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def access_problem(cluster: ClusterConfig, principal: str, preview: bool) -> str | None:
    """Why the identity running the program could not do its Kubernetes part, if it could not."""
    if principal in cluster.admin_arns or (preview and principal in cluster.viewer_arns):
        return None
    need = "clusterAdmins or clusterViewers (preview only)" if preview else "clusterAdmins"
    return (f"{principal} runs this {'preview' if preview else 'update'} but has no access entry in {need}; the "
            "Kubernetes provider would be refused. Add the role's ARN (with its path) there")


def support_warning(version: str, today: datetime.date) -> str | None:
    """A warning once the cluster's Kubernetes minor is within SUPPORT_WARNING_DAYS of the end of standard support."""
    end = datetime.date.fromisoformat(EKS_END_OF_STANDARD_SUPPORT[version])
    left = (end - today).days
    if left > SUPPORT_WARNING_DAYS:
        return None
    when = f"ended on {end}" if left < 0 else f"ends on {end} ({left} days)"
    return (f"clusterVersion {version}: EKS standard support {when}, and then EKS upgrades the control plane itself "
            "past the pinned add-ons and nodes. Move clusterVersion to the next minor (README: Upgrading Kubernetes).")


def load_stack_config(project: str, stack: str) -> PlatformConfig:
    """The config of the running program, as the Pulumi language host handed it over."""
    from pulumi.runtime import config as runtime_config
    values: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load_config({k: v if isinstance(v, str) else str(v) for k, v in values.items()}, project, stack)
