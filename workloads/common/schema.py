"""The transaction record: validation, model feature encoding and the lake's Arrow schema.

One record is a JSON object in Kafka and one row in the lake's Parquet files. Inference requests carry the
same fields minus the identifiers and the label.

Unknown fields are ignored, never reported: producers may add a field before every consumer knows it
(forward-compatible schema evolution), and the curated lake keeps only the columns of ``ARROW_SCHEMA``
while the raw lake keeps each record's original JSON, so nothing a producer sent is lost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurants",
    "fuel",
    "travel",
    "electronics",
    "online_services",
    "jewelry",
    "cash_advance",
    "entertainment",
    "pharmacy",
)
CHANNELS: tuple[str, ...] = ("atm", "online", "pos")

ID_FIELDS: tuple[str, ...] = ("transaction_id", "event_time", "card_id", "merchant_id")
FEATURE_FIELDS: tuple[str, ...] = (
    "merchant_category",
    "channel",
    "amount",
    "country",
    "card_country",
    "distance_from_home_km",
    "seconds_since_last_txn",
    "txn_count_1h",
)
LABEL = "is_fraud"
ALL_FIELDS: tuple[str, ...] = ID_FIELDS + FEATURE_FIELDS + (LABEL,)

# Numeric features whose PSI/encoding treat them as continuous; the rest of FEATURE_FIELDS are categorical.
NUMERIC_FEATURES: tuple[str, ...] = ("amount", "distance_from_home_km", "seconds_since_last_txn", "txn_count_1h")
CATEGORICAL_FEATURES: tuple[str, ...] = ("merchant_category", "channel", "country", "card_country")

MAX_ID_LENGTH = 64
_COUNTRY = re.compile(r"[A-Z]{2}")

# (lower bound, lower inclusive, upper bound, integer only)
NUMERIC_RULES: dict[str, tuple[float, bool, float, bool]] = {
    "amount": (0.0, False, 50_000.0, False),
    "distance_from_home_km": (0.0, True, 20_000.0, False),
    "seconds_since_last_txn": (0.0, True, 31_536_000.0, False),
    "txn_count_1h": (0.0, True, 1000.0, True),
}

ARROW_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("card_id", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("card_country", pa.string(), nullable=False),
        pa.field("distance_from_home_km", pa.float64(), nullable=False),
        pa.field("seconds_since_last_txn", pa.float64(), nullable=False),
        pa.field("txn_count_1h", pa.int32(), nullable=False),
        pa.field("is_fraud", pa.int8(), nullable=False),
    ]
)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def _check_number(name: str, value: Any) -> str | None:
    low, low_inclusive, high, integer = NUMERIC_RULES[name]
    kind = "an integer" if integer else "a number"
    expected = f"must be {kind} {'>=' if low_inclusive else '>'} {_fmt(low)} and <= {_fmt(high)}"
    # bool is an int subclass: True would silently become 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name}: {expected}, got {_show(value)}"
    # Python ints are unbounded: one with hundreds of digits overflows float arithmetic below.
    if isinstance(value, int) and abs(value) > 1e15:
        return f"{name}: {expected}, got an integer of {len(str(abs(value)))} digits"
    if not math.isfinite(value):
        return f"{name}: {expected}, got {_show(value)}"
    if integer and not float(value).is_integer():
        return f"{name}: {expected}, got {_show(value)}"
    if value < low or (value == low and not low_inclusive) or value > high:
        return f"{name}: {expected}, got {_show(value)}"
    return None


def _check_id(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        return f"{name}: must be a non-empty string of at most {MAX_ID_LENGTH} characters, got {_show(value)}"
    if not _encodable(value):
        return f"{name}: must be valid Unicode text (no lone surrogates), got {_show(value)}"
    return None


def _encodable(text: str) -> bool:
    # JSON allows "\ud800"; such a string cannot be written as UTF-8 to Parquet or Kafka.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_event_time(value: Any) -> datetime:
    """ISO-8601 with an explicit offset, returned in UTC. Raises ValueError naming the field."""
    if not isinstance(value, str):
        raise ValueError(f"event_time: must be an ISO-8601 string with a timezone, got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"event_time: must be an ISO-8601 string with a timezone, got {_show(value)}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"event_time: must include a timezone offset (e.g. +00:00 or Z), got {_show(value)}")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 lies before datetime.min in UTC
        raise ValueError(f"event_time: out of range, got {_show(value)}") from None


def validate_record(record: Any, *, require_label: bool, require_ids: bool) -> list[str]:
    """Every problem with ``record``, one human-readable line each, naming the field. Empty means valid.

    Identifier fields and the label are checked whenever present, and required only when asked:
    inference requests carry neither, lake records carry both.
    """
    if not isinstance(record, Mapping):
        return [f"record: must be a JSON object, got {type(record).__name__}"]
    problems: list[str] = []

    for name in ID_FIELDS:
        if name not in record:
            if require_ids:
                problems.append(f"{name}: missing")
            continue
        value = record[name]
        if name == "event_time":
            try:
                parse_event_time(value)
            except ValueError as exc:
                problems.append(str(exc))
        else:
            problem = _check_id(name, value)
            if problem:
                problems.append(problem)

    for name in FEATURE_FIELDS:
        if name not in record:
            problems.append(f"{name}: missing")
            continue
        value = record[name]
        if name in NUMERIC_RULES:
            problem = _check_number(name, value)
        elif name == "merchant_category":
            problem = (
                None
                if isinstance(value, str) and value in MERCHANT_CATEGORIES
                else f"merchant_category: must be one of {', '.join(sorted(MERCHANT_CATEGORIES))}, got {_show(value)}"
            )
        elif name == "channel":
            problem = (
                None
                if isinstance(value, str) and value in CHANNELS
                else f"channel: must be one of {', '.join(CHANNELS)}, got {_show(value)}"
            )
        else:  # country, card_country
            problem = (
                None
                if isinstance(value, str) and _COUNTRY.fullmatch(value)
                else f"{name}: must be 2 upper-case letters (ISO 3166-1 alpha-2), got {_show(value)}"
            )
        if problem:
            problems.append(problem)

    if LABEL in record:
        value = record[LABEL]
        if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int):
            problems.append(f"{LABEL}: must be 0 or 1, got {_show(value)}")
    elif require_label:
        problems.append(f"{LABEL}: missing")
    return problems


# ---------------------------------------------------------------------------------------------- features

FEATURE_NAMES: list[str] = (
    ["log_amount"]
    + [f"merchant_category={c}" for c in MERCHANT_CATEGORIES]
    + [f"channel={c}" for c in CHANNELS]
    + ["is_foreign", "log_distance_from_home_km", "log_seconds_since_last_txn", "log_txn_count_1h"]
)
_CATEGORY_INDEX = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
_CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
_COL_CATEGORY = 1
_COL_CHANNEL = 1 + len(MERCHANT_CATEGORIES)
_COL_REST = _COL_CHANNEL + len(CHANNELS)


def _columns(rows: Any) -> dict[str, Any]:
    # Column-wise access either way, so the numeric work below is vectorised.
    if hasattr(rows, "columns") and hasattr(rows, "__getitem__") and not isinstance(rows, (list, tuple)):
        missing = [f for f in FEATURE_FIELDS if f not in rows.columns]
        if missing:
            raise KeyError(f"encode_features: missing column(s) {', '.join(missing)}")
        return {f: rows[f].to_numpy() for f in FEATURE_FIELDS}
    try:
        return {f: [r[f] for r in rows] for f in FEATURE_FIELDS}
    except KeyError as exc:
        raise KeyError(f"encode_features: a row is missing field {exc.args[0]!r}") from None


def encode_features(rows: Sequence[Mapping] | Any) -> np.ndarray:
    """Model inputs, shape (n, len(FEATURE_NAMES)), float32. Rows should be validated first.

    Heavy-tailed quantities go through log1p so an MLP sees comparable scales without fitted statistics
    (nothing to ship alongside the model). An unknown category encodes as all zeros rather than failing.
    """
    cols = _columns(rows)
    n = len(cols["amount"])
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    out[:, 0] = np.log1p(np.asarray(cols["amount"], dtype=np.float64))
    rows_idx = np.arange(n)
    cat = np.fromiter((_CATEGORY_INDEX.get(c, -1) for c in cols["merchant_category"]), dtype=np.int64, count=n)
    known = cat >= 0
    out[rows_idx[known], _COL_CATEGORY + cat[known]] = 1.0
    ch = np.fromiter((_CHANNEL_INDEX.get(c, -1) for c in cols["channel"]), dtype=np.int64, count=n)
    known = ch >= 0
    out[rows_idx[known], _COL_CHANNEL + ch[known]] = 1.0
    out[:, _COL_REST] = np.asarray(cols["country"], dtype=object) != np.asarray(cols["card_country"], dtype=object)
    out[:, _COL_REST + 1] = np.log1p(np.asarray(cols["distance_from_home_km"], dtype=np.float64))
    out[:, _COL_REST + 2] = np.log1p(np.asarray(cols["seconds_since_last_txn"], dtype=np.float64))
    out[:, _COL_REST + 3] = np.log1p(np.asarray(cols["txn_count_1h"], dtype=np.float64))
    return out


# ---------------------------------------------------------------------------------------------- lake rows


def records_to_table(records: Sequence[Mapping]) -> pa.Table:
    """Validated records (with ids and label) as a table of exactly ARROW_SCHEMA; extra fields dropped."""
    columns: dict[str, list] = {f.name: [] for f in ARROW_SCHEMA}
    for record in records:
        for name, values in columns.items():
            values.append(_COERCE.get(name, _identity)(record[name]))
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


def _identity(value: Any) -> Any:
    return value


# JSON gives 3.0 for an integral float and 3 for an int; Arrow wants the column's exact Python type.
_COERCE = {
    "event_time": parse_event_time,
    "amount": float,
    "distance_from_home_km": float,
    "seconds_since_last_txn": float,
    "txn_count_1h": int,
    "is_fraud": int,
}
