"""Prometheus recording and alerting rules for the ML platform, rendered from the stack's monitoring config.

The latency and error alerts are multi-window burn-rate alerts on the serving SLO (the Google SRE workbook's
recipe): a fast burn (14.4x budget over 1h, confirmed over 5m) pages, a slow burn (6x over 6h, confirmed over 30m)
opens a ticket. Short windows stop an alert from firing long after the problem ended.
"""

from __future__ import annotations

from typing import Any

from platform_config.services_model import MonitoringConfig

WORKLOAD_NAMESPACE_MATCH = 'namespace="ml-workloads"'
EXPORTER_NAMESPACE = "monitoring"
# (long window, short window, burn factor, severity)
BURN_WINDOWS = (("1h", "5m", 14.4, "critical"), ("6h", "30m", 6.0, "warning"))
SLI_WINDOWS = ("5m", "30m", "1h", "6h")


def _le(seconds: float) -> str:
    # prometheus_client renders bucket bounds with repr(float): 0.25 -> "0.25", 1 -> "1.0".
    return repr(float(seconds))


def recording_rules(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    rules = []
    le = _le(cfg.latency_slo_seconds)
    for w in SLI_WINDOWS:
        total = f"sum(rate(inference_request_duration_seconds_count[{w}]))"
        fast = f'sum(rate(inference_request_duration_seconds_bucket{{le="{le}"}}[{w}]))'
        errors = f'sum(rate(inference_requests_total{{status=~"5.."}}[{w}]))'
        requests = f"sum(rate(inference_requests_total[{w}]))"
        rules.append({"record": f"slo:inference_latency_bad_ratio:rate{w}", "expr": f"1 - ({fast} / {total})"})
        rules.append({"record": f"slo:inference_error_ratio:rate{w}", "expr": f"{errors} / {requests}"})
    return rules


def _burn(sli: str, budget: float, long: str, short: str, factor: float) -> str:
    threshold = round(factor * budget, 6)
    return f"(slo:{sli}:rate{long} > {threshold}) and (slo:{sli}:rate{short} > {threshold})"


def alerting_rules(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    budget = round(1 - cfg.slo_objective, 6)
    rules: list[dict[str, Any]] = []
    for long, short, factor, severity in BURN_WINDOWS:
        rules.append({
            "alert": "InferenceLatencySLOBurn", "expr": _burn("inference_latency_bad_ratio", budget, long, short, factor),
            "for": "2m", "labels": {"severity": severity, "slo": "inference-latency"},
            "annotations": {
                "summary": f"Predictions slower than {cfg.latency_slo_seconds:g}s are burning the error budget "
                           f"{factor}x too fast",
                "description": f"Over the last {long}, {{{{ $value | humanizePercentage }}}} of predictions took longer "
                               f"than {cfg.latency_slo_seconds:g}s (objective: {cfg.slo_objective:.2%} fast).",
            }})
        rules.append({
            "alert": "InferenceErrorBudgetBurn", "expr": _burn("inference_error_ratio", budget, long, short, factor),
            "for": "2m", "labels": {"severity": severity, "slo": "inference-availability"},
            "annotations": {
                "summary": f"Inference 5xx responses are burning the error budget {factor}x too fast",
                "description": f"Over the last {long}, {{{{ $value | humanizePercentage }}}} of prediction requests "
                               "failed with a 5xx status.",
            }})
    rules += [
        {"alert": "GpuIdle",
         # `for` (not max_over_time) so the alert needs the GPU idle for the whole period, not a short history.
         # dcgm-exporter (4.8.2: the label is `Hostname`) names the pod only for GPUs assigned to one; an unassigned
         # GPU's series gets the exporter's own target labels instead, hence the exporter's namespace is excluded.
         "expr": f'max by (Hostname, gpu, namespace, pod) '
                 f'(DCGM_FI_DEV_GPU_UTIL{{pod!="", namespace!="{EXPORTER_NAMESPACE}"}}) < 5',
         "for": f"{cfg.gpu_idle_minutes}m", "labels": {"severity": "warning", "category": "cost"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is allocated but idle",
                         "description": f"Pod {{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} holds a GPU that stayed "
                                        f"under 5% utilisation for {cfg.gpu_idle_minutes} minutes; release it or "
                                        "scale the workload down."}},
        {"alert": "DataDriftDetected",
         "expr": f"max by (feature) (drift_psi) > {cfg.drift_psi_threshold:g}",
         "for": "5m", "labels": {"severity": "warning", "category": "model-quality"},
         "annotations": {"summary": "Feature {{ $labels.feature }} has drifted from the training data",
                         "description": f"PSI is {{{{ $value | printf \"%.2f\" }}}} (threshold "
                                        f"{cfg.drift_psi_threshold:g}); check the inputs and consider retraining."}},
        {"alert": "IngestionConsumerLag",
         "expr": f"sum by (topic) (ingestion_consumer_lag) > {cfg.consumer_lag_records}",
         "for": "10m", "labels": {"severity": "warning", "category": "data-pipeline"},
         "annotations": {"summary": "Lake ingestion is {{ $value }} records behind on {{ $labels.topic }}",
                         "description": "The Kafka-to-lake consumers are not keeping up; check their errors and "
                                        "scale ingestion.replicas (up to the topic's partition count)."}},
        {"alert": "TrainingJobFailed",
         "expr": f'max by (namespace, job_name) (kube_job_failed{{condition="true", {WORKLOAD_NAMESPACE_MATCH}}}) == 1',
         "for": "0m", "labels": {"severity": "warning", "category": "training"},
         "annotations": {"summary": "Training job {{ $labels.job_name }} failed",
                         "description": "The job used up its retries (spot interruptions are not counted); see "
                                        "`kubectl -n {{ $labels.namespace }} logs job/{{ $labels.job_name }}`."}},
    ]
    return rules


def rule_groups(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    # One group: rules in a group run in order, so each alert sees the SLI ratios recorded in the same evaluation.
    # Across groups the order is undefined and an alert could read a ratio one interval old.
    return [{"name": "ml-platform", "rules": [*recording_rules(cfg), *alerting_rules(cfg)]}]
