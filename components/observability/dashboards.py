"""Grafana dashboards as code: model serving, training, Kafka ingestion and the cluster.

Each dashboard is plain Grafana JSON (schemaVersion 39) built from small panel helpers; the Monitoring component
ships them as ConfigMaps that Grafana's dashboard sidecar loads. Queries avoid Grafana-only variables so that every
expression can be parsed by promtool in the tests.
"""

from __future__ import annotations

import json
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # kube-prometheus-stack's provisioned datasource
WL = 'namespace="ml-workloads"'


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


def _quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[5m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


def serving() -> dict[str, Any]:
    panels = [
        _panel("timeseries", "Requests per second", [
            ("sum by (model) (rate(inference_requests_total[5m]))", "{{model}}")], "reqps", 0, 0),
        _panel("timeseries", "Latency p50 / p95 / p99", _quantiles("inference_request_duration_seconds"), "s", 12, 0),
        _panel("timeseries", "Error rate (5xx share)", [
            ('sum(rate(inference_requests_total{status=~"5.."}[5m])) / sum(rate(inference_requests_total[5m]))',
             "5xx"),
            ('sum(rate(inference_requests_total{status=~"4.."}[5m])) / sum(rate(inference_requests_total[5m]))',
             "4xx (client errors)")], "percentunit", 0, 8),
        _panel("heatmap", "Prediction score distribution", [
            ("sum by (le) (increase(inference_prediction_score_bucket[5m]))", "{{le}}")], "short", 12, 8,
            options={"calculate": False, "yAxis": {"unit": "short"}}),
        _panel("timeseries", "Micro-batch size", [
            ("sum(rate(inference_batch_size_sum[5m])) / sum(rate(inference_batch_size_count[5m]))", "mean"),
            *_quantiles("inference_batch_size")[2:]], "short", 0, 16),
        _panel("timeseries", "In-flight requests and serving model version", [
            ("sum(inference_requests_in_flight)", "in flight"),
            ("max by (version) (inference_model_version)", "version {{version}}")], "short", 12, 16),
        _panel("timeseries", "Latency SLO: share of slow predictions", [
            ("slo:inference_latency_bad_ratio:rate5m", "5m"), ("slo:inference_latency_bad_ratio:rate1h", "1h")],
            "percentunit", 0, 24, w=24),
    ]
    return _dashboard("ml-serving", "ML platform / Model serving", panels)


def training() -> dict[str, Any]:
    panels = [
        _panel("timeseries", "GPU utilisation (training pods)", [
            (f"avg by (pod, gpu) (DCGM_FI_DEV_GPU_UTIL{{{WL}}})", "{{pod}} gpu{{gpu}}")], "percent", 0, 0),
        _panel("timeseries", "GPU memory used", [
            (f"sum by (pod) (DCGM_FI_DEV_FB_USED{{{WL}}}) * 1024 * 1024", "{{pod}} used"),
            (f"sum by (pod) (DCGM_FI_DEV_FB_USED{{{WL}}} + DCGM_FI_DEV_FB_FREE{{{WL}}}) * 1024 * 1024",
             "{{pod}} total")], "bytes", 12, 0),
        _panel("timeseries", "Throughput (samples/s)", [
            ("sum by (pod) (rate(training_samples_total[5m]))", "{{pod}}")], "short", 0, 8),
        _panel("timeseries", "Loss", [("max by (split) (training_loss)", "{{split}}")], "short", 12, 8),
        _panel("timeseries", "Validation PR AUC and epoch", [
            ("max(training_validation_pr_auc)", "PR AUC"), ("max(training_epoch)", "epoch")], "short", 0, 16),
        _panel("stat", "Failed training jobs", [
            (f'sum(kube_job_failed{{condition="true", {WL}}})', "failed")], "short", 12, 16),
    ]
    return _dashboard("ml-training", "ML platform / Training", panels)


def kafka() -> dict[str, Any]:
    panels = [
        _panel("timeseries", "Ingestion consumer lag (records)", [
            ("sum by (topic) (ingestion_consumer_lag)", "{{topic}}")], "short", 0, 0),
        _panel("timeseries", "Records ingested per second", [
            ("sum by (outcome) (rate(ingestion_records_total[5m]))", "{{outcome}}")], "short", 12, 0),
        _panel("timeseries", "Parquet files written per minute", [
            ("sum(rate(ingestion_files_written_total[5m])) * 60", "files/min")], "short", 0, 8),
        _panel("timeseries", "Batch write latency p50 / p95 / p99",
               _quantiles("ingestion_batch_duration_seconds"), "s", 12, 8),
        _panel("timeseries", "Consumer group lag (Strimzi Kafka Exporter)", [
            ("sum by (consumergroup, topic) (kafka_consumergroup_lag)", "{{consumergroup}} {{topic}}")],
            "short", 0, 16, w=24),
    ]
    return _dashboard("ml-kafka", "ML platform / Kafka and ingestion", panels)


def cluster() -> dict[str, Any]:
    panels = [
        _panel("stat", "Nodes", [("count(kube_node_info)", "nodes")], "short", 0, 0, w=6),
        _panel("stat", "GPUs in the cluster", [
            ('sum(kube_node_status_capacity{resource="nvidia_com_gpu"})', "GPUs")], "short", 6, 0, w=6),
        _panel("stat", "GPUs requested by pods", [
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
            ("sum by (namespace, deployment) (kube_deployment_status_replicas_available{namespace=~"
             '"ml-workloads|mlflow"}) / sum by (namespace, deployment) (kube_deployment_spec_replicas'
             '{namespace=~"ml-workloads|mlflow"})', "{{namespace}}/{{deployment}}"),
            (f"sum by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas{{{WL}}})",
             "HPA {{horizontalpodautoscaler}} replicas")], "short", 0, 12, w=24),
    ]
    return _dashboard("ml-cluster", "ML platform / Cluster", panels)


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {"uid": uid, "title": title, "tags": ["ml-platform"], "schemaVersion": 39, "version": 1,
            "editable": False, "timezone": "utc", "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "panels": panels}


DASHBOARDS = {"serving": serving, "training": training, "kafka": kafka, "cluster": cluster}


def rendered() -> dict[str, str]:
    """file name -> dashboard JSON, as the ConfigMaps carry them."""
    return {f"ml-{name}.json": json.dumps(build(), indent=1, sort_keys=True) for name, build in DASHBOARDS.items()}
