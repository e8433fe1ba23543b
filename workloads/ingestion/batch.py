"""Pure batch logic: decode and validate Kafka messages, group by event hour, name files, build tables.

Nothing here talks to Kafka or S3, so the rules that make replays idempotent are unit-testable.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from common import lake
from common.schema import parse_event_time, records_to_table, validate_record

MAX_ERROR_CHARS = 1000
# Dictionary encoding only where values repeat: on unique columns (ids, amounts, the raw JSON) it costs time and bytes.
RAW_DICTIONARY_COLUMNS = ["kafka_topic"]
CURATED_DICTIONARY_COLUMNS = ["merchant_category", "channel", "country", "card_country"]

RAW_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("kafka_key", pa.binary()),
        # The record exactly as produced (UTF-8 JSON), including fields the curated schema drops.
        pa.field("value", pa.string(), nullable=False),
    ]
)


@dataclass
class Decoded:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    record: dict[str, Any] | None = None
    error: str | None = None
    event_time: datetime | None = None


def decode(offset: int, key: bytes | None, value: bytes | None, timestamp_ms: int | None) -> Decoded:
    """Parse and validate one message; a bad one gets ``error`` naming the problem, never an exception."""
    item = Decoded(offset, key, value, timestamp_ms)
    if value is None:
        item.error = "value: empty (tombstone), expected a JSON object"
        return item
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        item.error = f"value: not valid utf-8 ({exc.reason} at byte {exc.start})"
        return item
    try:
        record = json.loads(text)
    # ValueError: besides malformed JSON, an integer literal past Python's digit limit.
    except (ValueError, RecursionError) as exc:
        item.error = f"value: not valid json ({exc})"[:MAX_ERROR_CHARS]
        return item
    try:
        problems = validate_record(record, require_label=True, require_ids=True)
        if not problems:
            item.event_time = parse_event_time(record["event_time"])
    except Exception as exc:  # noqa: BLE001 - one record must never stop its partition: it goes to the DLQ
        problems = [f"record: could not be validated ({type(exc).__name__}: {exc})"]
    if problems:
        item.error = "; ".join(problems)[:MAX_ERROR_CHARS]
        return item
    item.record = record
    return item


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    # Only offsets go into the name: replaying the same offsets yields the same key and overwrites it.
    return f"{topic}-p{partition}-{first}-{last}.parquet"


def hour_partition(ts: datetime) -> str:
    return f"date={ts:%Y-%m-%d}/hour={ts:%H}"


def group_by_hour(items: list[Decoded]) -> dict[str, list[Decoded]]:
    groups: dict[str, list[Decoded]] = defaultdict(list)
    for item in items:
        groups[hour_partition(item.event_time)].append(item)
    return dict(sorted(groups.items()))


def raw_table(topic: str, partition: int, items: list[Decoded]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "transaction_id": [i.record["transaction_id"] for i in items],
            "event_time": [i.event_time for i in items],
            "kafka_topic": [topic] * len(items),
            "kafka_partition": [partition] * len(items),
            "kafka_offset": [i.offset for i in items],
            "kafka_timestamp": [i.timestamp_ms for i in items],
            "kafka_key": [i.key for i in items],
            "value": [i.value.decode("utf-8") for i in items],
        },
        schema=RAW_SCHEMA,
    )


def curated_table(items: list[Decoded]) -> pa.Table:
    return records_to_table([i.record for i in items])


def encode_raw(table: pa.Table) -> bytes:
    return lake.table_to_parquet_bytes(table, dictionary=RAW_DICTIONARY_COLUMNS)


def encode_curated(table: pa.Table) -> bytes:
    return lake.table_to_parquet_bytes(table, dictionary=CURATED_DICTIONARY_COLUMNS)
