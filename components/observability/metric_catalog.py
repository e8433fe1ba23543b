"""Every metric a dashboard panel or alert may use, with who exposes it.

Dashboards and rules are checked against this catalog (tests/test_observability.py), and the workload metrics are
checked against the real workloads' /metrics output (tests/workloads/), so a renamed metric breaks a test instead
of silently emptying a panel.
"""

from __future__ import annotations

import re

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

# Kueue v0.19.2, pkg/metrics/metrics.go (InitMetricVectors; names are "kueue_" + Name). ClusterQueue series carry
# `cluster_queue` (the team), and every series `replica_role` (leader, follower or standalone): with leader election
# both replicas export their gauges, so queries keep replica_role!="follower" to count each workload once.
KUEUE_METRICS: set[str] = {
    "kueue_pending_workloads",  # cluster_queue, status (active | inadmissible)
    "kueue_admitted_active_workloads",  # cluster_queue
    "kueue_reserving_active_workloads",  # cluster_queue
    "kueue_admitted_workloads_total",  # cluster_queue, priority_class
    *_histogram("kueue_admission_wait_time_seconds"),  # cluster_queue, priority_class; recorded on admission
    "kueue_preempted_workloads_total",  # preempting_cluster_queue, reason
    "kueue_evicted_workloads_total",  # cluster_queue, reason, underlying_cause, priority_class
}
# Registered always but reported only with `metrics.enableClusterQueueResources: true` in Kueue's Configuration
# (cmd/kueue/main.go WithResourceMetrics; pkg/cache/scheduler/clusterqueue.go reportResourceMetrics and
# pkg/cache/queue/metrics.go): labels cohort, cluster_queue, flavor, resource (cluster_queue_resource_pending:
# cluster_queue, resource only). Unset limits are reported as +Inf.
KUEUE_RESOURCE_METRICS: set[str] = {
    "kueue_cluster_queue_nominal_quota", "kueue_cluster_queue_borrowing_limit", "kueue_cluster_queue_lending_limit",
    "kueue_cluster_queue_resource_reservation",  # quota reserved by workloads (what borrowing is measured on)
    "kueue_cluster_queue_resource_usage",  # quota used by admitted workloads
    "kueue_cluster_queue_resource_pending",  # requests of pending workloads
    "kueue_cluster_queue_weighted_share",  # fair sharing on (Configuration fairSharing)
}

# OpenCost's cost model (pkg/costmodel/metrics.go, initCostModelMetrics; the project's metrics reference,
# opencost.io docs/integrations/metrics.md). The node_* gauges carry node, instance, instance_type, region,
# provider_id and arch: the node's price per vCPU, per GiB of memory and per GPU unit (`nvidia.com/gpu` as the node
# advertises it, so a time-sliced or MIG unit), its unit count and its whole price, in USD per hour. The
# container_* gauges carry namespace, pod, container and node: max(request, usage) of CPU cores and memory bytes,
# and the GPU units requested. The program turns OpenCost's own KSM-style metrics off (components/opencost.py), so
# kube_pod_labels and kube_node_labels come from kube-state-metrics alone.
OPENCOST_METRICS: set[str] = {
    "node_cpu_hourly_cost", "node_ram_hourly_cost", "node_gpu_hourly_cost", "node_gpu_count", "node_total_hourly_cost",
    "container_cpu_allocation", "container_memory_allocation_bytes", "container_gpu_allocation",
}

# The Kubernetes labels kube-state-metrics copies onto kube_pod_labels / kube_node_labels (its chart value
# metricLabelsAllowlist; nothing without it): which model a pod serves, trains or watches (the workloads are named
# after it, components/pod_spec.py `labels`) and which pool a node belongs to (Karpenter's NodePool name; the system
# node group's and general pool's own label).
KSM_LABEL_ALLOWLIST: dict[str, tuple[str, ...]] = {
    "nodes": ("karpenter.sh/nodepool", "mlplatform.io/pool"),
    "pods": ("app.kubernetes.io/name", "app.kubernetes.io/component"),
}


def ksm_label(kubernetes_label: str) -> str:
    """The Prometheus label kube-state-metrics writes for a Kubernetes label: `label_` and the key with every
    character outside [a-zA-Z0-9_] replaced by `_` (karpenter.sh/nodepool -> label_karpenter_sh_nodepool)."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", kubernetes_label)


def ksm_label_allowlist() -> list[str]:
    """The chart's metricLabelsAllowlist entries: `<resource>=[<label>,...]`."""
    return [f"{resource}=[{','.join(labels)}]" for resource, labels in sorted(KSM_LABEL_ALLOWLIST.items())]


EXPORTER_METRICS: dict[str, set[str]] = {
    # NVIDIA dcgm-exporter: the chart's exporter-metrics-config-map (deployment/templates/metrics-configmap.yaml at
    # tag 4.5.3-4.8.2, mounted over etc/default-counters.csv). DCGM_FI_DEV_GPU_UTIL is not reported for MIG
    # instances; DCGM_FI_PROF_GR_ENGINE_ACTIVE (a 0..1 ratio, a profiling "DCP" field) is, per GPU instance.
    "dcgm-exporter": {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_FB_USED",
                      "DCGM_FI_DEV_FB_FREE"},
    # kube-state-metrics, shipped by kube-prometheus-stack. kube_pod_labels and kube_node_labels carry only the
    # Kubernetes labels KSM_LABEL_ALLOWLIST names (components/monitoring.py hands it to the chart).
    "kube-state-metrics": {"kube_job_failed", "kube_node_info", "kube_node_status_capacity",
                           "kube_pod_container_resource_requests",
                           "kube_pod_status_ready", "kube_deployment_status_replicas_available",
                           "kube_deployment_spec_replicas", "kube_horizontalpodautoscaler_status_current_replicas",
                           "kube_pod_labels", "kube_node_labels"},
    # The kubelet's cAdvisor endpoint, scraped by kube-prometheus-stack.
    "cadvisor": {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"},
    # Strimzi's Kafka Exporter (strimzi flavor only).
    "kafka-exporter": {"kafka_consumergroup_lag"},
    "kueue": KUEUE_METRICS | KUEUE_RESOURCE_METRICS,
    "opencost": OPENCOST_METRICS,
}

# Series the platform's own recording rules create (alert_rules.py).
RECORDED_PREFIXES = ("slo:", "platform:")


def known_metrics() -> dict[str, str]:
    """metric name -> source."""
    out = {}
    for source, names in {**WORKLOAD_METRICS, **EXPORTER_METRICS}.items():
        out.update({n: source for n in names})
    return out
