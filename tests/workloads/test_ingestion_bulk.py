"""The bulk decoder against the per-record path it speeds up: the same lake files, byte for byte, and the same
dead letters with the same reasons, over valid records, every kind of mutated field and malformed values."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from datagen import generate
from datagen.generator import make_bad_records
from ingestion import batch, bulk

TOPIC, PARTITION = "transactions", 2


def _per_record(offsets, keys, values, timestamps):
    items = [batch.decode(o, k, v, t) for o, k, v, t in zip(offsets, keys, values, timestamps)]
    groups = batch.group_by_hour([i for i in items if i.error is None])
    tables = [(hour, batch.raw_table(TOPIC, PARTITION, rows), batch.curated_table(rows))
              for hour, rows in groups.items()]
    return tables, [(i.offset, i.error) for i in items if i.error is not None]


def _bulk(offsets, keys, values, timestamps):
    decoded = bulk.decode_batch(TOPIC, PARTITION, offsets, keys, values, timestamps)
    return decoded.groups, [(i.offset, i.error) for i in decoded.bad]


def _identical(table: pa.Table, expected: pa.Table) -> bool:
    """Equal schemas and values, and floats equal bit for bit (Arrow's equality holds -0.0 == 0.0)."""
    if table.schema != expected.schema or not table.equals(expected):
        return False
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            bits = column.to_numpy().view(np.uint64), expected.column(name).to_numpy().view(np.uint64)
            if not np.array_equal(*bits):
                return False
    return True


def _assert_same(values, seed=0, parquet=False):
    """Both paths give the same hour partitions, tables (or with ``parquet``, files) and dead letters."""
    rng = random.Random(seed)
    n = len(values)
    offsets = list(range(1000, 1000 + n))
    keys = [None if rng.random() < 0.1 else f"card-{rng.randrange(99)}".encode() for _ in range(n)]
    timestamps = [None if rng.random() < 0.1 else 1_767_225_600_000 + rng.randrange(10**7) for _ in range(n)]
    expected, got = _per_record(offsets, keys, values, timestamps), _bulk(offsets, keys, values, timestamps)
    assert [h for h, _, _ in got[0]] == [h for h, _, _ in expected[0]]
    for (hour, raw, curated), (_, raw_e, curated_e) in zip(got[0], expected[0]):
        if parquet:
            assert batch.encode_raw(raw) == batch.encode_raw(raw_e), f"raw file for {hour} differs"
            assert batch.encode_curated(curated) == batch.encode_curated(curated_e), f"curated file for {hour} differs"
        else:
            assert _identical(raw, raw_e), f"raw table for {hour} differs"
            assert _identical(curated, curated_e), f"curated table for {hour} differs"
    assert got[1] == expected[1]
    return expected


# JSON texts each field's value is replaced with, in place: every JSON type, the bounds and just past them, number
# spellings Python and Arrow could type or round differently, and text the vectorised checks treat differently from
# Python (whitespace str.strip() removes, non-ASCII letters, escapes, lone surrogates).
FIELD_TEXTS = [json.dumps(v) for v in (
    None, True, False, 0, 1, -1, 1.0, 3.0, 2.5, 0.5, 1000, 1001, 50000, 50000.01, 20000, 20000.5, 31536000, 31536001,
    10**15, 10**16, 1e-320, "", " ", "\x1c", "\x1f", "\x0b", "\u00a0", "\u3000", "\u2028", "x" * 64, "x" * 65,
    "\u00e9" * 64, "\u00e9" * 65, "US", "us", "U", "USA", "\u00c4\u00d6", "GB ", "grocery", "web", "pos", "ATM", {},
    [], [1], {"a": 1}, "tx-\u00e9", "tx \t1", "12", "\x00", "\U0001f600",
)] + ["-0", "-0.0", "0.0", "-0e0", "0e0", "1E2", "1e-2", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
      "12.4200000000000000000001", "0.1", "1.7976931348623157e308", "5e-324", "123.456789012345678901234567890",
      "49999.999999999999999999", "1000.0", "1e3", "01", "+1", ".5", '"\\ud800x"', '"\\udfff"', '"\\ud83d\\ude00x"',
      '"\\u001c"', '"\\u0020"', '"\\u0041B"', '"a\\tb"', '"a\tb"', '"\xc3\xa9\xc3\xa9"', '"\\u00e9"',
      '"\\/x"', '"\\x41"', "[1,]", "tru", '"\\u00c4\\u00d6"']

EVENT_TIMES = [
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01T00:00:00.9+00:00", "2026-01-01T05:30:00.123456+05:30",
    "2026-01-01T00:00:00.1234567+00:00", "2026-01-01T00:00:00.+00:00", "2026-02-29T00:00:00Z", "2024-02-29T12:00:00Z",
    "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
    "2026-04-31T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:59:60Z", "2026-01-01 00:00:00Z",
    "2026-01-01t00:00:00Z", "2026-01-01T00:00Z", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+23:59",
    "2026-01-01T00:00:00-23:59", "2026-01-01T00:00:00+05:60", "2026-01-01T00:00:00-00:00",
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00-01:00", "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z",
    "9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:01",
    "0999-05-05T05:05:05Z", "1969-12-31T23:59:59.9999+00:00", "1969-12-31T23:59:59.999999Z",
    "2026-01-01T00:00:00+0530", "2026-01-01T00:00:00+05", "20260101T000000Z", "2026-01-01T00:00:00,5+00:00",
    "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00", "2026-W01-1T00:00:00Z", "\uff12026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.000000000Z", "2026-01-01T00:00:00.12+14:00", "", " 2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00\u00b2+00:00", "2026-01-01T00:00:00+00:00 ", "2026-1-01T00:00:00Z",
]


def _text(record: dict, replace: dict[str, str] | None = None, drop: str | None = None) -> bytes:
    """The record as JSON text, with some fields' values replaced by raw JSON text, in place (not appended)."""
    replace = replace or {}
    parts = [f"{json.dumps(k)}: {replace.get(k, json.dumps(v))}" for k, v in record.items() if k != drop]
    return ("{" + ", ".join(parts) + "}").encode()


# Whole-value mutations: forms of JSON (or not) that Arrow and Python's json read differently, and framing.
def _text_mutations(value: bytes) -> list[bytes | None]:
    body = value[:-1]
    return [
        body + b', "amount": -5}',  # a duplicate key: Python keeps the last
        body + b', "amount": 7}',
        body + b', "extra": {"nested": [1, 2, {"x": null}]}, "more": "\xc3\xa9"}',
        b"\xef\xbb\xbf" + value, b" " + value, value + b" ", b"\t" + value, value + b"\r",
        value.replace(b", ", b",\n", 1), value.replace(b", ", b",\r\n", 1),
        value + b" " + value, value + value, b"", b"   ", b"\n", None,
        b"\xff" + value, value.replace(b'"tx-', b'"tx-\xff', 1), value.replace(b'"tx-', b'"tx-\xed\xa0\x80', 1),
        body + b', "x": NaN}', body + b', "x": Infinity}', body + b', "x": 1e999}',
        body + b', "x": ' + b"9" * 5000 + b"}", body + b', "x": ' + b"9" * 4000 + b"}",
        body + b', "x": ' + b"[" * 1200 + b"]" * 1200 + b"}", body + b', "x": ' + b"[" * 600 + b"]" * 600 + b"}",
        body + b', "x": "' + b"y" * 2000 + b'"}', body + b",}", b"[" + value + b"]", b"null", b"{}", b'"text"',
        b"{" + value + b"}", value[:-1], value + b"}", body + b', "x": "\\q"}', body + b', "": 1}',
        body + b', "x": "\x01"}', body + b', "x": 1} // comment', b"/*c*/" + value,
    ]


_VALID = [json.dumps(r).encode() for r in generate(400, seed=123)]
_TEMPLATES = generate(50, seed=321)


def _one_in(value: bytes | None, seed: int, n: int = 20) -> list[bytes | None]:
    """``value`` in the middle of ``n - 1`` valid records: a batch Arrow parses whole unless it rejects ``value``."""
    start = (seed * 7) % (len(_VALID) - n)
    values = _VALID[start:start + n]
    values[n // 2] = value
    return values


def test_generated_records_all_take_the_bulk_path_and_match():
    values = [json.dumps(r).encode() for r in generate(600, seed=41)]
    decoded = bulk.decode_batch(TOPIC, PARTITION, list(range(600)), [None] * 600, values, [None] * 600)
    assert decoded.valid_count == 600 and not decoded.bad
    tables, bad = _assert_same(values, parquet=True)
    assert len(tables) >= 2 and not bad  # 600 records over 6 hours span several hour partitions


def test_random_precise_numbers_parse_to_the_same_doubles():
    rng = random.Random(7)
    records = generate(400, seed=42)
    for r in records:
        r["amount"] = float(f"{rng.uniform(0.01, 50000):.{rng.randrange(1, 17)}g}")
        r["distance_from_home_km"] = rng.uniform(0, 20000)
        r["seconds_since_last_txn"] = rng.choice([rng.uniform(0, 3e7), float(rng.randrange(3 * 10**7))])
    _assert_same([json.dumps(r).encode() for r in records], seed=7, parquet=True)


@pytest.mark.parametrize("field", list(generate(1, seed=1)[0]))
def test_every_replacement_of_every_field_is_decided_as_python_decides_it(field):
    texts = FIELD_TEXTS + ([json.dumps(t) for t in EVENT_TIMES] if field == "event_time" else [])
    for i, text in enumerate(texts):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        try:
            _assert_same(_one_in(_text(template, {field: text}), seed=i))
        except AssertionError as exc:
            raise AssertionError(f"{field} = {text!r}: {exc}") from None
    _assert_same(_one_in(_text(_TEMPLATES[0], drop=field), seed=99))


def test_every_whole_value_mutation_is_decided_as_python_decides_it():
    template = json.dumps(_TEMPLATES[1]).encode()
    for i, value in enumerate(_text_mutations(template)):
        try:
            _assert_same(_one_in(value, seed=i))
        except AssertionError as exc:
            raise AssertionError(f"{value[:80]!r}: {exc}") from None


def test_framing_mutations_together_cannot_shift_rows():
    # A blank value Arrow would skip next to a value holding two objects: the row count alone would still match.
    template = json.dumps(_TEMPLATES[2]).encode()
    for blank in (b"", b" ", b"\n", b"\r\n"):
        for double in (template + b" " + template, template + template, template + b"\n" + template):
            values = _one_in(blank, seed=3, n=40)
            values[30] = double
            _assert_same(values)


def test_random_instants_and_offsets_map_to_the_same_hour_files():
    rng = random.Random(11)
    records = generate(500, seed=44)
    for r in records:
        sign, hours, minutes = rng.choice("+-"), rng.randrange(24), rng.randrange(60)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 7)))
        fraction = "" if rng.random() < 0.3 else "." + digits
        zone = "Z" if rng.random() < 0.2 else f"{sign}{hours:02d}:{minutes:02d}"
        r["event_time"] = (f"{rng.randrange(1, 10000):04d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
                           f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}{fraction}{zone}")
    _assert_same([json.dumps(r).encode() for r in records], seed=11)


