"""Grafana dashboards as code: one per model, the fleet views (serving, training, Kafka, cluster), the queues and cost.

Each dashboard is plain Grafana JSON (schemaVersion 39) built from small panel helpers; the Monitoring component
ships them as ConfigMaps that Grafana's dashboard sidecar loads. A model's dashboard is generated for it (filtered to
its series, its objectives drawn as lines) rather than templated, so every query is concrete: promtool parses each
one in the tests, and the catalog check sees every metric name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from components.observability import alert_rules as rules
from components.observability.alert_rules import (KUEUE_LEADER, TEAM_NAMESPACE_MATCH, pod_monitor_job,
                                                  serving_selector, team_namespace)
from platform_config.model import GpuPoolConfig
from platform_config.teams_model import TEAM_NAMESPACE_PREFIX, ModelConfig

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # kube-prometheus-stack's provisioned datasource
TEAMS = TEAM_NAMESPACE_MATCH
UID_MAX = 40  # Grafana's limit on a dashboard uid


def _panel(kind: str, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12,
           h: int = 8, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind, "title": title, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                    for i, (expr, legend) in enumerate(targets)],
        **extra,
    }


def _stat_with_floor(title: str, expr: str, floor: float, x: int, y: int) -> dict[str, Any]:
    """A ratio stat that turns red below its objective."""
    panel = _panel("stat", title, [(expr, "")], "percentunit", x, y, w=6, h=4)
    panel["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": [
        {"color": "red", "value": None}, {"color": "green", "value": floor}]}
    return panel


def _quantiles(metric: str, selector: str) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{selector}}}[5m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


def model_uid(name: str) -> str:
    uid = f"ml-model-{name}"
    if len(uid) <= UID_MAX:
        return uid
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{uid[:UID_MAX - 9]}-{digest}"


def model_dashboard(model: ModelConfig) -> dict[str, Any]:
    """Serving, SLO, training and drift of one model, each query filtered to its series."""
    slo, name = model.serving, model.name
    ns = team_namespace(model.team)
    sel = serving_selector(model)
    # Series without a `model` label (batch size, in-flight) are told apart by the model's Service.
    svc = f'namespace="{ns}", service="{name}"'
    training = f'namespace="{ns}", job="{pod_monitor_job(model, "training")}"'
    drift = f'namespace="{ns}", job="{pod_monitor_job(model, "drift")}"'
    budget = round(1 - slo.slo_objective, 6)
    requests = f"sum(rate(inference_requests_total{{{sel}}}[5m]))"
    objective = f"{slo.slo_objective:.2%} under {slo.latency_slo_seconds:g}s"
    panels = [
        _stat_with_floor(f"Fast predictions, last 1h (objective {slo.slo_objective:.2%})",
                         f"1 - sum(slo:inference_latency_bad_ratio:rate1h{{{sel}}})", slo.slo_objective, 0, 0),
        _stat_with_floor(f"Successful predictions, last 1h (objective {slo.slo_objective:.2%})",
                         f"1 - sum(slo:inference_error_ratio:rate1h{{{sel}}})", slo.slo_objective, 6, 0),
        _panel("stat", "Latency error budget burn rate, last 1h (page at 14.4)", [
            (f"sum(slo:inference_latency_bad_ratio:rate1h{{{sel}}}) / {budget}", "burn rate")], "short",
            12, 0, w=6, h=4),
        _panel("stat", "Serving model version", [
            (f"max by (version) (inference_model_version{{{sel}}})", "{{version}}")], "short", 18, 0, w=6, h=4,
            options={"textMode": "name"}),
        _panel("timeseries", "Requests per second", [
            (f"sum by (status) (rate(inference_requests_total{{{sel}}}[5m]))", "{{status}}")], "reqps", 0, 4),
        _panel("timeseries", "Latency p50 / p95 / p99", [
            *_quantiles("inference_request_duration_seconds", sel),
            (f"vector({slo.latency_slo_seconds:g})", f"objective ({objective})")], "s", 12, 4),
        _panel("timeseries", "Error rate (5xx share)", [
            (f'sum(rate(inference_requests_total{{{sel}, status=~"5.."}}[5m])) / {requests}', "5xx"),
            (f'sum(rate(inference_requests_total{{{sel}, status=~"4.."}}[5m])) / {requests}',
             "4xx (client errors)"),
            (f"vector({budget})", "error budget")], "percentunit", 0, 12),
        _panel("timeseries", "Latency SLO: share of slow predictions", [
            (f"sum(slo:inference_latency_bad_ratio:rate5m{{{sel}}})", "5m"),
            (f"sum(slo:inference_latency_bad_ratio:rate1h{{{sel}}})", "1h"),
            (f"vector({budget})", "error budget"),
            (f"vector({round(14.4 * budget, 6)})", "page (14.4x burn)")], "percentunit", 12, 12),
        _panel("heatmap", "Prediction score distribution", [
            (f"sum by (le) (increase(inference_prediction_score_bucket{{{sel}}}[5m]))", "{{le}}")], "short", 0, 20,
            options={"calculate": False, "yAxis": {"unit": "short"}}),
        _panel("timeseries", "Micro-batch size", [
            (f"sum(rate(inference_batch_size_sum{{{svc}}}[5m])) / sum(rate(inference_batch_size_count{{{svc}}}[5m]))",
             "mean"), *_quantiles("inference_batch_size", svc)[2:]], "short", 12, 20),
        _panel("timeseries", "In-flight requests and replicas", [
            (f"sum(inference_requests_in_flight{{{svc}}})", "in flight"),
            (f'sum(kube_horizontalpodautoscaler_status_current_replicas{{namespace="{ns}", '
             f'horizontalpodautoscaler="{name}"}})', "replicas")], "short", 0, 28),
        _panel("timeseries", "Training loss", [(f"max by (split) (training_loss{{{training}}})", "{{split}}")],
               "short", 12, 28),
        _panel("timeseries", "Training throughput (samples/s)", [
            (f"sum(rate(training_samples_total{{{training}}}[5m]))", "samples/s")], "short", 0, 36),
        _panel("timeseries", "Validation PR AUC and epoch", [
            (f"max(training_validation_pr_auc{{{training}}})", "PR AUC"),
            (f"max(training_epoch{{{training}}})", "epoch")], "short", 12, 36),
        # Pods of the model's training Jobs are named <model>-training-<...>; the exporter labels a GPU with its pod.
        _panel("timeseries", "Training GPU engine activity", [
            (f'avg by (pod) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{ns}", pod=~"{name}-training-.+"}})',
             "{{pod}}")], "percentunit", 0, 44),
        _panel("stat", "Failed training jobs", [
            (f'sum(kube_job_failed{{condition="true", namespace="{ns}", job_name=~"{name}-training.*"}})',
             "failed")], "short", 12, 44, w=6),
        _panel("stat", "Since the last drift run", [
            (f"time() - max(drift_last_run_timestamp_seconds{{{drift}}})", "age")], "s", 18, 44, w=6),
        _panel("timeseries", f"Drift: PSI per feature (threshold {model.drift.psi_threshold:g})", [
            (f"max by (feature) (drift_psi{{{drift}}})", "{{feature}}"),
            (f"vector({model.drift.psi_threshold:g})", "threshold")], "short", 0, 52, w=24),
    ]
    if slo.gpu_pool:
        # Serving pods are the Deployment's: <model>-<replicaset hash>-<suffix>.
        panels.append(_panel("timeseries", "Serving GPU engine activity", [
            (f'avg by (pod) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{ns}", pod=~"{name}-[a-z0-9]+-[a-z0-9]+"}})',
             "{{pod}}")], "percentunit", 0, 60, w=24))
    board = _dashboard(model_uid(name), f"Model {name} (team {model.team})", panels,
                       tags=["model", f"team-{model.team}"])
    board["description"] = (f"Objective: {objective} and {slo.slo_objective:.2%} successful; drift when a "
                            f"feature's PSI exceeds {model.drift.psi_threshold:g}.")
    return board


def serving() -> dict[str, Any]:
    """Every model side by side; each model's own dashboard has the detail."""
    by = "sum by (namespace, model)"
    total = f"{by} (rate(inference_requests_total{{{TEAMS}}}[5m]))"
    panels = [
        _panel("timeseries", "Requests per second by model", [(total, "{{model}}")], "reqps", 0, 0),
        _panel("timeseries", "Latency p99 by model", [
            (f"histogram_quantile(0.99, sum by (le, namespace, model) "
             f"(rate(inference_request_duration_seconds_bucket{{{TEAMS}}}[5m])))", "{{model}}")], "s", 12, 0),
        _panel("timeseries", "Error rate (5xx share) by model", [
            (f'{by} (rate(inference_requests_total{{{TEAMS}, status=~"5.."}}[5m])) / {total}', "{{model}}")],
            "percentunit", 0, 8),
        _panel("timeseries", "Latency SLO: share of slow predictions (1h) by model", [
            ("slo:inference_latency_bad_ratio:rate1h", "{{model}}")], "percentunit", 12, 8),
    ]
    return _dashboard("ml-serving", "ML platform / Model serving", panels)


