"""Kueue: one queue per team over the shared CPU and GPU pools, with guaranteed quotas, borrowing and preemption.

Each team gets a ClusterQueue (its quotas, in cohort `platform`, admitting only its own namespace) and a LocalQueue
`default` in its namespace. Jobs in team namespaces are held (suspended) until their team's queue admits all of
their pods at once; Jobs anywhere else are never touched, not even by Kueue's webhooks, which the chart scopes with
the same namespace selector as the manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_kubernetes import _utilities as k8s_utilities

from components.general_pool import NAME as GENERAL_POOL, POOL_LABEL as GENERAL_POOL_LABEL
from components.gpu_pool import GPU_TAINT, POOL_LABEL as GPU_POOL_LABEL
from components.monitoring import RELEASE as MONITORING_RELEASE
from components.team import TEAM_LABEL, gpu_unit_share
from platform_config.model import GeneralPoolConfig, GpuPoolConfig
from platform_config.teams_model import PRIORITY_CLASSES, Quota, TeamConfig
from platform_config.versions import KUEUE_CHART, KUEUE_IMAGE_REPOSITORY, KUEUE_IMAGE_TAG, KUEUE_VERSION

NAMESPACE = "kueue-system"
RELEASE = "kueue"
# The storage version of every Kueue CRD at v0.19.2 (v1beta1 is still served, and converted by Kueue's webhook).
API = "kueue.x-k8s.io/v1beta2"
CONFIG_API = "config.kueue.x-k8s.io/v1beta2"
COHORT = "platform"
LOCAL_QUEUE = "default"
GENERAL_FLAVOR = GENERAL_POOL
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
GPU = "nvidia.com/gpu"
COVERED_RESOURCES = ("cpu", "memory", GPU)
# The chart's aggregated ClusterRole ("<fullname>-batch-user-role"; fullname is the release name, which contains the
# chart's name): create/edit Jobs, read LocalQueues, Workloads and the pending-workloads view. Bound per namespace.
BATCH_USER_CLUSTER_ROLE = f"{RELEASE}-batch-user-role"
QUEUE_USER_CLUSTER_ROLE = BATCH_USER_CLUSTER_ROLE  # the name __main__.py imports
# The chart's ClusterRole for GET /metrics, which Kueue's metrics endpoint authorizes on every scrape.
METRICS_READER_CLUSTER_ROLE = f"{RELEASE}-metrics-reader"
# Ports the manager configuration binds; the chart's probes (8081), metrics Service (8443) and webhook Service (9443)
# target these numbers, so the configuration must keep them.
HEALTH_PORT, METRICS_PORT, WEBHOOK_PORT = 8081, 8443, 9443

# All-or-nothing admission. A workload's pods must all be ready within this time of admission, or it is evicted and
# requeued. It has to cover a GPU node launch by Karpenter (a few minutes, more when spot capacity is short and it
# tries other types) plus the pull of a multi-GB CUDA image onto a fresh node.
PODS_READY_TIMEOUT = "20m"
# blockAdmission admits one workload at a time, cluster-wide, until its pods are ready, so two multi-node jobs can
# never each hold part of the nodes the other needs. A job that can never become ready (bad image, no capacity)
# would block every queue for a timeout per attempt; after this many requeues Kueue deactivates it instead.
PODS_READY_REQUEUE_LIMIT = 3
REQUEUE_BACKOFF_BASE_SECONDS = 60
REQUEUE_BACKOFF_MAX_SECONDS = 1800


@dataclass(frozen=True, kw_only=True)
class KueueArgs:
    teams: Sequence[TeamConfig]
    gpu_pools: Sequence[GpuPoolConfig]
    general_pool: GeneralPoolConfig
    k8s_provider: k8s.Provider
    team_namespaces: Mapping[str, pulumi.Resource]
    """Team name -> its Namespace resource; each team's LocalQueue is created after it."""
    monitoring_crds: Sequence[pulumi.Resource]
    """The monitoring chart, which installs the ServiceMonitor CRD; the Kueue chart creates a ServiceMonitor."""
    namespace: str = NAMESPACE
    """Where the controller runs; the namespace itself is created by the caller (and passed in depends_on)."""
    monitoring_namespace: str = "monitoring"
    prometheus_service_account: str = f"{MONITORING_RELEASE}-prometheus"
    """kube-prometheus-stack's Prometheus service account (the chart's fullname, `kube-prometheus-stack`, plus
    `-prometheus`); its token authenticates the scrape."""
    replicas: int = 2
    depends_on: Sequence[pulumi.Resource] = ()