@pytest.mark.parametrize("rate", [0.01, 0.3, 1.0])
def test_batches_of_many_mutations_match_record_for_record(rate):
    rng = random.Random(int(rate * 1000))
    for round_ in range(4):
        records = generate(rng.randrange(1, 300), seed=50 + round_)
        values: list[bytes | None] = []
        for r in records:
            if rng.random() >= rate:
                values.append(json.dumps(r).encode())
            elif rng.random() < 0.5:
                field = rng.choice(list(r))
                values.append(_text(r, {field: rng.choice(FIELD_TEXTS)}))
            else:
                values.append(rng.choice(_text_mutations(json.dumps(r).encode())))
        _assert_same(values, seed=round_, parquet=True)


def test_usual_records_are_proven_in_bulk():
    # Without this, every check above would also pass if the bulk path proved nothing and left it all to Python.
    values = [json.dumps(r).encode() for r in generate(300, seed=47)]
    rows, table = bulk._parse(values)
    proven, _ = bulk._proven(table)
    assert len(rows) == 300 and proven.all()


def test_malformed_values_are_dead_lettered_with_the_per_record_reasons():
    bad = [value for value, _ in make_bad_records(24, seed=3)]
    good = [json.dumps(r).encode() for r in generate(100, seed=45)]
    values = good[:50] + bad + good[50:]
    _, dead = _assert_same(values)
    assert len(dead) == 24


def test_one_bad_record_among_many_costs_a_few_splits_not_the_batch():
    values = [json.dumps(r).encode() for r in generate(4096, seed=46)]
    values[1234] = b'{"transaction_id": "broken", "amount": '
    rows, table = bulk._parse(values)
    assert table.num_rows >= 4096 - bulk.MIN_SPLIT_ROWS and 1234 not in set(rows.tolist())
    _assert_same(values)


def test_event_time_parser_agrees_with_datetime_on_every_proven_value():
    from common.schema import parse_event_time

    column = pa.array(EVENT_TIMES + [None], pa.string())
    proven, micros = bulk.event_time_us(column)
    for text, ok, us in zip(EVENT_TIMES, proven, micros):
        if ok:
            parsed = parse_event_time(text)
            delta = parsed - bulk._EPOCH
            assert us == (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, text
    assert not proven[-1]
    assert np.count_nonzero(proven) >= 15  # the checks must still prove the usual forms
