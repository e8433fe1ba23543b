"""Small Kafka/S3 helpers for the workload tests (count-based waits: tansu's watermarks run low)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Read ``topic`` from the beginning with a throwaway group until ``expected`` records arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if not msg.error():
                    out.append(msg)
    finally:
        consumer.close()
    return out


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 3) -> int:
    from confluent_kafka import TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(tp.offset for tp in tps if tp.offset >= 0)
    finally:
        consumer.close()
