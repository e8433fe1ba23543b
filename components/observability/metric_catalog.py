"""Every metric a dashboard panel or alert may use, with who exposes it.

Dashboards and rules are checked against this catalog (tests/test_observability.py), and the workload metrics are
checked against the real workloads' /metrics output (tests/workloads/), so a renamed metric breaks a test instead
of silently emptying a panel.
"""

from __future__ import annotations

# The inference server's request-latency buckets (workloads/inference/metrics.py; a workload test compares them).
# The latency SLO threshold must be one of them, which the config loader checks.
INFERENCE_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}


WORKLOAD_METRICS: dict[str, set[str]] = {  # workloads/CONTRACT.md
    "inference": {*_histogram("inference_request_duration_seconds"), "inference_requests_total",
                  "inference_requests_in_flight", *_histogram("inference_batch_size"),
                  *_histogram("inference_prediction_score"), "inference_model_version"},
    "ingestion": {"ingestion_records_total", "ingestion_files_written_total",
                  *_histogram("ingestion_batch_duration_seconds"), "ingestion_consumer_lag"},
    "training": {"training_loss", "training_samples_total", "training_epoch", "training_validation_pr_auc"},
    "drift": {"drift_psi", "drift_detected", "drift_last_run_timestamp_seconds"},
}

EXPORTER_METRICS: dict[str, set[str]] = {
    # NVIDIA dcgm-exporter default counters (etc/default-counters.csv).
    "dcgm-exporter": {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"},
    # kube-state-metrics, shipped by kube-prometheus-stack.
    "kube-state-metrics": {"kube_job_failed", "kube_node_info", "kube_node_status_capacity",
                           "kube_pod_container_resource_requests", "kube_pod_status_ready",
                           "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas",
                           "kube_horizontalpodautoscaler_status_current_replicas"},
    # The kubelet's cAdvisor endpoint, scraped by kube-prometheus-stack.
    "cadvisor": {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"},
    # Strimzi's Kafka Exporter (strimzi flavor only).
    "kafka-exporter": {"kafka_consumergroup_lag"},
}

# Series the platform's own recording rules create (alert_rules.py).
RECORDED_PREFIXES = ("slo:", "platform:")


def known_metrics() -> dict[str, str]:
    """metric name -> source."""
    out = {}
    for source, names in {**WORKLOAD_METRICS, **EXPORTER_METRICS}.items():
        out.update({n: source for n in names})
    return out