def training() -> dict[str, Any]:
    gpu = f'{TEAMS}, pod=~".+-training-.+"'
    panels = [
        _panel("timeseries", "GPU engine activity (training pods)", [
            (f"avg by (namespace, pod, gpu, GPU_I_ID) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{gpu}}})",
             "{{namespace}}/{{pod}} gpu{{gpu}} {{GPU_I_ID}}")], "percentunit", 0, 0),
        _panel("timeseries", "GPU memory used", [
            (f"sum by (namespace, pod) (DCGM_FI_DEV_FB_USED{{{gpu}}}) * 1024 * 1024", "{{namespace}}/{{pod}} used"),
            (f"sum by (namespace, pod) (DCGM_FI_DEV_FB_USED{{{gpu}}} + DCGM_FI_DEV_FB_FREE{{{gpu}}}) * 1024 * 1024",
             "{{namespace}}/{{pod}} total")], "bytes", 12, 0),
        _panel("timeseries", "Throughput (samples/s)", [
            (f"sum by (job) (rate(training_samples_total{{{TEAMS}}}[5m]))", "{{job}}")], "short", 0, 8),
        _panel("timeseries", "Loss", [(f"max by (job, split) (training_loss{{{TEAMS}}})", "{{job}} {{split}}")],
               "short", 12, 8),
        _panel("timeseries", "Validation PR AUC", [
            (f"max by (job) (training_validation_pr_auc{{{TEAMS}}})", "{{job}}")], "short", 0, 16),
        _panel("stat", "Failed training jobs", [
            (f'sum by (namespace) (kube_job_failed{{condition="true", {TEAMS}}})', "{{namespace}}")],
            "short", 12, 16),
    ]
    return _dashboard("ml-training", "ML platform / Training", panels)


