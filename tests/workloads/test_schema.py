"""The transaction schema: validation messages name the field; encoding is shaped, typed and fast."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from common.schema import (
    ARROW_SCHEMA,
    FEATURE_FIELDS,
    FEATURE_NAMES,
    LABEL,
    MERCHANT_CATEGORIES,
    encode_features,
    records_to_table,
    validate_record,
)
from datagen import generate

GOOD = generate(1, seed=5)[0]


def _problems(**changes):
    record = {**GOOD, **changes}
    return validate_record(record, require_label=True, require_ids=True)


def test_generated_record_is_valid_and_feature_fields_exclude_ids_and_label():
    assert _problems() == []
    assert set(FEATURE_FIELDS).isdisjoint({"transaction_id", "event_time", "card_id", "merchant_id", LABEL})
    assert len(MERCHANT_CATEGORIES) == 10


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount", -3, "amount: must be a number > 0 and <= 50000, got -3"),
        ("amount", 0, "amount: must be a number > 0 and <= 50000, got 0"),
        ("amount", 50000.01, "amount: must be a number > 0 and <= 50000, got 50000.01"),
        ("amount", True, "amount: must be a number > 0 and <= 50000, got True"),
        ("amount", float("nan"), "amount: must be a number > 0 and <= 50000, got nan"),
        ("amount", "12", "amount: must be a number > 0 and <= 50000, got '12'"),
        ("distance_from_home_km", math.inf, "distance_from_home_km: must be a number >= 0 and <= 20000, got inf"),
        ("seconds_since_last_txn", 31_536_001, "seconds_since_last_txn: must be a number >= 0 and <= 31536000"),
        ("txn_count_1h", 2.5, "txn_count_1h: must be an integer >= 0 and <= 1000, got 2.5"),
        ("txn_count_1h", 1001, "txn_count_1h: must be an integer >= 0 and <= 1000, got 1001"),
        ("channel", "web", "channel: must be one of atm, online, pos, got 'web'"),
        ("merchant_category", "casino", "merchant_category: must be one of cash_advance, electronics"),
        ("country", "usa", "country: must be 2 upper-case letters"),
        ("card_country", "us", "card_country: must be 2 upper-case letters"),
        ("transaction_id", "", "transaction_id: must be a non-empty string of at most 64 characters"),
        ("transaction_id", "x" * 65, "transaction_id: must be a non-empty string of at most 64 characters"),
        ("event_time", "2026-01-01T00:00:00", "event_time: must include a timezone offset"),
        ("event_time", "yesterday", "event_time: must be an ISO-8601 string with a timezone"),
        ("is_fraud", 2, "is_fraud: must be 0 or 1, got 2"),
        ("is_fraud", True, "is_fraud: must be 0 or 1, got True"),
    ],
)
def test_each_bad_value_is_reported_naming_its_field(field, value, message):
    problems = _problems(**{field: value})
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_missing_fields_and_what_requests_may_omit():
    request = {k: GOOD[k] for k in FEATURE_FIELDS}
    assert validate_record(request, require_label=False, require_ids=False) == []
    assert validate_record(request, require_label=True, require_ids=True) == [
        "transaction_id: missing", "event_time: missing", "card_id: missing", "merchant_id: missing", "is_fraud: missing"
    ]
    del request["country"]
    assert validate_record(request, require_label=False, require_ids=False) == ["country: missing"]
    assert validate_record([1, 2], require_label=False, require_ids=False) == ["record: must be a JSON object, got list"]


def test_unknown_fields_are_ignored_for_forward_compatibility():
    assert _problems(new_field_from_a_newer_producer=1) == []


def test_all_problems_are_reported_together():
    assert len(_problems(amount=-1, channel="web", country=None)) == 3


def test_encode_features_shape_values_and_dataframe_equivalence():
    rows = generate(200, seed=6)
    x = encode_features(rows)
    assert x.shape == (200, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert np.isfinite(x).all()
    cat = [FEATURE_NAMES.index(f"merchant_category={c}") for c in MERCHANT_CATEGORIES]
    assert (x[:, cat].sum(axis=1) == 1).all()
    first = rows[0]
    assert x[0, FEATURE_NAMES.index("log_amount")] == pytest.approx(math.log1p(first["amount"]), rel=1e-6)
    assert x[0, FEATURE_NAMES.index(f"channel={first['channel']}")] == 1
    assert x[0, FEATURE_NAMES.index("is_foreign")] == float(first["country"] != first["card_country"])
    np.testing.assert_array_equal(encode_features(pd.DataFrame(rows)), x)
    assert encode_features([]).shape == (0, len(FEATURE_NAMES))


def test_encode_features_is_fast_enough_for_the_inference_hot_path():
    rows = generate(64, seed=7)
    encode_features(rows)
    start = time.perf_counter()
    for _ in range(200):
        encode_features(rows)
    assert (time.perf_counter() - start) / 200 < 0.001


def test_encode_features_names_a_missing_field():
    row = {k: GOOD[k] for k in FEATURE_FIELDS if k != "amount"}
    with pytest.raises(KeyError, match="amount"):
        encode_features([row])


def test_records_to_table_matches_the_lake_schema():
    table = records_to_table(generate(10, seed=8) + [{**GOOD, "txn_count_1h": 3.0, "extra": "dropped"}])
    assert table.schema == ARROW_SCHEMA and table.num_rows == 11
    assert table.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")


@pytest.mark.parametrize("field, value, message", [
    ("amount", 10 ** 400, "amount: must be a number > 0 and <= 50000, got an integer of 401 digits"),
    ("txn_count_1h", -(10 ** 30), "txn_count_1h: must be an integer >= 0 and <= 1000, got an integer of 31 digits"),
    ("event_time", "0001-01-01T00:00:00+01:00", "event_time: out of range, got '0001-01-01T00:00:00+01:00'"),
    ("event_time", "9999-12-31T23:59:59-01:00", "event_time: out of range, got '9999-12-31T23:59:59-01:00'"),
    ("card_id", "\ud800", "card_id: must be valid Unicode text (no lone surrogates), got '\\ud800'"),
])
def test_hostile_values_are_problems_not_exceptions(field, value, message):
    assert _problems(**{field: value}) == [message]


def test_ingestion_sends_hostile_records_to_the_dead_letter_topic_instead_of_crashing():
    from ingestion.batch import decode
    for value in (b'{"amount": ' + b"1" * 5000 + b"}", b"[" * 200000,
                  b'{"transaction_id": "\\ud800", "event_time": "2026-01-01T00:00:00+00:00"}'):
        item = decode(0, None, value, None)
        assert item.error and item.record is None
