"""Prometheus metrics of the inference server (names and labels from workloads/CONTRACT.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_DURATION = Histogram(
    "inference_request_duration_seconds",
    "Time from request received to response sent, /invocations only",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REQUESTS = Counter("inference_requests_total", "Requests to /invocations by HTTP status", ["model", "status"])
IN_FLIGHT = Gauge("inference_requests_in_flight", "Requests to /invocations being handled")
BATCH_SIZE = Histogram(
    "inference_batch_size",
    "Rows per model call after micro-batching",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
PREDICTION_SCORE = Histogram(
    "inference_prediction_score",
    "Fraud scores returned",
    ["model"],
    buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)),
)
MODEL_VERSION = Gauge("inference_model_version", "1 for the model version being served", ["model", "version"])
