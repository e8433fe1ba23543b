"""A whole batch of Kafka values to lake tables in a few C-level passes, with exactly the per-record path's result.

The per-record path (``batch.decode``, ``batch.raw_table``, ``batch.curated_table``) defines what is valid and what
the lake holds. This module is a faster route to the same tables. It parses every value of the batch at once with
Arrow's JSON reader (C++, outside the GIL, no Python object per field), then proves rows valid with vectorised
checks that accept a strict subset of what ``validate_record`` accepts. A row it cannot prove goes through
``batch.decode``, which decides: a bad record, or a valid one in a form the checks leave alone (an event time without
seconds, a non-ASCII country, a value longer than ``MAX_BULK_VALUE_BYTES``...). Where Arrow rejects a block because
of one bad value, the block is split in halves until the bad values are isolated, so a few bad records cost a few
extra parses rather than a per-record batch. ``tests/workloads/test_ingestion_bulk.py`` holds both paths to
byte-identical Parquet over valid, mutated and malformed records.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from common.schema import ARROW_SCHEMA, CHANNELS, ID_FIELDS, MAX_ID_LENGTH, MERCHANT_CATEGORIES, NUMERIC_RULES

from . import batch as batching
from .batch import RAW_SCHEMA, Decoded

# Python's json module raises RecursionError on deep nesting and ValueError on integers of over 4,300 digits; Arrow
# accepts both inside fields it ignores. Neither fits in a value this short, so only longer values need the exact path.
MAX_BULK_VALUE_BYTES = 1800
# Below this many rows, a block Arrow rejects is decoded record by record instead of split again.
MIN_SPLIT_ROWS = 16

# Arrow's reader converts each field to exactly this type and raises on any other JSON type (a string for a number,
# a boolean for an integer, 3.0 for an int64), so no value is coerced the way the per-record path would refuse.
_PARSE_SCHEMA = pa.schema(
    [pa.field(f.name, pa.string() if f.name == "event_time" else pa.int64() if pa.types.is_integer(f.type) else f.type)
     for f in ARROW_SCHEMA]
)
_PARSE_OPTIONS = pa_json.ParseOptions(explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="ignore")
_READ_OPTIONS = pa_json.ReadOptions(use_threads=False, block_size=1 << 24)

_ID_FIELDS = tuple(name for name in ID_FIELDS if name != "event_time")
_CATEGORIES = pa.array(MERCHANT_CATEGORIES, pa.string())
_CHANNELS = pa.array(CHANNELS, pa.string())
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class DecodedBatch:
    """One partition batch, decoded: its lake tables per event hour, and its bad records for the dead-letter topic."""

    groups: list[tuple[str, pa.Table, pa.Table]]  # (hour partition, raw table, curated table), by partition name
    bad: list[Decoded]

    @property
    def valid_count(self) -> int:
        return sum(raw.num_rows for _, raw, _ in self.groups)


def decode_batch(topic: str, partition: int, offsets: list[int], keys: list[bytes | None],
                 values: list[bytes | None], timestamps: list[int | None]) -> DecodedBatch:
    """The lake tables and bad records of one partition's messages, in the order given (their offset order)."""
    n = len(values)
    bulk_rows, parsed = _parse(values)
    proven, micros = _proven(parsed) if parsed is not None else (np.zeros(0, dtype=bool), None)
    exact_rows = _complement(n, bulk_rows[proven])

    decoded = [batching.decode(offsets[i], keys[i], values[i], timestamps[i]) for i in exact_rows]
    bad = [item for item in decoded if item.error is not None]
    exact_valid = [(row, item) for row, item in zip(exact_rows, decoded) if item.error is None]

    raw_parts, curated_parts, row_parts = [], [], []
    if proven.any():
        rows = bulk_rows[proven]
        table = parsed.filter(pa.array(proven)) if not proven.all() else parsed
        raw, curated = _bulk_tables(topic, partition, table, micros[proven], rows, offsets, keys, values, timestamps)
        raw_parts.append(raw)
        curated_parts.append(curated)
        row_parts.append(rows)
    if exact_valid:
        items = [item for _, item in exact_valid]
        raw_parts.append(batching.raw_table(topic, partition, items))
        curated_parts.append(batching.curated_table(items))
        row_parts.append(np.array([row for row, _ in exact_valid], dtype=np.int64))
    if not raw_parts:
        return DecodedBatch([], bad)
    raw, curated, rows = _concat(raw_parts), _concat(curated_parts), np.concatenate(row_parts)
    if len(row_parts) > 1:  # the order of the batch, as the per-record path keeps it
        order = pa.array(np.argsort(rows, kind="stable"))
        raw, curated = raw.take(order), curated.take(order)
    return DecodedBatch(_group_by_hour(raw, curated), bad)


