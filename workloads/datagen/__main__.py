"""python -m datagen --count N --seed S [--drift] [--bad-fraction F] (--kafka | --jsonl PATH)

--kafka produces to KAFKA_TOPIC_TRANSACTIONS keyed by card_id, so one card's transactions stay in order
within one partition. Bad records (for dead-letter tests) are interleaved deterministically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.env import ConfigError, Env
from common.kafka_config import producer_config

from .generator import generate, make_bad_records


def build(count: int, seed: int, drift: bool, bad_fraction: float) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs: the generated records with ``bad_fraction`` of malformed values mixed in."""
    records = generate(count, seed, drift=drift)
    pairs: list[tuple[bytes | None, bytes]] = [(r["card_id"].encode(), json.dumps(r).encode()) for r in records]
    n_bad = int(round(count * bad_fraction))
    if n_bad:
        rng = np.random.default_rng([seed, 99])
        positions = sorted(rng.integers(0, len(pairs) + 1, n_bad).tolist(), reverse=True)
        for pos, (value, _why) in zip(positions, make_bad_records(n_bad, seed)):
            pairs.insert(pos, (b"bad", value))
    return pairs


def produce(pairs: list[tuple[bytes | None, bytes]], topic: str, config: dict) -> int:
    from confluent_kafka import Producer

    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    producer = Producer(config)
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry this record
                producer.poll(0.5)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"kafka: {remaining} record(s) undelivered, {len(failures)} failed: {failures[:3]}")
    return len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datagen", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", action="store_true", help="shift feature distributions (drift tests)")
    parser.add_argument("--bad-fraction", type=float, default=0.0, help="extra malformed records, e.g. 0.01")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--kafka", action="store_true", help="produce to KAFKA_TOPIC_TRANSACTIONS")
    target.add_argument("--jsonl", type=Path, help="write one value per line to this file instead")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count: must be >= 0")
    if not 0.0 <= args.bad_fraction <= 1.0:
        parser.error("--bad-fraction: must be between 0 and 1")

    pairs = build(args.count, args.seed, args.drift, args.bad_fraction)
    if args.jsonl:
        # Values are written as-is, so a non-UTF-8 bad record stays byte-exact.
        with open(args.jsonl, "wb") as fh:
            for _key, value in pairs:
                fh.write(value.replace(b"\n", b" ") + b"\n")
        print(f"wrote {len(pairs)} records to {args.jsonl}", file=sys.stderr)
        return 0
    try:
        env = Env()
        topic = env.str("KAFKA_TOPIC_TRANSACTIONS", "transactions")
        env.check()
        config = producer_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    sent = produce(pairs, topic, config)
    print(f"produced {sent} records to {topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
