"""Optional prediction log to Kafka (PREDICTION_LOGGING=true): never blocks or fails a request.

The drift job compares these scores and features with the training data. When the producer's local queue is
full (broker down), records are dropped and counted rather than slowing the hot path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from common.schema import FEATURE_FIELDS

log = logging.getLogger(__name__)


class PredictionLog:
    def __init__(self, topic: str):
        from confluent_kafka import Producer

        from common.kafka_config import producer_config

        self.topic = topic
        self.dropped = 0
        self._producer = Producer(producer_config(**{"queue.buffering.max.messages": 100_000}))

    def publish(self, rows: Sequence[dict], scores, model_name: str, version: str) -> None:
        now = time.time()
        for row, score in zip(rows, scores):
            record = {name: row.get(name) for name in FEATURE_FIELDS}
            record.update(
                transaction_id=row.get("transaction_id"),
                score=float(score),
                model=model_name,
                model_version=version,
                predicted_at=now,
            )
            try:
                key = record["transaction_id"].encode() if isinstance(record["transaction_id"], str) else None
                self._producer.produce(self.topic, json.dumps(record).encode(), key=key)
            except Exception:  # noqa: BLE001 - a full queue or an unencodable record must not fail the request
                self.dropped += 1
        self._producer.poll(0)  # serve delivery callbacks without waiting

    def close(self, timeout_s: float = 5.0) -> None:
        left = self._producer.flush(timeout_s)
        if left or self.dropped:
            log.warning("prediction log: %d records unsent at shutdown, %d dropped earlier", left, self.dropped)