def kafka() -> dict[str, Any]:
    panels = [
        _panel("timeseries", "Ingestion consumer lag (records)", [
            (f"sum by (namespace, topic) (ingestion_consumer_lag{{{TEAMS}}})", "{{topic}}")], "short", 0, 0),
        _panel("timeseries", "Records ingested per second", [
            (f"sum by (namespace, outcome) (rate(ingestion_records_total{{{TEAMS}}}[5m]))",
             "{{namespace}} {{outcome}}")], "short", 12, 0),
        _panel("timeseries", "Parquet files written per minute", [
            (f"sum by (namespace) (rate(ingestion_files_written_total{{{TEAMS}}}[5m])) * 60", "{{namespace}}")],
            "short", 0, 8),
        _panel("timeseries", "Batch write latency p50 / p95 / p99",
               _quantiles("ingestion_batch_duration_seconds", TEAMS), "s", 12, 8),
        _panel("timeseries", "Consumer group lag (Strimzi Kafka Exporter)", [
            ("sum by (consumergroup, topic) (kafka_consumergroup_lag)", "{{consumergroup}} {{topic}}")],
            "short", 0, 16, w=24),
    ]
    return _dashboard("ml-kafka", "ML platform / Kafka and ingestion", panels)


def cluster() -> dict[str, Any]:
    platform_ns = f'namespace=~"{TEAM_NAMESPACE_PREFIX}.+|mlflow|kafka|kueue-system"'
    panels = [
        _panel("stat", "Nodes", [("count(kube_node_info)", "nodes")], "short", 0, 0, w=6),
        _panel("stat", "GPU units in the cluster", [
            ('sum(kube_node_status_capacity{resource="nvidia_com_gpu"})', "units")], "short", 6, 0, w=6),
        _panel("stat", "GPU units requested by pods", [
            ('sum(kube_pod_container_resource_requests{resource="nvidia_com_gpu"})', "requested")], "short",
            12, 0, w=6),
        _panel("stat", "Pods not ready", [
            ('sum(kube_pod_status_ready{condition="false"})', "not ready")], "short", 18, 0, w=6),
        _panel("timeseries", "CPU by namespace (cores)", [
            ('sum by (namespace) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))', "{{namespace}}")],
            "short", 0, 4),
        _panel("timeseries", "Memory by namespace", [
            ('sum by (namespace) (container_memory_working_set_bytes{container!=""})', "{{namespace}}")],
            "bytes", 12, 4),
        _panel("timeseries", "Platform deployments: available / desired replicas", [
            (f"sum by (namespace, deployment) (kube_deployment_status_replicas_available{{{platform_ns}}}) / "
             f"sum by (namespace, deployment) (kube_deployment_spec_replicas{{{platform_ns}}})",
             "{{namespace}}/{{deployment}}"),
            (f"sum by (namespace, horizontalpodautoscaler) "
             f"(kube_horizontalpodautoscaler_status_current_replicas{{{TEAMS}}})",
             "HPA {{namespace}}/{{horizontalpodautoscaler}} replicas")], "short", 0, 12, w=24),
    ]
    return _dashboard("ml-cluster", "ML platform / Cluster", panels)


