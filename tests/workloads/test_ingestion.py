"""Ingestion: pure batch rules, then the real consumer as a subprocess against Kafka (tansu) and S3 (moto)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from common import lake
from common.env import ConfigError
from common.lake import parse_s3_uri
from datagen import generate
from datagen.__main__ import build, produce
from datagen.generator import make_bad_records
from ingestion import batch, state
from ingestion.config import IngestConfig
from local_services import free_port

from .kafka_helpers import committed_total, consume_all

# ------------------------------------------------------------------------------------------ pure rules


def test_decode_reports_each_kind_of_bad_value():
    bad = dict(make_bad_records(6, seed=1))
    for value, word in bad.items():
        item = batch.decode(5, b"k", value, None)
        assert item.record is None and word in item.error, (value, item.error)
    assert "tombstone" in batch.decode(1, None, None, None).error


def test_decode_accepts_a_generated_record_and_parses_event_time():
    record = generate(1, seed=3)[0]
    item = batch.decode(7, b"k", json.dumps(record).encode(), 1_700_000_000_000)
    assert item.error is None and item.record == record
    assert item.event_time.tzinfo is not None


def test_file_keys_depend_only_on_offsets_and_event_hour():
    items = [batch.decode(i, None, json.dumps(r).encode(), None) for i, r in enumerate(generate(300, seed=4))]
    groups = batch.group_by_hour(items)
    assert len(groups) >= 2  # 300 records over 6 hours span several hour partitions
    assert all(k.startswith("date=2026-01-01/hour=") for k in groups)
    assert sum(len(v) for v in groups.values()) == 300
    assert batch.file_name("tx", 2, 100, 199) == "tx-p2-100-199.parquet"
    # Same input, same grouping: a replay of the same offsets produces the same keys.
    assert list(batch.group_by_hour(items)) == list(groups)


def test_orphans_only_when_resuming_inside_the_marked_batch():
    marker = state.Marker(100, 199, ("s3://b/raw/x.parquet", "s3://b/cur/x.parquet"))
    assert state.orphans(None, 100) == ()
    assert state.orphans(marker, 200) == ()  # committed: keep
    assert state.orphans(marker, 100) == marker.keys  # not committed: remove before re-reading
    assert state.orphans(marker, 150) == marker.keys
    assert state.Marker.from_json(marker.to_json()) == marker


def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        IngestConfig.from_env({"LAKE_RAW_URI": "bucket/raw", "INGEST_BATCH_RECORDS": "many"})
    text = str(info.value)
    assert "LAKE_RAW_URI: must look like s3://" in text
    assert "LAKE_CURATED_URI is not set" in text
    assert "INGEST_BATCH_RECORDS must be an integer" in text


# ------------------------------------------------------------------------------------------ real services


def _lake_ids(uri: str) -> list[str]:
    table = lake.read_parquet_prefix(uri, columns=["transaction_id"])
    return [] if table is None else table.column("transaction_id").to_pylist()


def _start(env: dict, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestion"],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    output = ""
    if proc is not None and proc.poll() is None:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")[-3000:]
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{output}")


@pytest.mark.services
def test_crashes_and_restarts_leave_every_valid_record_once_and_dead_letter_every_bad_one(workload_env, monkeypatch):
    for key, value in workload_env.items():
        monkeypatch.setenv(key, value)
    env = {**workload_env, "INGEST_SESSION_TIMEOUT_MS": "2000", "INGEST_BATCH_SECONDS": "1"}
    n_valid = 1500
    pairs = build(n_valid, seed=11, drift=False, bad_fraction=0.02)
    expected_ids = sorted(r["transaction_id"] for r in generate(n_valid, seed=11))
    bad_words = dict(make_bad_records(len(pairs) - n_valid, seed=11))
    produce(pairs, env["KAFKA_TOPIC_TRANSACTIONS"], {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    curated, raw = env["LAKE_CURATED_URI"], env["LAKE_RAW_URI"]

    # Run 1 kills itself (SIGKILL) mid-batch: its marker and some data files are written, nothing committed
    # for that batch.
    first = _start(env, INGEST_BATCH_RECORDS="70", INGEST_FAULT_KILL_AFTER_PUTS="9")
    assert first.wait(60) == -signal.SIGKILL, first.communicate()[0].decode()[-3000:]
    assert _lake_ids(curated), "run 1 should have written files before dying"

    # Run 2 cuts batches at different offsets (110 records) and is killed from outside once it has written more.
    written_before = len(_lake_ids(curated))
    second = _start(env, INGEST_BATCH_RECORDS="110")
    _wait_for(lambda: len(_lake_ids(curated)) > written_before + 100, 60, "run 2 to write files", second)
    second.send_signal(signal.SIGKILL)
    second_log = second.communicate(timeout=10)[0].decode(errors="replace")
    # Run 2 found run 1's uncommitted batch and removed its files before re-reading those offsets.
    assert "inside uncommitted batch" in second_log, second_log[-3000:]

    # Run 3 finishes; SIGTERM makes it write and commit everything it holds, so nothing can arrive later.
    third = _start(env, INGEST_BATCH_RECORDS="90")
    try:
        _wait_for(lambda: len(_lake_ids(curated)) >= n_valid, 60, "all records in the curated lake", third)
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(20) == 0
    assert sorted(_lake_ids(curated)) == expected_ids
    assert sorted(_lake_ids(raw)) == expected_ids

    dead = consume_all(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC_DEAD_LETTER"], len(pairs) - n_valid)
    by_source = {}
    for msg in dead:
        headers = {k: v.decode(errors="replace") for k, v in msg.headers()}
        assert headers["source_topic"] == env["KAFKA_TOPIC_TRANSACTIONS"]
        assert bad_words[msg.value()] in headers["error"], headers["error"]
        by_source[(headers["source_partition"], headers["source_offset"])] = msg.value()
    # At-least-once: replays may repeat a dead letter, but every bad record is there.
    assert len(by_source) == len(pairs) - n_valid
    # Raw keeps the record exactly as produced.
    table = lake.read_parquet_prefix(raw, columns=["transaction_id", "value"])
    sample = dict(zip(table.column("transaction_id").to_pylist(), table.column("value").to_pylist()))
    produced = {json.loads(v)["transaction_id"]: v.decode() for k, v in pairs if k != b"bad"}
    assert all(sample[t] == produced[t] for t in expected_ids[:50])


@pytest.mark.services
def test_sigterm_writes_the_open_batch_commits_and_exits_zero(workload_env, monkeypatch):
    for key, value in workload_env.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    env = {**workload_env, "INGEST_SESSION_TIMEOUT_MS": "2000", "METRICS_PORT": str(port),
           # Neither limit is reached: only the shutdown path writes this batch.
           "INGEST_BATCH_RECORDS": "100000", "INGEST_BATCH_SECONDS": "600"}
    records = generate(200, seed=21)
    produce([(r["card_id"].encode(), json.dumps(r).encode()) for r in records], env["KAFKA_TOPIC_TRANSACTIONS"],
            {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    proc = _start(env)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    _wait_for(lambda: "ingestion_consumer_lag{" in scrape(), 30, "the consumer to receive records", proc)
    time.sleep(1.5)  # 200 small records arrive in one fetch; give it time to buffer them all
    text = scrape()
    for name in ("ingestion_records_total", "ingestion_files_written_total",
                 "ingestion_batch_duration_seconds_bucket", "ingestion_consumer_lag"):
        assert name in text, name
    assert not _lake_ids(env["LAKE_CURATED_URI"])  # nothing flushed before the signal

    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert sorted(_lake_ids(env["LAKE_CURATED_URI"])) == sorted(r["transaction_id"] for r in records)
    assert committed_total(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_CONSUMER_GROUP"],
                           env["KAFKA_TOPIC_TRANSACTIONS"]) == 200


@pytest.mark.services
def test_naive_baseline_writes_one_file_pair_per_record(workload_env, monkeypatch):
    for key, value in workload_env.items():
        monkeypatch.setenv(key, value)
    records = generate(30, seed=31)
    pairs = [(r["card_id"].encode(), json.dumps(r).encode()) for r in records] + [(b"bad", b"{nope")]
    produce(pairs, workload_env["KAFKA_TOPIC_TRANSACTIONS"], {"bootstrap.servers": workload_env["KAFKA_BOOTSTRAP_SERVERS"]})
    proc = subprocess.Popen([sys.executable, "-m", "ingestion", "--naive"],
                            env={**workload_env, "INGEST_SESSION_TIMEOUT_MS": "2000"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: len(_lake_ids(workload_env["LAKE_CURATED_URI"])) >= 30, 30, "30 records", proc)
        _wait_for(lambda: committed_total(workload_env["KAFKA_BOOTSTRAP_SERVERS"], workload_env["KAFKA_CONSUMER_GROUP"],
                                          workload_env["KAFKA_TOPIC_TRANSACTIONS"]) == 31, 15, "31 commits", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    keys = list(lake.list_keys(parse_s3_uri(workload_env["LAKE_CURATED_URI"], prefix=True), ".parquet"))
    assert len(keys) == 30
    assert sorted(_lake_ids(workload_env["LAKE_CURATED_URI"])) == sorted(r["transaction_id"] for r in records)
    dead = consume_all(workload_env["KAFKA_BOOTSTRAP_SERVERS"], workload_env["KAFKA_TOPIC_DEAD_LETTER"], 1)
    assert "not valid json" in dict(dead[0].headers())["error"].decode()