# ------------------------------------------------------------------------------------------------ parsing


def _parse(values: list[bytes | None]) -> tuple[np.ndarray, pa.Table | None]:
    """(rows Arrow parsed, their table); every other row is left to the exact path."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64), None
    if None not in values:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        buffer = b"\n".join(values)
        if lengths.min() >= 2 and lengths.max() <= MAX_BULK_VALUE_BYTES and _framed(buffer, lengths) and _utf8(buffer):
            return _parse_rows(values, np.arange(n, dtype=np.int64), buffer)
    eligible = np.array([i for i, v in enumerate(values) if _eligible(v)], dtype=np.int64)
    return _parse_rows(values, eligible, None)


def _framed(buffer: bytes, lengths: np.ndarray) -> bool:
    """Every value starts with '{' and ends with '}' (so none is blank, whitespace or BOM-led for Arrow to skip).

    Then a value holding a newline spans two non-blank lines, each of which Arrow either rejects or reads as at
    least one row, so "as many rows as values" (checked after parsing) means one object per value, in order.
    """
    data = np.frombuffer(buffer, dtype=np.uint8)
    ends = np.cumsum(lengths + 1) - 2  # each value's last byte; a separator follows all but the last
    starts = ends - lengths + 1
    return bool((data[starts] == ord("{")).all() and (data[ends] == ord("}")).all())


def _eligible(value: bytes | None) -> bool:
    return (value is not None and 2 <= len(value) <= MAX_BULK_VALUE_BYTES and value[:1] == b"{"
            and value[-1:] == b"}" and b"\n" not in value and _utf8(value))


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_rows(values: list[bytes | None], rows: np.ndarray,
                buffer: bytes | None) -> tuple[np.ndarray, pa.Table | None]:
    parsed_rows, tables = [], []
    pending = [(rows, buffer)]
    while pending:
        part, data = pending.pop()
        if len(part) < MIN_SPLIT_ROWS:
            continue  # left to the exact path
        if data is None:
            data = b"\n".join([values[i] for i in part])
        try:
            table = pa_json.read_json(io.BytesIO(data), read_options=_READ_OPTIONS, parse_options=_PARSE_OPTIONS)
        except pa.ArrowInvalid:
            half = len(part) // 2
            pending += [(part[half:], None), (part[:half], None)]
            continue
        if table.num_rows != len(part):  # not one object per line after all: let the exact path decide
            continue
        parsed_rows.append(part)
        tables.append(table)
    if not tables:
        return np.zeros(0, dtype=np.int64), None
    rows_out = np.concatenate(parsed_rows)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        order = np.argsort(rows_out, kind="stable")
        rows_out, table = rows_out[order], table.take(pa.array(order))
    return rows_out, table


def _complement(n: int, rows: np.ndarray) -> list[int]:
    mask = np.ones(n, dtype=bool)
    mask[rows] = False
    return np.flatnonzero(mask).tolist()


# ------------------------------------------------------------------------------------------------ proving rows valid


def _proven(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose every field validate_record would accept, by checks that accept a subset of what it does; their
    event times in microseconds)."""
    ok = np.ones(table.num_rows, dtype=bool)
    for name in _ID_FIELDS:
        column = table.column(name)
        # Printable ASCII only, where the one character Python's str.strip() removes is the space (it also strips
        # \x1c-\x1f and Unicode spaces, which this leaves to the exact path).
        ok &= _true(pc.and_(pc.and_(pc.ascii_is_printable(column),
                                    pc.less_equal(pc.binary_length(column), MAX_ID_LENGTH)),
                            pc.greater(pc.binary_length(pc.utf8_trim(column, " ")), 0)))
    ok &= _true(pc.is_in(table.column("merchant_category"), value_set=_CATEGORIES))
    ok &= _true(pc.is_in(table.column("channel"), value_set=_CHANNELS))
    for name in ("country", "card_country"):
        column = table.column(name)
        ok &= _true(pc.and_(pc.and_(pc.ascii_is_alpha(column), pc.ascii_is_upper(column)),
                            pc.equal(pc.binary_length(column), 2)))
    for name, (low, low_inclusive, high, integer) in NUMERIC_RULES.items():
        # An integer field holds an int64 here: Arrow refused anything else (3.0 included) for the exact path.
        x, present = _numbers(table.column(name), np.int64 if integer else np.float64)
        ok &= present & (x >= low if low_inclusive else x > low) & (x <= high)
        if not integer:
            # JSON "-0" is the integer 0 to Python (stored as 0.0), "-0.0" a negative zero: both go to the exact path.
            ok &= np.isfinite(x) & ~((x == 0) & np.signbit(x))
    label, present = _numbers(table.column("is_fraud"), np.int64)
    ok &= present & ((label == 0) | (label == 1))
    event_ok, micros = event_time_us(table.column("event_time"))
    return ok & event_ok, micros


