"""Synthetic data: deterministic, valid, ~1.5 % fraud, learnable but not trivially, drift that PSI sees."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from common.schema import encode_features, parse_event_time, validate_record
from datagen import DEFAULT_START, generate
from datagen.__main__ import build, main


def test_same_seed_same_records_different_seed_different_records():
    assert generate(500, seed=1) == generate(500, seed=1)
    assert generate(500, seed=1) != generate(500, seed=2)
    assert {r["transaction_id"] for r in generate(500, 1)}.isdisjoint(r["transaction_id"] for r in generate(500, 1, drift=True))


def test_records_are_valid_unique_and_time_ordered_over_several_hours():
    records = generate(3000, seed=2)
    assert all(validate_record(r, require_label=True, require_ids=True) == [] for r in records)
    assert len({r["transaction_id"] for r in records}) == 3000
    times = [parse_event_time(r["event_time"]) for r in records]
    assert times == sorted(times) and times[0] >= DEFAULT_START
    assert len({t.strftime("%Y-%m-%d %H") for t in times}) >= 6
    start = datetime(2027, 5, 1, tzinfo=timezone.utc)
    assert parse_event_time(generate(5, 2, start=start)[0]["event_time"]) >= start


def test_fraud_rate_is_about_one_and_a_half_percent():
    rate = np.mean([r["is_fraud"] for r in generate(40000, seed=3)])
    assert 0.011 < rate < 0.019


def test_fraud_is_learnable_but_noisy():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train, test = generate(30000, seed=4), generate(20000, seed=5)
    model = LogisticRegression(max_iter=1000).fit(encode_features(train), [r["is_fraud"] for r in train])
    auc = roc_auc_score([r["is_fraud"] for r in test], model.predict_proba(encode_features(test))[:, 1])
    assert 0.82 < auc < 0.97, auc


def test_drift_moves_amounts_and_channels():
    normal, drifted = generate(5000, seed=6), generate(5000, seed=6, drift=True)
    ratio = np.median([r["amount"] for r in drifted]) / np.median([r["amount"] for r in normal])
    assert 2.0 < ratio < 3.0
    online = lambda rows: np.mean([r["channel"] == "online" for r in rows])  # noqa: E731
    assert online(drifted) > online(normal) + 0.2


def test_bad_fraction_mixes_in_malformed_values():
    pairs = build(1000, seed=7, drift=False, bad_fraction=0.03)
    assert len(pairs) == 1030
    bad = 0
    for _key, value in pairs:
        try:
            record = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            bad += 1
            continue
        bad += bool(validate_record(record, require_label=True, require_ids=True))
    assert bad == 30


def test_cli_writes_jsonl(tmp_path):
    out = tmp_path / "tx.jsonl"
    assert main(["--count", "50", "--seed", "9", "--jsonl", str(out)]) == 0
    lines = out.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == generate(50, seed=9)


def test_cli_rejects_a_bad_fraction_above_one(capsys):
    with pytest.raises(SystemExit):
        main(["--count", "5", "--bad-fraction", "2", "--jsonl", "x"])
    assert "--bad-fraction" in capsys.readouterr().err


@pytest.mark.services
def test_cli_produces_to_kafka_keyed_by_card(apply_env):
    from .kafka_helpers import consume_all

    assert main(["--count", "40", "--seed", "10", "--kafka"]) == 0
    messages = consume_all(apply_env["KAFKA_BOOTSTRAP_SERVERS"], apply_env["KAFKA_TOPIC_TRANSACTIONS"], 40)
    assert len(messages) == 40
    assert all(json.loads(m.value())["card_id"].encode() == m.key() for m in messages)
