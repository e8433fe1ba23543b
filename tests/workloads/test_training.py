"""The training job against real S3 (moto) and a real MLflow server.

The real MLflow server answers one request at a time (~0.1 s each) and a run makes ~50, so full runs are few
and launched together by one module fixture, in two phases of parallel subprocesses:
  phase 1: A (model M), W (a deliberately worse model, model N), B (SIGKILLed mid-training, model N)
  phase 2: B restarted (resumes; A's exact configuration, so it beats W on N), T (torchrun with 2 processes,
           deliberately worse, model M)
so: B == A bit for bit (kill -9 + resume), N's champion moves W -> B, M's stays A and T becomes challenger.
Determinism without a kill is checked in-process on the training loop itself.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ._train_helpers import WORKLOADS, final_weights, put_table, s3_env, training_env, write_curated

WORSE = {"EPOCHS": "1", "LEARNING_RATE": "0.00001", "HIDDEN_UNITS": "2"}


# ---------------------------------------------------------------------------------------------- metrics


def test_auc_known_values():
    from training.evaluation import pr_auc, roc_auc

    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # Thresholds 0.8 (P=1, R=.5), 0.4 (P=.5), 0.35 (P=2/3, R=1): AP = .5*1 + .5*2/3.
    assert pr_auc(labels, scores) == pytest.approx(0.5 + 1 / 3)
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0 and roc_auc([1, 0], [0.2, 0.9]) == 0.0
    assert pr_auc([1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Ties count half for ROC and form one threshold for PR.
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert pr_auc([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_matches_the_rank_statistic_on_random_data():
    from training.evaluation import pr_auc, roc_auc

    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.05).astype(int)
    scores = np.round(rng.random(2000) + labels * 0.3, 2)  # rounded: plenty of ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    mann_whitney = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_auc(labels, scores) == pytest.approx(mann_whitney, abs=1e-12)
    assert labels.mean() < pr_auc(labels, scores) < 1


def test_auc_rejects_bad_input():
    from training.evaluation import pr_auc, roc_auc

    with pytest.raises(ValueError, match="positive"):
        pr_auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        roc_auc([0, 1], [0.1])


def test_threshold_maximises_f1():
    from training.evaluation import choose_threshold, precision_recall_at

    choice = choose_threshold([0, 0, 1, 1, 0], [0.1, 0.2, 0.7, 0.9, 0.8])
    assert choice.threshold == 0.7 and choice.recall == 1.0 and choice.precision == pytest.approx(2 / 3)
    assert precision_recall_at([0, 0, 1, 1, 0], [0.1, 0.2, 0.7, 0.9, 0.8], 0.85) == (1.0, 0.5)


# ---------------------------------------------------------------------------------------------- config, split


def test_config_lists_every_bad_variable():
    from common.env import ConfigError
    from training.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config({"LAKE_CURATED_URI": "/data", "EPOCHS": "zero", "BATCH_SIZE": "-1", "LEARNING_RATE": "fast",
                     "HIDDEN_UNITS": "64,x", "MLFLOW_TRACKING_URI": "mlflow:5000"})
    message = str(info.value)
    for name in ("LAKE_CURATED_URI", "CHECKPOINT_URI", "EPOCHS", "BATCH_SIZE", "LEARNING_RATE", "HIDDEN_UNITS",
                 "MLFLOW_TRACKING_URI"):
        assert name in message, name


def test_split_depends_only_on_the_transaction_id():
    from training.data import split_of

    ids = [f"tx-{i}" for i in range(20000)]
    first = [split_of(i, 0.7, 0.15) for i in ids]
    assert first == [split_of(i, 0.7, 0.15) for i in reversed(ids)][::-1]
    shares = {s: first.count(s) / len(ids) for s in ("train", "validation", "test")}
    assert shares["train"] == pytest.approx(0.7, abs=0.02) and shares["test"] == pytest.approx(0.15, abs=0.02)


def test_metric_names_follow_the_contract():
    from prometheus_client import generate_latest

    importlib.import_module("training.metrics")  # registers them

    text = generate_latest().decode()
    for name in ("training_loss", "training_samples_total", "training_epoch", "training_validation_pr_auc"):
        assert f"# TYPE {name} " in text, name


# ---------------------------------------------------------------------------------------------- data quality

def _bad_lake(services, n_good: int = 2000):
    import pyarrow as pa

    from common.schema import ARROW_SCHEMA, records_to_table
    from datagen.generator import generate

    s3_env(services)
    env = training_env(services)
    good = generate(n_good, 5)
    write_curated(env["LAKE_CURATED_URI"], good)
    nullable = pa.schema([f.with_nullable(True) for f in ARROW_SCHEMA])
    bad = [dict(r) for r in generate(6, 99)]
    bad[0]["amount"] = -5.0
    bad[1]["amount"] = 60000.0
    bad[2]["is_fraud"] = 2
    bad[3]["channel"] = "fax"
    bad[4]["merchant_category"] = None
    bad[5] = dict(good[0])  # a duplicate transaction_id
    rows = records_to_table([{**r, "is_fraud": 0, "channel": "pos", "merchant_category": "fuel"} for r in bad]).to_pylist()
    for row, src in zip(rows, bad):
        row.update(is_fraud=src["is_fraud"], channel=src["channel"], merchant_category=src["merchant_category"])
    put_table(env["LAKE_CURATED_URI"], "bad.parquet", pa.Table.from_pylist(rows, schema=nullable))
    # A file written by an older producer without card_id: its rows get nulls there.
    old = records_to_table(generate(3, 77)).drop_columns(["card_id"])
    put_table(env["LAKE_CURATED_URI"], "old.parquet", old)
    return env


@pytest.mark.services
def test_quality_report_counts_rejections_by_reason(services):
    from training.data import prepare, snapshot

    env = _bad_lake(services)
    uri = env["LAKE_CURATED_URI"]
    prepared = prepare(uri, snapshot(uri), train_fraction=0.7, validation_fraction=0.15, min_positives=5)
    report = prepared.report.to_dict()
    assert report["total_rows"] == 2009 and report["accepted_rows"] == 2000 and report["rejected_rows"] == 9
    reasons = report["rejected_by_reason"]
    assert reasons["amount: must be a number > 0 and <= 50000"] == 2
    assert reasons["is_fraud: must be 0 or 1"] == 1
    assert reasons["merchant_category: null"] == 1
    assert reasons["card_id: null"] == 3
    assert reasons["transaction_id: duplicate"] == 1
    assert any(r.startswith("channel: must be one of") for r in reasons)
    assert report["rejected_by_field"]["amount"] == 2
    assert sum(len(s.labels) for s in prepared.splits.values()) == 2000


@pytest.mark.services
def test_too_few_positives_and_nothing_usable_fail_clearly(services, monkeypatch, capsys):
    import mlflow
    import pyarrow as pa

    from common.schema import records_to_table
    from datagen.generator import generate
    from training.data import DataQualityError, prepare, snapshot

    s3_env(services)
    env = training_env(services)
    no_fraud = [r for r in generate(1500, 3) if r["is_fraud"] == 0]
    write_curated(env["LAKE_CURATED_URI"], no_fraud)
    uri = env["LAKE_CURATED_URI"]
    with pytest.raises(DataQualityError, match="train split has 0 fraud rows, MIN_POSITIVES is 10"):
        prepare(uri, snapshot(uri), train_fraction=0.7, validation_fraction=0.15, min_positives=10)

    # Every row bad: the job exits 1 naming why, and the MLflow run (FAILED) still has the report.
    env = training_env(services)
    rows = records_to_table(generate(50, 4)).to_pylist()
    for row in rows:
        row["amount"] = 0.0
    put_table(env["LAKE_CURATED_URI"], "zero.parquet", pa.Table.from_pylist(rows))
    from ._infer_helpers import free_port

    metrics_port = free_port()
    for key, value in {**env, "METRICS_PORT": str(metrics_port)}.items():
        monkeypatch.setenv(key, value)
    from training.main import main

    assert main() == 1
    # The job's exporter (rank 0) serves the contract's names.
    import urllib.request

    scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for name in ("training_loss", "training_samples_total", "training_epoch", "training_validation_pr_auc"):
        assert f"# TYPE {name} " in scraped, name
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=[env["MLFLOW_EXPERIMENT"]], output_format="list")[0]
    assert run.info.status == "FAILED"
    assert run.data.metrics["rows_rejected"] == 50 and run.data.metrics["rows_rejected.amount"] == 50
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data_quality.json")
    assert report["rejected_by_reason"] == {"amount: must be a number > 0 and <= 50000": 50}


# ---------------------------------------------------------------------------------------------- full runs


def _start(env, torchrun: int = 0) -> subprocess.Popen:
    argv = [sys.executable, "-m", "training"]
    if torchrun:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}", "-m", "training"]
    return subprocess.Popen(argv, env=env, cwd=WORKLOADS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _start_and_kill(env, at_line: str) -> tuple[int, str]:
    """Runs training and SIGKILLs it the moment it logs ``at_line``; returns (return code, output)."""
    proc = _start(env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if at_line in line:
            proc.kill()
            break
    proc.stdout.close()
    return proc.wait(30), "".join(lines)


@pytest.fixture(scope="module")
def runs(services):
    from datagen.generator import generate

    s3_env(services)
    base = training_env(services)
    write_curated(base["LAKE_CURATED_URI"], generate(4000, 1), files=3)
    shared = {"LAKE_CURATED_URI": base["LAKE_CURATED_URI"]}
    model_m, model_n = base["MODEL_NAME"], base["MODEL_NAME"] + "-n"
    envs = {
        "A": {**base},
        "W": training_env(services, **shared, **WORSE, MODEL_NAME=model_n),
        "B": training_env(services, **shared, MODEL_NAME=model_n),
        "T": training_env(services, **shared, **WORSE, MODEL_NAME=model_m, SEED="8"),
    }
    out = {}
    t0 = time.monotonic()
    phase1 = {name: _start(envs[name]) for name in ("A", "W")}
    rc_b, out["B-killed"] = _start_and_kill(envs["B"], "checkpoint saved at global step 20 ")
    for name, proc in phase1.items():
        out[name] = _finish(proc)
    phase2 = {"B": _start(envs["B"]), "T": _start(envs["T"], torchrun=2)}
    for name, proc in phase2.items():
        out[name] = _finish(proc)
    print(f"training runs took {time.monotonic() - t0:.1f} s")
    return {"envs": envs, "out": out, "rc_b": rc_b}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.services
def test_same_seed_gives_identical_weights(services):
    """Two complete runs of the training loop (with checkpointing) from the same seed and data."""
    from datagen.generator import generate
    from training.checkpoint import CheckpointStore
    from training.config import load_config
    from training.data import prepare, snapshot
    from training.trainer import Dist, Hooks, train

    s3_env(services)
    env = training_env(services, EPOCHS="2")
    write_curated(env["LAKE_CURATED_URI"], generate(3000, 21))
    uri = env["LAKE_CURATED_URI"]
    weights = []
    for attempt in range(2):
        cfg = load_config({**env, "CHECKPOINT_URI": f"{env['CHECKPOINT_URI']}{attempt}/"})
        data = prepare(uri, snapshot(uri), train_fraction=0.7, validation_fraction=0.15, min_positives=10)
        model = train(cfg, data, CheckpointStore(cfg.checkpoint_uri), Dist(), Hooks(), resume_state=None)
        weights.append(model.state_dict())
    _assert_same_weights(*weights)
    changed = load_config({**env, "SEED": "8", "CHECKPOINT_URI": f"{env['CHECKPOINT_URI']}x/"})
    other = train(changed, data, CheckpointStore(changed.checkpoint_uri), Dist(), Hooks(), resume_state=None)
    assert not torch.equal(other.state_dict()["net.0.weight"], weights[0]["net.0.weight"])


@pytest.mark.services
def test_kill_9_and_restart_equals_an_uninterrupted_run(runs):
    assert runs["rc_b"] == -9, "the first attempt was not killed mid-training"
    assert "registered" not in runs["out"]["B-killed"]
    out = runs["out"]["B"]
    # Killed right after the step-20 checkpoint, or a checkpoint or two later on a busy machine.
    resumed = re.search(r"resuming at epoch \d+, step \d+ of the epoch \(global step (\d+)\)", out)
    assert resumed and 20 <= int(resumed.group(1)) < 132, out[-3000:]
    assert "continuing MLflow run" in out
    _assert_same_weights(final_weights(runs["envs"]["A"]), final_weights(runs["envs"]["B"]))


@pytest.mark.services
def test_checkpoints_keep_the_last_two(runs):
    from training.checkpoint import CheckpointStore

    store = CheckpointStore(runs["envs"]["A"]["CHECKPOINT_URI"])
    assert store.checkpoint_steps() == [120, 132]  # 3 epochs x 44 steps, checkpoint every 20 and at epoch end
    assert store.read_json("latest.json")["global_step"] == 132


@pytest.mark.services
def test_torchrun_with_two_processes_trains_and_registers(runs):
    from mlflow.tracking import MlflowClient

    env, out = runs["envs"]["T"], runs["out"]["T"]
    assert "rank1" in out and "registered" in out
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version(env["MODEL_NAME"], "2")
    run = client.get_run(version.run_id)
    assert run.data.params["world_size"] == "2" and run.info.status == "FINISHED"


@pytest.mark.services
def test_champion_moves_only_for_a_better_model(runs):
    from mlflow.tracking import MlflowClient

    envs = runs["envs"]
    client = MlflowClient(envs["A"]["MLFLOW_TRACKING_URI"])
    # Model N: the worse W came first (champion by default), then B beat it on today's test split.
    n = envs["B"]["MODEL_NAME"]
    assert client.get_model_version_by_alias(n, "champion").version == "2"
    v2 = client.get_model_version(n, "2")
    run = client.get_run(v2.run_id)
    assert v2.tags["alias_decision"] == "champion" and run.data.tags["compared_with_version"] == "1"
    assert float(v2.tags["test_pr_auc"]) > float(run.data.tags["champion_test_pr_auc"])
    # Model M: A is champion; the worse T only becomes challenger.
    m = envs["A"]["MODEL_NAME"]
    assert client.get_model_version_by_alias(m, "champion").version == "1"
    assert client.get_model_version_by_alias(m, "challenger").version == "2"
    t = client.get_model_version(m, "2")
    assert t.tags["alias_decision"] == "challenger"
    assert float(t.tags["test_pr_auc"]) <= float(client.get_run(t.run_id).data.tags["champion_test_pr_auc"])


@pytest.mark.services
def test_registered_model_loads_as_pyfunc_with_signature(runs):
    import mlflow
    import pandas as pd

    from datagen.generator import generate

    env = runs["envs"]["A"]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model(f"models:/{env['MODEL_NAME']}@champion")
    assert model.metadata.signature is not None
    rows = [{k: v for k, v in r.items() if k not in ("is_fraud",)} for r in generate(5, 2)]
    predictions = model.predict(pd.DataFrame(rows))
    assert list(predictions.columns) == ["score", "is_fraud"] and len(predictions) == 5
    assert predictions["score"].between(0, 1).all()


@pytest.mark.services
def test_mlflow_models_serve_serves_the_champion(runs):
    """`mlflow models serve` is the benchmark baseline: it must load the same registered model."""
    import os
    import signal
    import urllib.request
    from pathlib import Path

    from datagen.generator import generate

    from ._infer_helpers import free_port

    env = dict(runs["envs"]["A"])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # it execs `uvicorn` from PATH
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{env['MODEL_NAME']}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        rows = [{k: v for k, v in r.items() if k != "is_fraud"} for r in generate(3, 4)]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": rows}).encode(),
            headers={"Content-Type": "application/json"},
        )
        body = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert [sorted(p) for p in body["predictions"]] == [["is_fraud", "score"]] * 3
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.services
def test_unevaluable_champion_is_never_replaced_blindly(services, monkeypatch):
    """A champion whose artifacts cannot be loaded (after retries) keeps the alias; the new version waits."""
    import uuid

    from mlflow.tracking import MlflowClient

    from training import registry
    from training.data import Split

    s3_env(services)
    client = MlflowClient(services.mlflow_uri)
    name = f"unevaluable-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    old = client.create_model_version(name, source=f"s3://{services.buckets['artifacts']}/nowhere/old").version
    new = client.create_model_version(name, source=f"s3://{services.buckets['artifacts']}/nowhere/new").version
    client.set_registered_model_alias(name, registry.CHAMPION, old)
    test = Split(features=np.zeros((4, 1), dtype=np.float32), labels=np.array([0, 1, 0, 1], dtype=np.float32),
                 transaction_ids=["a", "b", "c", "d"])
    original = registry._champion_pr_auc
    monkeypatch.setattr(registry, "_champion_pr_auc", lambda *a, **k: original(*a, **{**k, "attempts": 1}))
    decision = registry.choose_alias(client, name, new, 0.99, test)
    assert decision.alias == registry.CHALLENGER
    assert client.get_model_version_by_alias(name, registry.CHAMPION).version == old
    assert client.get_model_version_by_alias(name, registry.CHALLENGER).version == new
    assert registry.version_of_run(client, name, "no-such-run") is None