def _true(mask) -> np.ndarray:
    """A boolean Arrow result as numpy, null (a missing or null field) counting as false."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _numbers(column, dtype) -> tuple[np.ndarray, np.ndarray]:
    present = _true(pc.is_valid(column))
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(dtype, copy=False), present


def event_time_us(column) -> tuple[np.ndarray, np.ndarray]:
    """(proven, microseconds since the epoch in UTC) for ISO-8601 strings of exactly the form
    ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)`` naming a real instant in datetime's range; other forms, which
    ``datetime.fromisoformat`` may still accept, are not proven here.

    Arrow's own ISO-8601 cast reads them; it refuses an impossible date, hour, second or offset for the whole
    array, so a refused array is split until the refused strings are isolated.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    ok = _true(pc.match_substring_regex(array, _EVENT_TIME_FORM))
    micros = np.zeros(n, dtype=np.int64)
    pending = [np.flatnonzero(ok)]
    while pending:
        rows = pending.pop()
        if len(rows) == 0:
            continue
        try:
            parsed = array.take(pa.array(rows)).cast(_TIMESTAMP_US)
        except pa.ArrowInvalid:
            if len(rows) == 1:
                ok[rows] = False
            else:
                half = len(rows) // 2
                pending += [rows[:half], rows[half:]]
            continue
        micros[rows] = parsed.cast(pa.int64()).to_numpy()
    # datetime.astimezone(utc) overflows outside datetime's range (0001-01-01T00:30+01:00, 9999-12-31T23:00-05:00),
    # and year 0 is no year to it.
    ok &= (micros >= _MIN_US) & (micros <= _MAX_US)
    return ok, np.where(ok, micros, 0)


_EVENT_TIME_FORM = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"  # RE2: \d is [0-9]
_TIMESTAMP_US = pa.timestamp("us", tz="UTC")
_MIN_US = int((datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) / timedelta(microseconds=1))
_MAX_US = int((datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc) - _EPOCH) / timedelta(microseconds=1))


# ------------------------------------------------------------------------------------------------ tables


def _bulk_tables(topic: str, partition: int, table: pa.Table, micros: np.ndarray, rows: np.ndarray, offsets: list[int],
                 keys: list[bytes | None], values: list[bytes | None],
                 timestamps: list[int | None]) -> tuple[pa.Table, pa.Table]:
    n = table.num_rows
    # pyarrow stores a datetime in a millisecond column by flooring its microseconds: the same here.
    event_time = pa.array(micros // 1000, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    take = pa.array(rows)
    everything = len(rows) == len(values)
    raw = pa.Table.from_arrays(
        [
            table.column("transaction_id"),
            event_time,
            pa.repeat(pa.scalar(topic, pa.string()), n),
            pa.repeat(pa.scalar(partition, pa.int32()), n),
            _column(offsets, pa.int64(), take, everything),
            _column(timestamps, pa.int64(), take, everything).cast(pa.timestamp("ms", tz="UTC")),
            _column(keys, pa.binary(), take, everything),
            _column(values, pa.binary(), take, everything).cast(pa.string()),
        ],
        schema=RAW_SCHEMA,
    )
    curated = pa.Table.from_arrays(
        [event_time if f.name == "event_time" else table.column(f.name).cast(f.type) for f in ARROW_SCHEMA],
        schema=ARROW_SCHEMA,
    )
    return raw, curated


def _column(values: list, type_: pa.DataType, take: pa.Array, everything: bool) -> pa.Array:
    array = pa.array(values, type_)
    return array if everything else array.take(take)


def _concat(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()


def _group_by_hour(raw: pa.Table, curated: pa.Table) -> list[tuple[str, pa.Table, pa.Table]]:
    hours = raw.column("event_time").cast(pa.int64()).to_numpy() // 3_600_000
    if hours[0] == hours[-1] and (hours == hours[0]).all():
        groups = [(int(hours[0]), raw, curated)]
    else:
        order = np.argsort(hours, kind="stable")  # within an hour, the batch's order
        sorted_hours = hours[order]
        starts = np.flatnonzero(np.diff(sorted_hours)) + 1
        groups = []
        for rows in np.split(order, starts):
            take = pa.array(rows)
            groups.append((int(hours[rows[0]]), raw.take(take), curated.take(take)))
    named = [(batching.hour_partition(_EPOCH + timedelta(hours=hour)), r, c) for hour, r, c in groups]
    return sorted(named, key=lambda group: group[0])
