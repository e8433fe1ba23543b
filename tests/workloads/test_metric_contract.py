"""The workloads expose, under the exact names, every metric the dashboards and alerts read.

Names are taken from each workload's real Prometheus exposition (prometheus_client's text format), not from the
source, so a renamed metric or a counter missing its `_total` suffix fails here.
"""

from __future__ import annotations

import importlib
import re

import pytest
from prometheus_client import REGISTRY, generate_latest

from components.observability.metric_catalog import INFERENCE_LATENCY_BUCKETS, WORKLOAD_METRICS

SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exposed_names() -> set[str]:
    for workload in WORKLOAD_METRICS:
        importlib.import_module(f"{workload}.metrics")
    text = generate_latest(REGISTRY).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        if kind == "counter":  # samples are always <name>_total, whether or not the TYPE line carries it
            names.add(name if name.endswith("_total") else f"{name}_total")
            continue
        names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


@pytest.mark.parametrize("workload", sorted(WORKLOAD_METRICS))
def test_every_catalog_metric_is_exposed(workload):
    missing = WORKLOAD_METRICS[workload] - exposed_names()
    assert not missing, f"{workload} does not expose {sorted(missing)}"


def test_latency_buckets_match_the_slo_catalog():
    from inference.metrics import REQUEST_DURATION
    assert tuple(REQUEST_DURATION._upper_bounds[:-1]) == INFERENCE_LATENCY_BUCKETS  # last bound is +Inf


def test_the_check_would_catch_a_renamed_metric():
    assert "inference_requests_totals" not in exposed_names()
    assert "inference_requests_total" in exposed_names()


def test_series_carry_the_labels_the_rules_select_on():
    # The per-model SLO rules select the inference series by their own `model` label. Drift series carry no model
    # (the drift workload does not know it), so the rules name a model's drift series by its PodMonitor's job label.
    from drift.metrics import PSI
    from inference.metrics import REQUEST_DURATION, REQUESTS
    assert "model" in REQUEST_DURATION._labelnames and {"model", "status"} <= set(REQUESTS._labelnames)
    assert PSI._labelnames == ("feature",)
