"""Baseline for benchmarks: one record at a time, write then commit per record.

It is correct (same no-loss/no-duplicate argument with one-record batches: a replayed offset rewrites the same
key ``...-<offset>-<offset>.parquet``) and deliberately unbatched, so it pays one S3 PUT pair and one
synchronous commit per record; it shows what the batching consumer buys.
"""

from __future__ import annotations

import logging
import signal

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import lake
from common.kafka_config import consumer_config, producer_config

from . import batch as batching
from . import metrics
from .config import IngestConfig
from .consumer import DeadLetters

log = logging.getLogger("ingestion.naive")


def run_naive(config: IngestConfig) -> None:
    consumer = Consumer(consumer_config(config.group, **{"session.timeout.ms": config.session_timeout_ms}))
    dead_letters = DeadLetters(config.dead_letter_topic, Producer(producer_config()))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    consumer.subscribe([config.topic])
    try:
        while not stopping:
            msg = consumer.poll(0.25)
            if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            partition, offset = msg.partition(), msg.offset()
            ts_type, ts = msg.timestamp()
            item = batching.decode(offset, msg.key(), msg.value(), ts if ts_type else None)
            if item.error:
                dead_letters.send(config.topic, partition, item)
                dead_letters.flush()
                metrics.RECORDS.labels(outcome="dead_letter").inc()
            else:
                name = batching.file_name(config.topic, partition, offset, offset)
                hour = batching.hour_partition(item.event_time)
                raw = batching.raw_table(config.topic, partition, [item])
                lake.put_bytes(config.raw_uri.join(hour, name), batching.encode_raw(raw))
                curated = batching.curated_table([item])
                lake.put_bytes(config.curated_uri.join(hour, name), batching.encode_curated(curated))
                metrics.FILES_WRITTEN.inc(2)
                metrics.RECORDS.labels(outcome="written").inc()
            consumer.commit(offsets=[TopicPartition(config.topic, partition, offset + 1)], asynchronous=False)
    finally:
        consumer.close()
