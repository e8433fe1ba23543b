"""Drift: PSI near zero for the same distribution, above the threshold for datagen's drift; CLI and metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from common import lake
from common.schema import NUMERIC_FEATURES, CATEGORICAL_FEATURES, records_to_table
from datagen import generate
from drift import compute_drift, psi_categorical, psi_numeric
from drift.__main__ import main
from drift.psi import SCORE_FEATURE
from local_services import free_port


def test_same_distribution_has_small_psi():
    report = compute_drift(generate(4000, seed=1), generate(4000, seed=2))
    assert not report.detected
    assert set(report.psi) == set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES)
    assert max(report.psi.values()) < 0.05, report.psi


def test_drifted_data_is_detected_on_the_shifted_features():
    report = compute_drift(generate(4000, seed=1), generate(4000, seed=2, drift=True))
    assert report.detected
    assert {"amount", "channel"} <= set(report.drifted)
    assert report.psi["amount"] > 0.5
    assert "seconds_since_last_txn" not in report.drifted  # unchanged by drift=True


def test_psi_properties():
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    assert psi_numeric(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi_numeric(base, base + 1.0) > 0.5
    # A point mass (most txn_count_1h values are 0) must not break the binning.
    assert psi_numeric(np.zeros(1000), np.zeros(1000)) == pytest.approx(0.0, abs=1e-12)
    # A category never seen in the reference still counts, without an infinite PSI.
    value = psi_categorical(["a"] * 900 + ["b"] * 100, ["a"] * 500 + ["c"] * 500)
    assert 1.0 < value < 20.0


def test_prediction_scores_are_a_feature_when_both_are_given():
    rows = generate(500, seed=3)
    rng = np.random.default_rng(1)
    report = compute_drift(rows, rows, rng.beta(1, 30, 500), rng.beta(3, 10, 500))
    assert report.drifted == [SCORE_FEATURE]
    with pytest.raises(ValueError, match="reference_scores and recent_scores"):
        compute_drift(rows, rows, [0.1] * 500, None)


def test_too_few_rows_and_missing_columns_are_named():
    rows = generate(100, seed=4)
    with pytest.raises(ValueError, match="recent_rows: need at least 50 rows"):
        compute_drift(rows, rows[:10])
    with pytest.raises(KeyError, match="amount"):
        compute_drift(rows, [{k: v for k, v in r.items() if k != "amount"} for r in rows])


def _jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records))
    return str(path)


def test_cli_exit_codes_hook_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METRICS_PORT", "0")
    ref = _jsonl(tmp_path / "ref.jsonl", generate(1000, seed=5))
    same = _jsonl(tmp_path / "same.jsonl", generate(1000, seed=6))
    drifted = _jsonl(tmp_path / "drift.jsonl", generate(1000, seed=6, drift=True))
    assert main(["--reference", ref, "--recent", same]) == 0
    marker = tmp_path / "hook-ran.json"
    hook = f"{sys.executable} -c \"import os; open('{marker}', 'w').write(os.environ['DRIFT_REPORT'])\""
    assert main(["--reference", ref, "--recent", drifted, "--on-drift-command", hook]) == 3
    assert "amount" in json.loads(marker.read_text())["drifted"]
    assert main(["--reference", ref, "--recent", drifted, "--on-drift-command", "false"]) == 1
    assert main(["--reference", ref, "--recent", str(tmp_path / "missing.jsonl")]) == 2
    assert "--recent: " in capsys.readouterr().err

    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    assert 'drift_psi{feature="amount"}' in text
    assert "drift_detected 1.0" in text and "drift_last_run_timestamp_seconds" in text


@pytest.mark.services
def test_cli_splits_the_curated_lake_at_a_cutoff_and_exits_3_on_drift(apply_env):
    curated = lake.parse_s3_uri(apply_env["LAKE_CURATED_URI"], prefix=True)
    from datetime import datetime, timezone

    before = generate(800, seed=7, start=datetime(2026, 1, 1, tzinfo=timezone.utc))
    after = generate(800, seed=8, drift=True, start=datetime(2026, 1, 2, tzinfo=timezone.utc))
    for name, rows in (("a", before), ("b", after)):
        lake.put_bytes(curated.join(f"part-{name}.parquet"), lake.table_to_parquet_bytes(records_to_table(rows)))
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "drift", "--cutoff", "2026-01-02T00:00:00Z"],
        env={**apply_env, "METRICS_PORT": str(port)}, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reference_rows"] == 800 and report["recent_rows"] == 800 and "amount" in report["drifted"]