def queue_label(priority_class: str) -> dict[str, str]:
    """The labels a Job needs to be admitted by its team's queue at a WorkloadPriorityClass."""
    if priority_class not in PRIORITY_CLASSES:
        raise ValueError(f"unknown priority class {priority_class!r}; one of {sorted(PRIORITY_CLASSES)}")
    return {QUEUE_NAME_LABEL: LOCAL_QUEUE, PRIORITY_CLASS_LABEL: priority_class}


def cpu_quantity(millicores: float) -> str:
    millicores = round(millicores)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(mib: float) -> str:
    mib = round(mib)
    if mib == 0:
        return "0"
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def gpu_quantity(units: float) -> str:
    if units != int(units):
        raise ValueError(f"GPU quotas are whole {GPU} units, got {units}")
    return str(int(units))


def _resource(name: str, quota: Quota, scale: float, quantity) -> dict:
    """One resource's quota, scaled from the team's units; an absent limit stays absent (no limit)."""
    entry = {"name": name, "nominalQuota": quantity(quota.nominal * scale)}
    if quota.borrowing_limit is not None:
        entry["borrowingLimit"] = quantity(quota.borrowing_limit * scale)
    if quota.lending_limit is not None:
        entry["lendingLimit"] = quantity(quota.lending_limit * scale)
    return entry


def flavor_specs(gpu_pools: Sequence[GpuPoolConfig]) -> dict[str, dict]:
    """ResourceFlavor name -> spec: the general pool, then each GPU pool in config order.

    Kueue writes a flavor's nodeLabels into the nodeSelector of the pods it admits on that flavor, so each pod lands
    on the pool whose quota it was charged. The GPU flavors carry the GPU nodes' taint as `nodeTaints` and no
    `tolerations`: Kueue then charges a GPU flavor only for pods that tolerate the taint themselves. A CPU-only job
    that does not fit the general quota therefore waits, instead of being admitted on a GPU pool's CPU quota, sent
    to a GPU node (launching one) and taking the CPU that pool's GPU jobs were sized to get.
    """
    specs = {GENERAL_FLAVOR: {"nodeLabels": dict(GENERAL_POOL_LABEL)}}
    for pool in gpu_pools:
        specs[pool.name] = {"nodeLabels": {GPU_POOL_LABEL: pool.name},
                            "nodeTaints": [dict(GPU_TAINT)]}
    return specs


def cluster_queue_spec(team: TeamConfig, gpu_pools: Sequence[GpuPoolConfig]) -> dict:
    """The team's ClusterQueue: one resource group, so each pod set gets one flavor for all its resources (a GPU pod
    charged CPU on the general flavor and GPUs on a GPU flavor would get two contradictory node selectors).

    Flavors are tried in order: general first, so CPU jobs take the general pool; it has no GPUs, so GPU jobs go on
    to the GPU flavors. Every flavor is listed for every team (a team without quota in a pool has nominal 0 there),
    since a ClusterQueue admits nothing on a flavor it does not list.
    """
    quotas = team.quotas
    flavors = [{"name": GENERAL_FLAVOR, "resources": [
        _resource("cpu", quotas.cpu, 1000, cpu_quantity),
        _resource("memory", quotas.memory_gib, 1024, memory_quantity),
        {"name": GPU, "nominalQuota": "0"},
    ]}]
    for pool in gpu_pools:
        # No quota for a pool: nothing guaranteed and nothing to borrow, as the team's ResourceQuota allows no GPUs.
        units = quotas.gpus.get(pool.name, Quota(0, borrowing_limit=0))
        # The CPU and memory that come with each GPU unit: the largest per-unit share of allocatable among the pool's
        # instance types (components/team.py), so a job admitted for its GPUs is never held back for lack of the
        # CPU or memory it was sized with. Borrowing and lending scale the same way, so they move in step.
        unit_cpu_m, unit_memory_mib = gpu_unit_share(pool)
        flavors.append({"name": pool.name, "resources": [
            _resource("cpu", units, unit_cpu_m, cpu_quantity),
            _resource("memory", units, unit_memory_mib, memory_quantity),
            _resource(GPU, units, 1, gpu_quantity),
        ]})
    return {
        "cohortName": COHORT,
        # The API server sets kubernetes.io/metadata.name itself, so no other namespace can claim a team's queue.
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": team.namespace}},
        "resourceGroups": [{"coveredResources": list(COVERED_RESOURCES), "flavors": flavors}],
        "preemption": {
            # A team below its nominal quota takes it back from borrowers, whatever their priority: nominal quota is
            # a guarantee. Inside its own queue a higher priority class preempts a lower one.
            "reclaimWithinCohort": "Any",
            "withinClusterQueue": "LowerPriority",
            # borrowWithinCohort is left unset: Kueue allows it only with classic preemption, and fair sharing
            # (manager configuration) already decides between teams competing for what is idle.
        },
    }


