"""The batching consumer: Kafka topic -> raw and curated Parquet, every valid record exactly once in the lake.

Design (why the lake never holds a record twice nor loses one)
-------------------------------------------------------------
Kafka's committed offset is the only progress record. A batch is a run of consecutive offsets of ONE
partition, [first, last], cut by size (INGEST_BATCH_RECORDS) or age (INGEST_BATCH_SECONDS). It is written as
one file per event-time hour under both lake prefixes, named ``<topic>-p<partition>-<first>-<last>.parquet``,
so its keys are a function of its offsets alone. Each batch goes through, in order:

1. produce its bad records to the dead-letter topic and wait for every delivery;
2. PUT the partition's marker object listing every key this batch will write (state.py);
3. PUT the data files;
4. commit offset ``last + 1`` for that partition (synchronously).

A crash can stop this anywhere. On restart the group resumes at the committed offset R. Before the first
record of a partition is buffered after (re)assignment, the consumer reads that partition's marker:

- R > marker.last_offset: the marked batch was committed; its files are the lake's only copy of those
  records and stay.
- R <= marker.last_offset: the marked batch was not committed (step 4 never happened), and batches are
  committed in order, so every earlier batch was committed. Only the marked batch's files can hold
  uncommitted records. They are deleted before anything is re-read, then the records are read again and
  written in new batches, which may be cut at different offsets (different keys) without overlapping.

No loss: a record's files exist before its offset is committed (3 before 4), and a committed batch's
files are never deleted. No duplicates: a record is written by exactly one committed batch, and files of an
uncommitted batch are removed before their records are written again. Lake readers may briefly see an
uncommitted batch (written, not yet committed); they never see a record twice.

Assumption: one live writer per partition. A consumer that lost its partition but still runs ("zombie")
could write after the new owner's cleanup; a commit failure after losing a partition drops the batch and
leaves cleanup to the new owner, and any other commit failure stops the process. Dead-letter records are
at-least-once: a replayed batch produces its bad records again (headers carry source partition/offset to
de-duplicate).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from common import lake
from common.kafka_config import consumer_config, producer_config
from common.lake import S3Uri

from . import batch as batching
from . import metrics, state
from .batch import Decoded, PartitionBatch
from .config import IngestConfig

log = logging.getLogger("ingestion")


class DeadLetterError(RuntimeError):
    pass


class DeadLetters:
    """Producer for bad records; ``flush()`` raises unless every record was delivered."""

    def __init__(self, topic: str, producer: Producer):
        self.topic, self.producer = topic, producer
        self.failures: list[str] = []

    def send(self, source_topic: str, partition: int, item: Decoded) -> None:
        headers = [
            ("error", item.error.encode()),
            ("source_topic", source_topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(item.offset).encode()),
        ]
        while True:
            try:
                self.producer.produce(
                    self.topic, value=item.value, key=item.key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:
                self.producer.poll(0.2)
        self.producer.poll(0)

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failures.append(str(err))

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self.producer.flush(timeout)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            raise DeadLetterError(f"dead-letter topic {self.topic}: {remaining} undelivered, failed: {failures[:3]}")


class Ingestor:
    def __init__(self, config: IngestConfig, consumer: Consumer | None = None, producer: Producer | None = None):
        self.config = config
        self.consumer = consumer or Consumer(
            consumer_config(config.group, **{"session.timeout.ms": config.session_timeout_ms})
        )
        self.dead_letters = DeadLetters(config.dead_letter_topic, producer or Producer(producer_config()))
        self.batches: dict[int, PartitionBatch] = {}
        # Partitions (re)assigned whose marker has not been checked yet.
        self.unchecked: set[int] = set()
        self.stopping = False
        self.puts = 0
        self.pool = ThreadPoolExecutor(config.upload_threads, thread_name_prefix="s3-put")

    # -------------------------------------------------------------- rebalance callbacks
    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.unchecked.add(tp.partition)
        log.info("assigned partitions %s", [tp.partition for tp in partitions])

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Hand over cleanly: write and commit what we hold, so the next owner does not re-read it.
        for tp in partitions:
            if tp.partition in self.batches:
                self.flush(tp.partition)
            self.unchecked.discard(tp.partition)
            # The new owner reports this partition's lag; a stale value here would double it in the lag alert.
            try:
                metrics.CONSUMER_LAG.remove(self.config.topic, str(tp.partition))
            except KeyError:
                pass
        log.info("revoked partitions %s", [tp.partition for tp in partitions])

    # -------------------------------------------------------------- main loop
    def run(self) -> None:
        self.consumer.subscribe([self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stopping:
                messages = self.consumer.consume(num_messages=1000, timeout=0.25)
                for msg in messages:
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", msg.error())
                        continue
                    self._add(msg)
                self._flush_due()
            for partition in list(self.batches):
                self.flush(partition)
        except BaseException:
            # Unwritten batches must not be flushed by the revoke callback that close() triggers: the failure
            # that got us here would repeat. The next owner re-reads them from the last commit.
            self.batches.clear()
            raise
        finally:
            self.consumer.close()
            self.pool.shutdown(wait=True)
        log.info("stopped cleanly")

    def _add(self, msg) -> None:
        partition, offset = msg.partition(), msg.offset()
        if partition in self.unchecked:
            self._recover(partition, offset)
        current = self.batches.get(partition)
        if current is None:
            current = self.batches[partition] = PartitionBatch(self.config.topic, partition, started_at=time.monotonic())
        ts_type, ts = msg.timestamp()
        current.items.append(batching.decode(offset, msg.key(), msg.value(), ts if ts_type else None))
        _, high = self.consumer.get_watermark_offsets(TopicPartition(self.config.topic, partition), cached=True)
        if high is not None and high >= 0:
            metrics.CONSUMER_LAG.labels(self.config.topic, str(partition)).set(max(high - offset - 1, 0))
        if len(current.items) >= self.config.batch_records:
            self.flush(partition)

    def _flush_due(self) -> None:
        now = time.monotonic()
        for partition, current in list(self.batches.items()):
            if now - current.started_at >= self.config.batch_seconds:
                self.flush(partition)

    def _marker_uri(self, partition: int) -> S3Uri:
        return state.marker_uri(self.config.raw_uri, self.config.group, self.config.topic, partition)

    def _recover(self, partition: int, resume_offset: int) -> None:
        marker = state.read(self._marker_uri(partition))
        keys = state.orphans(marker, resume_offset)
        if keys:
            log.warning(
                "partition %d resumes at %d inside uncommitted batch %d-%d: deleting its %d file(s)",
                partition, resume_offset, marker.first_offset, marker.last_offset, len(keys),
            )
            list(self.pool.map(lambda k: lake.delete(lake.parse_s3_uri(k)), keys))
        self.unchecked.discard(partition)

    # -------------------------------------------------------------- writing one batch
    def flush(self, partition: int) -> None:
        current = self.batches.pop(partition, None)
        if current is None or not current.items:
            return
        started = time.perf_counter()
        topic, first, last = self.config.topic, current.first_offset, current.last_offset

        bad = current.bad()
        for item in bad:
            self.dead_letters.send(topic, partition, item)
        self.dead_letters.flush()  # 1. dead letters delivered before anything is committed

        files: list[tuple[S3Uri, bytes]] = []
        name = batching.file_name(topic, partition, first, last)
        for hour, items in batching.group_by_hour(current.valid()).items():
            raw = lake.table_to_parquet_bytes(batching.raw_table(topic, partition, items))
            curated = lake.table_to_parquet_bytes(batching.curated_table(items))
            files.append((self.config.raw_uri.join(hour, name), raw))
            files.append((self.config.curated_uri.join(hour, name), curated))
        if files:
            marker = state.Marker(first, last, tuple(str(uri) for uri, _ in files))
            state.write(self._marker_uri(partition), marker)  # 2. intent before data
            for future in [self.pool.submit(self._put, uri, data) for uri, data in files]:
                future.result()  # 3. every file stored (raises on any failure: no commit)

        tp = TopicPartition(topic, partition, last + 1)
        try:
            self.consumer.commit(offsets=[tp], asynchronous=False)  # 4.
        except KafkaException as exc:
            owned = {(t.topic, t.partition) for t in self.consumer.assignment()}
            if (topic, partition) in owned:
                raise
            log.warning("partition %d was revoked before commit (%s); its new owner replays %d-%d",
                        partition, exc, first, last)
            return
        valid_count = len(current.items) - len(bad)
        metrics.RECORDS.labels(outcome="written").inc(valid_count)
        metrics.RECORDS.labels(outcome="dead_letter").inc(len(bad))
        metrics.FILES_WRITTEN.inc(len(files))
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        log.info("partition %d offsets %d-%d: %d written, %d dead-lettered, %d file(s)",
                 partition, first, last, valid_count, len(bad), len(files))

    def _put(self, uri: S3Uri, data: bytes) -> None:
        lake.put_bytes(uri, data)
        self.puts += 1
        if self.config.kill_after_puts and self.puts >= self.config.kill_after_puts:
            os.kill(os.getpid(), signal.SIGKILL)

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            log.info("received %s: finishing the current batches", signal.Signals(signum).name)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
