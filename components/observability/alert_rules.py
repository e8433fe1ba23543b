"""Prometheus recording and alerting rules for the ML platform, rendered from the stack's monitoring config.

Each model has its own SLO: its latency objective and success objective (`models[i].serving`) and its drift
threshold. The latency and error alerts are multi-window burn-rate alerts (the Google SRE workbook's recipe): a
fast burn (14.4x budget over 1h, confirmed over 5m) pages, a slow burn (6x over 6h, confirmed over 30m) opens a
ticket. Short windows stop an alert from firing long after the problem ended.

A model's rules are one rule group of their own: its ratios are recorded in the same evaluation its alerts read
them (rules in a group run in order; across groups the order is undefined), and groups are evaluated concurrently,
so a hundred models cost a hundred small groups rather than one long one. Each model gets its own recording rules
because its latency threshold selects its own histogram bucket.
"""

from __future__ import annotations

from typing import Any

from components.observability.metric_catalog import ksm_label
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.model import GpuPoolConfig
from platform_config.services_model import MonitoringConfig
from platform_config.teams_model import TEAM_NAMESPACE_PREFIX, ModelConfig, TeamConfig

TEAM_NAMESPACE_MATCH = f'namespace=~"{TEAM_NAMESPACE_PREFIX}.+"'
EXPORTER_NAMESPACE = "monitoring"
# Kueue runs two replicas with leader election and both export their gauges (v0.19.2 pkg/metrics: every series has
# replica_role; the follower's are cleared only when it becomes leader); count the leader's (or a lone replica's).
KUEUE_LEADER = 'replica_role!="follower"'
# (long window, short window, burn factor, severity)
BURN_WINDOWS = (("1h", "5m", 14.4, "critical"), ("6h", "30m", 6.0, "warning"))
SLI_WINDOWS = ("5m", "30m", "1h", "6h")
PLATFORM_GROUP = "ml-platform"
GPU_IDLE_RATIO = 0.05  # DCGM_FI_PROF_GR_ENGINE_ACTIVE is a 0..1 ratio: 5% of the time busy
# GpuIdle reads DCGM_FI_PROF_GR_ENGINE_ACTIVE, a profiling (DCP) field, because DCGM_FI_DEV_GPU_UTIL does not exist
# for MIG instances. DCP fields are collected on datacenter GPUs from Volta on (dcgm-exporter's default counters
# list says so next to them): every GPU of platform_config/gpu_catalog.py. A new GPU must be added here knowingly.
PROFILING_GPUS = frozenset({"V100", "T4", "A10G", "A100", "L4", "L40S", "H100", "H200"})


def team_namespace(team: str) -> str:
    return f"{TEAM_NAMESPACE_PREFIX}{team}"


def serving_selector(model: ModelConfig) -> str:
    """The model's inference series: the server labels them `model` (its MODEL_NAME, the model's name), the
    ServiceMonitor adds the team namespace."""
    return f'namespace="{team_namespace(model.team)}", model="{model.name}"'


def pod_monitor_job(model: ModelConfig, workload: str) -> str:
    """prometheus-operator labels a PodMonitor's targets job="<namespace>/<PodMonitor name>"; the model's drift and
    training PodMonitors are named `<model>-drift` and `<model>-training`, so this names one model's series."""
    return f"{team_namespace(model.team)}/{model.name}-{workload}"


def _le(seconds: float) -> str:
    # prometheus_client renders bucket bounds with repr(float): 0.25 -> "0.25", 1 -> "1.0".
    return repr(float(seconds))


def _with_team(expr: str, source: str = "namespace", pattern: str = f"{TEAM_NAMESPACE_PREFIX}(.+)") -> str:
    return f'label_replace({expr}, "team", "$1", "{source}", "{pattern}")'


def model_recording_rules(model: ModelConfig) -> list[dict[str, Any]]:
    sel, le = serving_selector(model), _le(model.serving.latency_slo_seconds)
    by = "sum by (namespace, model)"
    rules = []
    for w in SLI_WINDOWS:
        total = f"{by} (rate(inference_request_duration_seconds_count{{{sel}}}[{w}]))"
        fast = f'{by} (rate(inference_request_duration_seconds_bucket{{{sel}, le="{le}"}}[{w}]))'
        errors = f'{by} (rate(inference_requests_total{{{sel}, status=~"5.."}}[{w}]))'
        requests = f"{by} (rate(inference_requests_total{{{sel}}}[{w}]))"
        rules.append({"record": f"slo:inference_latency_bad_ratio:rate{w}", "expr": f"1 - ({fast} / {total})",
                      "labels": {"team": model.team}})
        # `or ... * 0`: no 5xx series yet is a 0% error ratio, not a missing one.
        rules.append({"record": f"slo:inference_error_ratio:rate{w}",
                      "expr": f"({errors} or ({requests} * 0)) / {requests}", "labels": {"team": model.team}})
    return rules