def validate_quotas(teams: Sequence[TeamConfig], gpu_pools: Sequence[GpuPoolConfig],
                    general: GeneralPoolConfig) -> None:
    """Quotas Kueue would reject at `pulumi up`, or that promise capacity the pools can never launch."""
    pools = {p.name: p for p in gpu_pools}
    for team in teams:
        unknown = sorted(set(team.quotas.gpus) - set(pools))
        if unknown:
            raise ValueError(f"team {team.name}: quotas.gpus names unknown GPU pools {unknown}; have {sorted(pools)}")
        named = [("cpu", team.quotas.cpu), ("memoryGiB", team.quotas.memory_gib),
                 *((f"gpus.{p}", q) for p, q in team.quotas.gpus.items())]
        for key, quota in named:
            if quota.lending_limit is not None and quota.lending_limit > quota.nominal:
                raise ValueError(f"team {team.name}: quotas.{key}.lendingLimit {quota.lending_limit} exceeds its "
                                 f"nominal {quota.nominal}")
    totals = [("cpu", sum(t.quotas.cpu.nominal for t in teams), general.max_cpu, "generalPool.maxCpu"),
              ("memoryGiB", sum(t.quotas.memory_gib.nominal for t in teams), general.max_memory_gib,
               "generalPool.maxMemoryGiB")]
    for pool in gpu_pools:
        nominal = sum(t.quotas.gpus[pool.name].nominal for t in teams if pool.name in t.quotas.gpus)
        totals.append((f"gpus.{pool.name}", nominal, pool.max_units, f"gpuPools[{pool.name}] maxNodes x units"))
    for key, nominal, capacity, source in totals:
        if nominal > capacity:
            raise ValueError(f"teams' nominal quotas.{key} add up to {nominal}, more than the pool can hold "
                             f"({capacity}, {source}): Kueue would admit work no node can run")


def manager_config() -> dict:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2, the version v0.19.2 reads), replacing the chart's."""
    return {
        "apiVersion": CONFIG_API,
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f":{HEALTH_PORT}"},
        # Quota and usage per ClusterQueue (kueue_cluster_queue_nominal_quota, ..._resource_usage) for dashboards.
        "metrics": {"bindAddress": f":{METRICS_PORT}", "enableClusterQueueResources": True},
        "webhook": {"port": WEBHOOK_PORT},
        # Two replicas: the leader schedules, both serve the webhooks, so a drained node never blocks admission.
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        # Jobs in team namespaces are queued even without a queue label: LocalQueue `default` picks them up (Kueue's
        # default-LocalQueue behaviour, GA and always on since v0.17). Nothing else is managed: the platform's own
        # Jobs (the MLflow migration, chart hooks) run unqueued, and Kueue's webhooks never see them.
        "manageJobsWithoutQueueName": True,
        "managedJobsNamespaceSelector": {"matchExpressions": [{"key": TEAM_LABEL, "operator": "Exists"}]},
        "waitForPodsReady": {
            "timeout": PODS_READY_TIMEOUT,
            # A running job that loses a pod (a spot interruption) gets as long for its replacement node.
            "recoveryTimeout": PODS_READY_TIMEOUT,
            "blockAdmission": True,
            "requeuingStrategy": {"timestamp": "Eviction", "backoffLimitCount": PODS_READY_REQUEUE_LIMIT,
                                  "backoffBaseSeconds": REQUEUE_BACKOFF_BASE_SECONDS,
                                  "backoffMaxSeconds": REQUEUE_BACKOFF_MAX_SECONDS},
        },
        # Only what the platform runs: training CronJobs create batch Jobs. Serving Deployments are not queued.
        "integrations": {"frameworks": ["batch/job"]},
        # Idle quota is shared out by each team's share above its nominal, not first come first served, and a
        # team that took more than its share can be preempted for one that has less (Kueue's default strategies).
        "fairSharing": {"preemptionStrategies": ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]},
    }


