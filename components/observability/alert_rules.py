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

from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.model import GpuPoolConfig
from platform_config.services_model import MonitoringConfig
from platform_config.teams_model import TEAM_NAMESPACE_PREFIX, ModelConfig

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