def _burn(sli: str, sel: str, budget: float, long: str, short: str, factor: float) -> str:
    threshold = round(factor * budget, 6)
    return f"(slo:{sli}:rate{long}{{{sel}}} > {threshold}) and (slo:{sli}:rate{short}{{{sel}}} > {threshold})"


def model_alerting_rules(model: ModelConfig) -> list[dict[str, Any]]:
    slo, name = model.serving, model.name
    sel = f'namespace="{team_namespace(model.team)}", model="{name}"'
    budget = round(1 - slo.slo_objective, 6)
    owner = {"model": name, "team": model.team}
    rules: list[dict[str, Any]] = []
    for long, short, factor, severity in BURN_WINDOWS:
        rules.append({
            "alert": "InferenceLatencySLOBurn",
            "expr": _burn("inference_latency_bad_ratio", sel, budget, long, short, factor),
            "for": "2m", "labels": {"severity": severity, "slo": "inference-latency", **owner},
            "annotations": {
                "summary": f"{name}: predictions slower than {slo.latency_slo_seconds:g}s are burning the error "
                           f"budget {factor}x too fast",
                "description": f"Over the last {long}, {{{{ $value | humanizePercentage }}}} of {name}'s predictions "
                               f"took longer than {slo.latency_slo_seconds:g}s (objective: {slo.slo_objective:.2%} "
                               "fast).",
            }})
        rules.append({
            "alert": "InferenceErrorBudgetBurn",
            "expr": _burn("inference_error_ratio", sel, budget, long, short, factor),
            "for": "2m", "labels": {"severity": severity, "slo": "inference-availability", **owner},
            "annotations": {
                "summary": f"{name}: 5xx responses are burning the error budget {factor}x too fast",
                "description": f"Over the last {long}, {{{{ $value | humanizePercentage }}}} of {name}'s prediction "
                               f"requests failed with a 5xx status (objective: {slo.slo_objective:.2%} successful).",
            }})
    threshold = model.drift.psi_threshold
    rules.append({
        "alert": "DataDriftDetected",
        "expr": f'max by (namespace, feature) (drift_psi{{namespace="{team_namespace(model.team)}", '
                f'job="{pod_monitor_job(model, "drift")}"}}) > {threshold:g}',
        "for": "5m", "labels": {"severity": "warning", "category": "model-quality", **owner},
        "annotations": {"summary": f"{name}: feature {{{{ $labels.feature }}}} has drifted from the training data",
                        "description": f"PSI is {{{{ $value | printf \"%.2f\" }}}} (threshold {threshold:g}); check "
                                       f"the inputs and consider retraining {name}."}})
    return rules


PENDING_PER_TEAM = "platform:kueue_pending_workloads:sum"


def platform_recording_rules() -> list[dict[str, Any]]:
    # Workloads waiting per team (ClusterQueue), active and inadmissible together, counted once across replicas.
    return [{"record": PENDING_PER_TEAM, "expr": f"sum by (cluster_queue) (kueue_pending_workloads{{{KUEUE_LEADER}}})"}]