def _sharing(pool: GpuPoolConfig) -> str:
    if pool.sharing.mig_profile:
        return f"MIG {pool.sharing.mig_profile}, {pool.sharing.units_per_gpu} units per GPU"
    if pool.sharing.time_slicing_replicas:
        return f"time-sliced, {pool.sharing.time_slicing_replicas} units per GPU"
    return "one unit per GPU"


def queues(gpu_pools: list[GpuPoolConfig]) -> dict[str, Any]:
    """Kueue's view per team (a team is a ClusterQueue), then per GPU pool."""
    q = KUEUE_LEADER
    frf = "sum by (cluster_queue, flavor, resource)"

    def quota(title: str, resource: str, unit: str, y: int) -> list[dict[str, Any]]:
        r = f'{q}, resource="{resource}"'
        return [
            _panel("timeseries", f"{title}: used and nominal quota", [
                (f"{frf} (kueue_cluster_queue_resource_usage{{{r}}})", "{{cluster_queue}} {{flavor}} used"),
                (f"{frf} (kueue_cluster_queue_nominal_quota{{{r}}})", "{{cluster_queue}} {{flavor}} nominal")],
                unit, 0, y),
            # Kueue measures borrowing on reserved quota: what a team holds above its nominal share came from the
            # cohort's unused quota.
            _panel("timeseries", f"{title}: borrowed from the cohort", [
                (f"clamp_min({frf} (kueue_cluster_queue_resource_reservation{{{r}}}) - "
                 f"{frf} (kueue_cluster_queue_nominal_quota{{{r}}}), 0)", "{{cluster_queue}} {{flavor}}")],
                unit, 12, y),
        ]

    panels = [
        _panel("timeseries", "Pending workloads per team", [
            (f"sum by (cluster_queue, status) (kueue_pending_workloads{{{q}}})", "{{cluster_queue}} {{status}}")],
            "short", 0, 0),
        _panel("timeseries", "Admitted (running) workloads per team", [
            (f"sum by (cluster_queue) (kueue_admitted_active_workloads{{{q}}})", "{{cluster_queue}}")],
            "short", 12, 0),
        _panel("timeseries", "Admission wait p50 / p90 (admitted in the last hour)", [
            (f"histogram_quantile({p}, sum by (le, cluster_queue) "
             f"(rate(kueue_admission_wait_time_seconds_bucket[1h])))", f"{{{{cluster_queue}}}} p{int(p * 100)}")
            for p in (0.5, 0.9)], "s", 0, 8),
        _panel("timeseries", "Preemptions and evictions per hour", [
            ("sum by (preempting_cluster_queue, reason) (increase(kueue_preempted_workloads_total[1h]))",
             "{{preempting_cluster_queue}} preempted others ({{reason}})"),
            ("sum by (cluster_queue, reason) (increase(kueue_evicted_workloads_total[1h]))",
             "{{cluster_queue}} evicted ({{reason}})")], "short", 12, 8),
        *quota("GPU units", "nvidia.com/gpu", "short", 16),
        *quota("CPU (cores)", "cpu", "short", 24),
        *quota("Memory", "memory", "bytes", 32),
        _panel("timeseries", "Requests of pending workloads", [
            (f"sum by (cluster_queue, resource) (kueue_cluster_queue_resource_pending{{{q}}})",
             "{{cluster_queue}} {{resource}}")], "short", 0, 40),
        _panel("timeseries", "Fair-sharing weighted share (above 0: using borrowed quota)", [
            (f"max by (cluster_queue) (kueue_cluster_queue_weighted_share{{{q}}})", "{{cluster_queue}}")],
            "short", 12, 40),
    ]
    # ResourceFlavors are named after the GPU pools, so Kueue's quota metrics are per pool; the node limit comes from
    # the config. A MIG pool's instances are the exporter's series of its profile (GPU_I_PROFILE).
    y = 48
    for pool in gpu_pools:
        r = f'{q}, flavor="{pool.name}", resource="nvidia.com/gpu"'
        panels.append(_panel("timeseries", f"GPU pool {pool.name} ({_sharing(pool)}): units in use per team", [
            (f"sum by (cluster_queue) (kueue_cluster_queue_resource_usage{{{r}}})", "{{cluster_queue}}"),
            (f"sum(kueue_cluster_queue_nominal_quota{{{r}}})", "nominal quota, all teams"),
            (f"vector({pool.max_units})", "pool capacity at its node limit")], "short", 0, y))
        profile = pool.sharing.mig_profile
        if profile:
            panels.append(_panel("timeseries", f"GPU pool {pool.name}: MIG {profile} engine activity", [
                (f'avg by (namespace) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{GPU_I_PROFILE="{profile}"}})', "{{namespace}}")],
                "percentunit", 12, y))
        y += 8
    return _dashboard("ml-queues", "ML platform / Queues and GPU pools", panels)


