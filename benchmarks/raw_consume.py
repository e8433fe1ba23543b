"""python -m benchmarks.raw_consume --topic T --group G --count N: the ingestion benchmark's floor.

The same broker and client library (confluent-kafka, the consumer settings ingestion uses) reading the same
backlog as fast as it can, doing nothing but counting messages: no decoding, Parquet, S3 or commits. Its rate is
measured over the same window as the consumer's (from 10 % to 90 % of the records read). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw_consume", description=__doc__.splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--low", type=float, default=0.1)
    parser.add_argument("--high", type=float, default=0.9)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--num-messages", type=int, default=0, help="per consume() call (default: the consumer's)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="read the backlog again until the "
                        "measured windows add up to this")
    args = parser.parse_args(argv)

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from common.kafka_config import consumer_config
    from ingestion.consumer import CONSUME_MESSAGES

    low, high = int(args.low * args.count), int(args.high * args.count)
    deadline = time.monotonic() + args.timeout
    windows: list[float] = []
    consumer = Consumer(consumer_config(args.group))
    partitions = sorted(consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions)
    try:
        # One pass over the backlog can take well under a second: read it again from the start (assigned
        # partitions, so no group join between passes) until the measured windows add up to --min-seconds,
        # and report their combined rate. The first pass is not counted: the first read of a freshly filled topic
        # ran at a fifth of the later ones here, and the consumer measured against this floor reads it afterwards.
        warmed = False
        while sum(windows) < args.min_seconds or not windows:
            consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
            seen, low_at, high_at = 0, None, None
            while high_at is None and time.monotonic() < deadline:
                # The same batch size and timeout as the batching consumer's loop.
                for msg in consumer.consume(num_messages=args.num_messages or CONSUME_MESSAGES, timeout=0.25):
                    if msg.error() is None:
                        seen += 1
                        if low_at is None and seen >= low:
                            low_at = time.perf_counter()
                        if high_at is None and seen >= high:
                            high_at = time.perf_counter()
            consumer.unassign()
            if high_at is None:
                print(f"raw_consume: only {seen}/{args.count} records within {args.timeout:.0f} s", file=sys.stderr)
                return 1
            if warmed:
                windows.append(max(high_at - low_at, 1e-9))
            warmed = True
    finally:
        consumer.close()
    total = sum(windows)
    print(json.dumps({"records": args.count, "records_per_s": round(len(windows) * (high - low) / total, 1),
                      "passes": len(windows), "window_s": round(total, 3), "window": [args.low, args.high]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