def platform_alerting_rules(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    gpu_by = "max by (Hostname, gpu, GPU_I_PROFILE, GPU_I_ID, namespace, pod)"
    return [
        {"alert": "GpuIdle",
         # `for` (not max_over_time) so the alert needs the GPU idle for the whole period, not a short history.
         # dcgm-exporter (chart 4.8.2: the label is `Hostname`) names the pod only for GPUs assigned to one; an
         # unassigned GPU's series gets the exporter's own target labels instead, hence the exporter's namespace is
         # excluded. A MIG instance is its own series (GPU_I_PROFILE, GPU_I_ID); on a time-sliced GPU each pod
         # sharing it gets the whole GPU's value.
         "expr": f'{gpu_by} (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{pod!="", namespace!="{EXPORTER_NAMESPACE}"}}) '
                 f"< {GPU_IDLE_RATIO}",
         "for": f"{cfg.gpu_idle_minutes}m", "labels": {"severity": "warning", "category": "cost"},
         "annotations": {"summary": "GPU {{ $labels.gpu }}{{ with $labels.GPU_I_PROFILE }} (MIG {{ . }}, instance "
                                    "{{ $labels.GPU_I_ID }}){{ end }} on {{ $labels.Hostname }} is allocated but idle",
                         "description": f"Pod {{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} holds a GPU whose "
                                        f"graphics engine was busy under {GPU_IDLE_RATIO:.0%} of the time for "
                                        f"{cfg.gpu_idle_minutes} minutes; release it or scale the workload down."}},
        {"alert": "IngestionConsumerLag",
         "expr": _with_team(f"sum by (namespace, topic) (ingestion_consumer_lag{{{TEAM_NAMESPACE_MATCH}}}) "
                            f"> {cfg.consumer_lag_records}"),
         "for": "10m", "labels": {"severity": "warning", "category": "data-pipeline"},
         "annotations": {"summary": "Lake ingestion is {{ $value }} records behind on {{ $labels.topic }}",
                         "description": "Team {{ $labels.team }}'s Kafka-to-lake consumers are not keeping up; check "
                                        "their errors and scale ingestion.replicas (up to the topic's partition "
                                        "count)."}},
        {"alert": "TrainingJobFailed",
         "expr": _with_team(f'max by (namespace, job_name) (kube_job_failed{{condition="true", '
                            f"{TEAM_NAMESPACE_MATCH}}}) == 1"),
         "for": "0m", "labels": {"severity": "warning", "category": "training"},
         "annotations": {"summary": "Training job {{ $labels.job_name }} failed",
                         "description": "The job used up its retries (spot interruptions are not counted); see "
                                        "`kubectl -n {{ $labels.namespace }} logs job/{{ $labels.job_name }}`."}},
        {"alert": "QueuedWorkloadPending",
         # Kueue exports no per-workload age, and its wait-time histograms are observed only at admission, so a
         # stuck workload never shows there. The pending gauge held above zero for the whole period catches every
         # workload that waited that long; it also fires when a queue never empties because work keeps arriving
         # faster than its quota frees, which is worth knowing too.
         "expr": _with_team(f'label_replace({PENDING_PER_TEAM} > 0, "namespace", "{TEAM_NAMESPACE_PREFIX}$1", '
                            '"cluster_queue", "(.+)")', source="cluster_queue", pattern="(.+)"),
         "for": f"{cfg.queue_pending_minutes}m", "labels": {"severity": "warning", "category": "capacity"},
         "annotations": {"summary": "Team {{ $labels.team }} has had workloads waiting for admission for "
                                    f"{cfg.queue_pending_minutes} minutes",
                         "description": "ClusterQueue {{ $labels.cluster_queue }} has not been free of pending "
                                        f"workloads for {cfg.queue_pending_minutes} minutes ({{{{ $value }}}} "
                                        "pending now): a workload needs more than the team's quota and what it can "
                                        "borrow, or no node can hold it. See `kubectl -n {{ $labels.namespace }} "
                                        "get workloads`."}},
    ]


# --- cost (OpenCost's prices times what each pod holds) -----------------------------------------------------------
COST_GROUP = "cost"
POD_COST = "platform:pod_cost_usd_per_hour"  # namespace, pod, node, resource (cpu | memory | gpu)
POD_GPU_UNITS = "platform:pod_gpu_units"  # namespace, pod, node
TEAM_COST, TEAM_GPU_UNITS = "platform:team_cost_usd_per_hour", "platform:team_gpu_units"  # namespace, team
MODEL_COST, MODEL_GPU_UNITS = "platform:model_cost_usd_per_hour", "platform:model_gpu_units"  # namespace, model, team
POOL_COST = "platform:pool_cost_usd_per_hour"  # pool: its nodes' whole price, allocated or idle
POOL_GPU_UNITS = "platform:pool_gpu_units"  # pool
NODE_IDLE_GPU_COST = "platform:node_idle_gpu_cost_usd_per_hour"  # node
POOL_IDLE_GPU_COST = "platform:pool_idle_gpu_cost_usd_per_hour"  # pool
TEAM_COST_DAY = "platform:team_cost_usd_per_hour:avg1d"
TEAM_FORECAST = "platform:team_cost_usd:monthly_forecast"
TEAM_BUDGET = "platform:team_monthly_budget_usd"
# The month a forecast is for: 365 days x 24 h / 12, whatever the calendar month's length.
HOURS_PER_MONTH = 730
BUDGET_SEVERITIES = (("warning", 0.8), ("critical", 1.0))
GIB = 1024 ** 3
# Pods belong to a model through their workload's name and component (__main__.py names the workloads,
# components/pod_spec.py `labels` labels their pods): serving is named after the model, training `<model>-training`,
# the drift monitor `<model>-drift`; a team's lake ingestion belongs to no model. The component decides which suffix
# to strip, so a model named `x-training` stays itself.
POD_NAME, POD_COMPONENT = ksm_label("app.kubernetes.io/name"), ksm_label("app.kubernetes.io/component")
MODEL_WORKLOADS = {"serving": "(.+)", "training": "(.+)-training", "monitoring": "(.+)-drift"}
# A node's pool: its Karpenter NodePool, else the platform's own pool label (the system node group has no NodePool).
NODEPOOL, PLATFORM_POOL = ksm_label("karpenter.sh/nodepool"), ksm_label("mlplatform.io/pool")


def _per_model(pod_series: str) -> str:
    """A series with namespace and pod labels, summed per model (and team)."""
    branches = []
    for component, workload in MODEL_WORKLOADS.items():
        pods = (f"max by (namespace, pod, {POD_NAME}) "
                f'(kube_pod_labels{{{TEAM_NAMESPACE_MATCH}, {POD_COMPONENT}="{component}"}})')
        joined = f"{pod_series} * on (namespace, pod) group_left ({POD_NAME}) {pods}"
        branches.append(f'label_replace({joined}, "model", "$1", "{POD_NAME}", "{workload}")')
    return _with_team(f"sum by (namespace, model) ({' or '.join(branches)})")


def _per_pool(node_series: str) -> str:
    """A series with one `node` label per node, summed per pool."""
    nodes = f"max by (node, {NODEPOOL}, {PLATFORM_POOL}) (kube_node_labels)"
    joined = f"{node_series} * on (node) group_left ({NODEPOOL}, {PLATFORM_POOL}) {nodes}"
    platform_pool = f'label_replace({joined}, "pool", "$1", "{PLATFORM_POOL}", "(.+)")'
    return f'sum by (pool) (label_replace({platform_pool}, "pool", "$1", "{NODEPOOL}", "(.+)"))'


def _node_price(metric: str) -> str:
    return f"avg by (node) ({metric})"


def cost_recording_rules(teams: list[TeamConfig]) -> list[dict[str, Any]]:
    """What each pod, team, model and pool costs per hour at OpenCost's prices, and each team's forecast.

    A pod's cost is what it holds (OpenCost's allocation: the larger of request and use for CPU and memory, the GPU
    units requested) times its node's price for each; a pool's is its nodes' whole price, held or idle. GPU-hours
    are integrals of the GPU-unit series (the dashboard does the sum over time)."""
    allocations = (("cpu", "container_cpu_allocation", "node_cpu_hourly_cost"),
                   ("memory", f"container_memory_allocation_bytes / {GIB}", "node_ram_hourly_cost"),
                   ("gpu", "container_gpu_allocation", "node_gpu_hourly_cost"))
    rules: list[dict[str, Any]] = [
        {"record": POD_COST, "labels": {"resource": resource},
         "expr": f"sum by (namespace, pod, node) ({held} * on (node) group_left () {_node_price(price)})"}
        for resource, held, price in allocations]
    gpu_nodes = _node_price("node_gpu_count > 0")
    rules += [
        {"record": POD_GPU_UNITS, "expr": "sum by (namespace, pod, node) (container_gpu_allocation)"},
        {"record": TEAM_COST, "expr": _with_team(f"sum by (namespace) ({POD_COST}{{{TEAM_NAMESPACE_MATCH}}})")},
        {"record": TEAM_GPU_UNITS,
         "expr": _with_team(f"sum by (namespace) ({POD_GPU_UNITS}{{{TEAM_NAMESPACE_MATCH}}})")},
        {"record": MODEL_COST, "expr": _per_model(POD_COST)},
        {"record": MODEL_GPU_UNITS, "expr": _per_model(POD_GPU_UNITS)},
        {"record": POOL_COST, "expr": _per_pool(_node_price("node_total_hourly_cost"))},
        {"record": POOL_GPU_UNITS, "expr": _per_pool(f"sum by (node) ({POD_GPU_UNITS})")},
        # Units a GPU node offers that no container holds; `or ... * 0` counts a node nobody uses at all.
        {"record": NODE_IDLE_GPU_COST,
         "expr": f"clamp_min({gpu_nodes} - (sum by (node) (container_gpu_allocation) or {gpu_nodes} * 0), 0) "
                 f"* {_node_price('node_gpu_hourly_cost')}"},
        {"record": POOL_IDLE_GPU_COST, "expr": _per_pool(NODE_IDLE_GPU_COST)},
        # The forecast: the average hourly cost of the last day, for a whole month. Prometheus keeps days (3 to 15
        # in the stacks), not the month a month-to-date sum needs, and a self-accumulating rule would lose what
        # accrued while Prometheus was down; a day's average is stateless and still ignores a short burst.
        {"record": TEAM_COST_DAY, "expr": f"avg_over_time({TEAM_COST}[1d])"},
        {"record": TEAM_FORECAST, "expr": f"{TEAM_COST_DAY} * {HOURS_PER_MONTH}"},
    ]
    rules += [{"record": TEAM_BUDGET, "expr": f"vector({team.monthly_budget_usd:.15g})",
               "labels": {"namespace": team.namespace, "team": team.name}}
              for team in teams if team.monthly_budget_usd is not None]
    return rules


def cost_alerting_rules() -> list[dict[str, Any]]:
    """Each team with a budget: warn when its forecast passes 80 % of it, page at 100 %. A team without a budget has
    no budget series, so the division finds nothing to compare."""
    ratio = f"{TEAM_FORECAST} / on (namespace) group_left () {TEAM_BUDGET}"

    def dollars(series: str) -> str:  # the team's value of a series, as the alert is rendered
        return (f'{{{{ with printf "{series}{{namespace=%q}}" $labels.namespace | query }}}}'
                '${{ . | first | value | printf "%.0f" }}{{ end }}')
    forecast, budget = dollars(TEAM_FORECAST), dollars(TEAM_BUDGET)
    return [{
        "alert": "TeamBudgetForecast",
        "expr": f"{ratio} > {share:g}",
        "for": "30m", "labels": {"severity": severity, "category": "cost"},
        "annotations": {
            "summary": "Team {{ $labels.team }} is on course to spend {{ $value | humanizePercentage }} of its monthly "
                       "budget",
            "description": f"At its average cost over the last 24 hours, team {{{{ $labels.team }}}} would spend "
                           f"{forecast} in a {HOURS_PER_MONTH}-hour month, against a budget of {budget} "
                           f"(monthlyBudgetUsd; this alert at {share:.0%}). See the Cost dashboard for its models "
                           "and pools.",
        }} for severity, share in BUDGET_SEVERITIES]


def cost_rule_group(teams: list[TeamConfig]) -> dict[str, Any]:
    """The cost rules as one group: the forecasts are recorded in the same evaluation the alerts read them."""
    return {"name": COST_GROUP, "rules": [*cost_recording_rules(teams), *cost_alerting_rules()]}


def check_gpu_pools(gpu_pools: list[GpuPoolConfig]) -> None:
    for pool in gpu_pools:
        blind = sorted({GPU_INSTANCE_TYPES[t].gpu for t in pool.instance_types} - PROFILING_GPUS)
        if blind:
            raise ValueError(f"gpuPools[{pool.name}]: GPUs {blind} are not known to report "
                             "DCGM_FI_PROF_GR_ENGINE_ACTIVE, which GpuIdle and the GPU panels read")


def rule_groups(cfg: MonitoringConfig, models: list[ModelConfig],
                gpu_pools: list[GpuPoolConfig]) -> list[dict[str, Any]]:
    check_gpu_pools(gpu_pools)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    return [{"name": PLATFORM_GROUP, "rules": [*platform_recording_rules(), *platform_alerting_rules(cfg)]},
            *({"name": f"model-{m.name}", "rules": [*model_recording_rules(m), *model_alerting_rules(m)]}
              for m in models)]