def _gpu_hours(series: str, by: str) -> str:
    """GPU unit-hours over the last 7 days: the unit count sampled every 5 minutes, twelve samples to the hour."""
    return f"sum by ({by}) (sum_over_time({series}[7d:5m])) / 12"


def cost() -> dict[str, Any]:
    """What the cluster costs at OpenCost's prices, per team, model and pool, and what idle GPUs cost. The series
    are the cost rules' (alert_rules.cost_recording_rules); GPU-hours are in `nvidia.com/gpu` units, the unit of
    the teams' quotas (a time-sliced or MIG pool has several per GPU)."""
    usd = "currencyUSD"
    forecast = f"{rules.TEAM_FORECAST} / on (namespace) group_left () {rules.TEAM_BUDGET}"
    budget = _panel("bargauge", "Month forecast / budget per team (warning at 80 %, page at 100 %)",
                    [(forecast, "{{team}}")], "percentunit", 12, 4, options={"displayMode": "basic"})
    budget["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": [
        {"color": "green", "value": None}, *({"color": "orange" if s == "warning" else "red", "value": share}
                                            for s, share in rules.BUDGET_SEVERITIES)]}
    panels = [
        _panel("stat", "Cluster, $ per hour (all nodes)", [("sum(avg by (node) (node_total_hourly_cost))", "")],
               usd, 0, 0, w=6, h=4),
        _panel("stat", "Teams, $ per hour", [(f"sum({rules.TEAM_COST})", "")], usd, 6, 0, w=6, h=4),
        _panel("stat", "Idle GPUs, $ per hour", [(f"sum({rules.POOL_IDLE_GPU_COST})", "")], usd, 12, 0, w=6, h=4),
        _panel("stat", "Idle GPUs, $ in the last 24 h", [
            (f"sum(sum_over_time({rules.POOL_IDLE_GPU_COST}[24h:5m])) / 12", "")], usd, 18, 0, w=6, h=4),
        _panel("timeseries", "Cost per team ($ per hour)", [(f"sum by (team) ({rules.TEAM_COST})", "{{team}}")],
               usd, 0, 4),
        budget,
        _panel("bargauge", "Cost per team, last 24 h", [(f"sum by (team) ({rules.TEAM_COST_DAY}) * 24", "{{team}}")],
               usd, 0, 12, options={"displayMode": "basic"}),
        _panel("bargauge", "Month forecast per team (last 24 h's average x 730 h)", [
            (f"sum by (team) ({rules.TEAM_FORECAST})", "{{team}}")], usd, 12, 12, options={"displayMode": "basic"}),
        _panel("timeseries", "GPU units held per team", [(f"sum by (team) ({rules.TEAM_GPU_UNITS})", "{{team}}")],
               "short", 0, 20),
        _panel("bargauge", "GPU-hours per team, last 7 days", [(_gpu_hours(rules.TEAM_GPU_UNITS, "team"), "{{team}}")],
               "short", 12, 20, options={"displayMode": "basic"}),
        _panel("timeseries", "Cost per model ($ per hour)", [
            (f"sum by (team, model) ({rules.MODEL_COST})", "{{team}}/{{model}}")], usd, 0, 28),
        _panel("bargauge", "GPU-hours per model, last 7 days", [
            (_gpu_hours(rules.MODEL_GPU_UNITS, "team, model"), "{{team}}/{{model}}")], "short", 12, 28,
            options={"displayMode": "basic"}),
        _panel("timeseries", "Cost per pool ($ per hour, whole nodes, held or idle)", [
            (f"sum by (pool) ({rules.POOL_COST})", "{{pool}}")], usd, 0, 36),
        _panel("bargauge", "GPU-hours per pool, last 7 days", [(_gpu_hours(rules.POOL_GPU_UNITS, "pool"), "{{pool}}")],
               "short", 12, 36, options={"displayMode": "basic"}),
        _panel("timeseries", "Idle GPU cost per pool ($ per hour: units no pod holds)", [
            (f"sum by (pool) ({rules.POOL_IDLE_GPU_COST})", "{{pool}}")], usd, 0, 44),
        _panel("timeseries", "Platform services ($ per hour, by namespace)", [
            (f'sum by (namespace) ({rules.POD_COST}{{namespace!~"{TEAM_NAMESPACE_PREFIX}.+"}})', "{{namespace}}")],
            usd, 12, 44),
    ]
    board = _dashboard("ml-cost", "ML platform / Cost", panels, tags=["cost"])
    board["description"] = ("OpenCost's list prices (on-demand, or spot for spot nodes) times what each pod holds; "
                            "no discounts, storage, network or AWS services outside the nodes.")
    return board


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], tags: Sequence[str] = ()) -> dict[str, Any]:
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {"uid": uid, "title": title, "tags": ["ml-platform", *tags], "schemaVersion": 39, "version": 1,
            "editable": False, "timezone": "utc", "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "panels": panels}


def dashboards(models: list[ModelConfig], gpu_pools: list[GpuPoolConfig]) -> dict[str, dict[str, Any]]:
    """ConfigMap name -> dashboard."""
    boards = {"ml-serving": serving(), "ml-training": training(), "ml-kafka": kafka(), "ml-cluster": cluster(),
              "ml-queues": queues(gpu_pools), "ml-cost": cost()}
    for model in models:
        boards[f"ml-model-{model.name}"] = model_dashboard(model)
    return boards


def rendered(models: list[ModelConfig], gpu_pools: list[GpuPoolConfig]) -> dict[str, str]:
    """file name -> dashboard JSON, as the ConfigMaps carry them."""
    return {f"{name}.json": json.dumps(board, indent=1, sort_keys=True)
            for name, board in dashboards(models, gpu_pools).items()}