def chart_values(args: KueueArgs) -> dict:
    selector = {"app.kubernetes.io/name": "kueue", "app.kubernetes.io/instance": RELEASE,
                "control-plane": "controller-manager"}
    return {
        # The chart's ServiceMonitor scrapes the metrics endpoint over HTTPS with Prometheus' service-account token.
        # The certificate is Kueue's self-signed one (no cert-manager here), hence the chart's insecureSkipVerify.
        "enablePrometheus": True,
        "metrics": {"prometheusNamespace": args.monitoring_namespace},
        "controllerManager": {
            "replicas": args.replicas,
            "manager": {
                # values.yaml at the tag names the staging image; releases are pinned to the promoted one.
                "image": {"repository": KUEUE_IMAGE_REPOSITORY, "tag": KUEUE_IMAGE_TAG, "pullPolicy": "IfNotPresent"},
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                              "limits": {"cpu": "2", "memory": "1Gi"}},
            },
            # The webhooks fail closed for team namespaces: keep one replica through drains and node loss.
            "podDisruptionBudget": {"enabled": args.replicas > 1, "minAvailable": 1},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": selector}}],
        },
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)},
    }


class _KueueObject(pulumi.CustomResource):
    """A Kueue object with top-level fields besides metadata (WorkloadPriorityClass has `value`, no `spec`), which
    pulumi_kubernetes' CustomResource cannot express; the provider applies the inputs as the object."""

    def __init__(self, name: str, kind: str, body: dict, opts: pulumi.ResourceOptions):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=k8s_utilities.get_version()))
        super().__init__(f"kubernetes:{API}:{kind}", name, {"apiVersion": API, "kind": kind, **body}, opts)


class Kueue(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    flavors: dict[str, k8s.apiextensions.CustomResource]
    cluster_queues: dict[str, k8s.apiextensions.CustomResource]
    local_queues: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:Kueue", name, None, opts)
        validate_quotas(args.teams, args.gpu_pools, args.general_pool)
        missing = sorted({t.name for t in args.teams} - set(args.team_namespaces))
        if missing:
            raise ValueError(f"Kueue: no namespace resource passed for teams {missing}")
        # The chart keeps its CRDs in templates/crd, not crds/, so every `helm upgrade` applies the CRDs of the
        # pinned release along with the controller (Helm never upgrades a chart's crds/ directory). Uninstalling
        # the release deletes them, and every queue and workload with them.
        self.release = k8s.helm.v3.Release(
            name, name=RELEASE, chart=KUEUE_CHART, version=KUEUE_VERSION, namespace=args.namespace,
            atomic=True, timeout=600, values=chart_values(args),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, *args.monitoring_crds]))
        # Kueue objects go through its webhooks (and its conversion webhook), which answer once the release is ready.
        after = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[self.release])

        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-metrics-reader", metadata={"name": f"{METRICS_READER_CLUSTER_ROLE}-prometheus"},
            # kube-prometheus-stack's own ClusterRole grants GET /metrics today; binding Kueue's reader role keeps
            # the scrape authorized should that chart narrow its role.
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                      "name": METRICS_READER_CLUSTER_ROLE},
            subjects=[{"kind": "ServiceAccount", "name": args.prometheus_service_account,
                       "namespace": args.monitoring_namespace}], opts=after)

        self.flavors = {
            flavor: k8s.apiextensions.CustomResource(
                f"{name}-flavor-{flavor}", api_version=API, kind="ResourceFlavor", metadata={"name": flavor},
                spec=spec, opts=after)
            for flavor, spec in flavor_specs(args.gpu_pools).items()}
        priorities = [
            _KueueObject(f"{name}-priority-{cls}", "WorkloadPriorityClass", {
                "metadata": {"name": cls}, "value": value,
                "description": f"ml-platform `{cls}` jobs (larger values preempt smaller ones in a team's queue)"},
                opts=after)
            for cls, value in PRIORITY_CLASSES.items()]
        queued = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[self.release, *self.flavors.values(), *priorities])
        self.cluster_queues, self.local_queues = {}, {}
        for team in args.teams:
            cq = k8s.apiextensions.CustomResource(
                f"{name}-cluster-queue-{team.name}", api_version=API, kind="ClusterQueue",
                metadata={"name": team.name, "labels": {TEAM_LABEL: team.name}},
                spec=cluster_queue_spec(team, args.gpu_pools), opts=queued)
            self.cluster_queues[team.name] = cq
            self.local_queues[team.name] = k8s.apiextensions.CustomResource(
                f"{name}-local-queue-{team.name}", api_version=API, kind="LocalQueue",
                metadata={"name": LOCAL_QUEUE, "namespace": team.namespace},
                spec={"clusterQueue": team.name},
                opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                            depends_on=[self.release, cq, args.team_namespaces[team.name]]))
        self.register_outputs({"chart_version": KUEUE_VERSION, "cluster_queues": sorted(self.cluster_queues)})

    def queue_ready(self, team: str) -> list[pulumi.Resource]:
        """What a team's queued Jobs must wait for: Kueue's webhooks and the team's LocalQueue. A Job created before
        them would run unqueued, or be held with no queue to admit it."""
        return [self.release, self.local_queues[team]]
