"""The batching consumer: Kafka topic -> raw and curated Parquet, every valid record exactly once in the lake.

Design (why the lake never holds a record twice nor loses one)
-------------------------------------------------------------
Kafka's committed offset is the only progress record. A batch is a run of consecutive offsets of ONE
partition, [first, last], cut by size (INGEST_BATCH_RECORDS) or age (INGEST_BATCH_SECONDS). It is written as
one file per event-time hour under both lake prefixes, named ``<topic>-p<partition>-<first>-<last>.parquet``,
so its keys are a function of its offsets alone. Each batch goes through, in order:

1. re-commit offset ``first`` to check that the group has not moved on (see "Assumption"), then produce its bad
   records to the dead-letter topic and wait for every delivery;
2. PUT the partition's marker object listing every key this batch will write (state.py);
3. PUT the data files;
4. commit offset ``last + 1`` for that partition (synchronously).

A partition's batches take these steps one at a time: a batch starts step 1 only once the batch before it in the
same partition has committed (or was dropped). Decoding and encoding run ahead of that, and other partitions'
batches overlap with it (pipeline.py), so the order below holds per partition while the consumer keeps every core
busy.

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

Rebalances. A commit the group coordinator rejects because this member's generation is over
(ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID and their KIP-848
equivalents; see ``lost_partition_reason``) means the group has moved on: the batch is dropped uncommitted,
any files it wrote stay for whoever next owns the partition (its marker says "not committed", so that owner
deletes them before re-reading), and the consumer writes nothing more until the group assigns it partitions again
(every batch it holds would hit the same rejection). It does not stop: a rebalance is routine. Partitions
reported lost (``on_lost``: the member was expelled, another one may already own them) are dropped
without writing; partitions revoked in an orderly rebalance are written and committed first. Any other
commit failure stops the process.

Assumption: one live writer per partition. A member learns that the group has moved on only from the
coordinator (a rejected commit, or its next heartbeat), and a new generation can be formed without it, so
for a moment a member that has lost a partition may still be writing it. Two measures keep its files from
outliving the new owner's cleanup: each batch first re-commits the offset it starts at (the group's
position already: nothing moves) and writes nothing if that is rejected, so a batch started after the
group moved on writes nothing; and the new owner deletes an uncommitted batch's files once more right
before its own first write of the partition, which catches an upload that was still in flight when it
first looked. What remains is an upload of the losing member that lands even later than that: its records
would be in the lake twice. Closing it would take writes the store itself fences (a conditional PUT on an
owner token). Dead-letter records are at-least-once: a replayed batch produces its bad records again
(headers carry source partition/offset to de-duplicate).
"""

from __future__ import annotations

import logging
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from common.kafka_config import consumer_config, producer_config

from . import metrics, state
from .batch import Decoded
from .config import IngestConfig
from .pipeline import (LOST_GENERATION_CODES, BatchPipeline, CutBatch, GroupState, Records, log_drop,  # noqa: F401
                       lost_partition_reason)

# Messages asked of each consume() call. librdkafka waits for this many (or the timeout), so more than a fetch holds
# stalls the loop: 5000 read a backlog at half the rate of 1000 here. The raw-consume floor in
# benchmarks/ uses the same number.
CONSUME_MESSAGES = 1000
# How many cut batches of one partition may be on their way to the lake before the poll loop waits for the oldest.
MAX_BATCHES_IN_FLIGHT = 4

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
        self.group = GroupState()
        self.pipeline = BatchPipeline(config, self.consumer,
                                      DeadLetters(config.dead_letter_topic, producer or Producer(producer_config())),
                                      self.group)
        self.buffers: dict[int, PartitionBuffer] = {}
        self.assigned: set[int] = set()
        # Partitions (re)assigned whose marker has not been checked yet.
        self.unchecked: set[int] = set()
        # Files of an uncommitted batch deleted on recovery, deleted once more just before this partition's
        # first write: a member that lost the partition mid-upload may have stored one after the first pass.
        self.reclean: dict[int, tuple[str, ...]] = {}
        self.stopping = False
        # Last offset buffered per partition since the previous lag update.
        self.lag_offsets: dict[int, int] = {}

    # -------------------------------------------------------------- rebalance callbacks (run inside consume())
    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Eager protocol: every rebalance revokes (or loses) everything first, and those callbacks drained the
        # pipeline, so nothing of the previous generation is still being written when this one starts.
        self.pipeline.drain(list(self.pipeline.queues))
        self.group.generation += 1
        for tp in partitions:
            self.assigned.add(tp.partition)
            self.unchecked.add(tp.partition)
        log.info("assigned partitions %s", [tp.partition for tp in partitions])

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Hand over cleanly: write and commit what we hold, so the next owner does not re-read it. A write whose
        # commit is rejected fences the rest, which are then dropped unwritten.
        revoked = [tp.partition for tp in partitions]
        for partition in revoked:
            if self.group.fenced:
                self._drop_buffer(partition, "generation already over")
            else:
                self._cut(partition)
        in_flight = sum(self.pipeline.pending(p) for p in revoked)
        self.pipeline.drain(revoked)
        for partition in revoked:
            self._forget(partition)
        log.info("revoked partitions %s (%d batch(es) in flight)", revoked, in_flight)

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: the member was dropped from the group (missed session or poll deadline), so other
        # members may already own these partitions and be writing them. Writing our batches now would race their
        # cleanup, and the commit would be rejected anyway: batches not yet uploading are dropped.
        self.group.fenced_generation = self.group.generation
        for tp in partitions:
            self._drop_buffer(tp.partition, "assignment lost")
        self.pipeline.drain([tp.partition for tp in partitions])
        for tp in partitions:
            self._forget(tp.partition)
        log.warning("lost partitions %s", [tp.partition for tp in partitions])

    def _forget(self, partition: int) -> None:
        self.assigned.discard(partition)
        self.unchecked.discard(partition)
        self.reclean.pop(partition, None)
        # The new owner reports this partition's lag; a stale value here would double it in the lag alert.
        try:
            metrics.CONSUMER_LAG.remove(self.config.topic, str(partition))
        except KeyError:
            pass

    def _drop_buffer(self, partition: int, reason: str) -> None:
        buffer = self.buffers.pop(partition, None)
        if buffer is not None and len(buffer.records):
            log_drop(partition, buffer.records.offsets[0], buffer.records.offsets[-1], reason)

    # -------------------------------------------------------------- main loop
    def run(self) -> None:
        self.consumer.subscribe([self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        try:
            while not self.stopping:
                # While batches are on their way, come back soon to move them on (commits happen here).
                timeout = 0.02 if self.pipeline.pending() else 0.25
                messages = self.consumer.consume(num_messages=CONSUME_MESSAGES, timeout=timeout)
                # Fenced (by a rejected commit or a lost assignment): nothing buffered can be committed in this
                # generation; everything is read again from the last commit once the group assigns partitions anew.
                if self.group.fenced:
                    for partition in list(self.buffers):
                        self._drop_buffer(partition, "the group has moved on")
                if messages:
                    self._add(messages)
                self._update_lag()
                self._cut_due()
                self.pipeline.advance()
            for partition in list(self.buffers):
                self._cut(partition)
            self.pipeline.drain(list(self.pipeline.queues))
        except BaseException:
            # Unwritten batches must not be written by the revoke callback that close() triggers, nor committed
            # after uploads still running: the failure that got us here would repeat. The next owner re-reads them.
            self.group.aborting = True
            self.buffers.clear()
            try:
                self.pipeline.drain(list(self.pipeline.queues))
            except BaseException:  # noqa: BLE001 - the first failure is the one to report
                log.exception("while stopping after a failure")
            raise
        finally:
            self.consumer.close()
            self.pipeline.shutdown()
        log.info("stopped cleanly")

    def _add(self, messages: list[Message]) -> None:
        if any(map(Message.error, messages)):
            messages = self._without_errors(messages)
            if not messages:
                return
        # A consume() call can return records fetched before a revoke it served; buffering them would start a
        # batch for a partition that is no longer ours (or, fenced, for a generation that is over).
        if self.group.fenced:
            return
        partitions = list(map(Message.partition, messages))
        first = partitions[0]
        if partitions.count(first) == len(partitions):  # the usual case: one fetch of one partition
            runs = {first: messages}
        else:
            runs = defaultdict(list)
            for partition, message in zip(partitions, messages):
                runs[partition].append(message)
        for partition, run in runs.items():
            if partition not in self.assigned:
                continue
            records = Records.of(run)
            if partition in self.unchecked:
                self._recover(partition, records.offsets[0])
            buffer = self.buffers.get(partition)
            if buffer is None:
                buffer = self.buffers[partition] = PartitionBuffer(time.monotonic())
            buffer.records.extend(records)
            # Lag is refreshed once per partition per consume() call (see _update_lag), not per record.
            self.lag_offsets[partition] = records.offsets[-1]
            while len(buffer.records) >= self.config.batch_records:
                self._cut(partition, self.config.batch_records)

    @staticmethod
    def _without_errors(messages: list[Message]) -> list[Message]:
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.fatal():
                # The client is unusable (e.g. fenced static member); consuming on would spin.
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
        return kept

    def _cut(self, partition: int, count: int | None = None) -> None:
        """Hand the partition's first ``count`` buffered messages (default: all) to the pipeline as one batch."""
        buffer = self.buffers.get(partition)
        if buffer is None or not len(buffer.records):
            self.buffers.pop(partition, None)
            return
        if count is None or count >= len(buffer.records):
            records, buffer.records = buffer.records, Records()
            del self.buffers[partition]
        else:
            records, buffer.records = buffer.records.split(count)
            buffer.started_at = time.monotonic()
        batch = CutBatch(self.config.topic, partition, self.group.generation, records,
                         reclean=self.reclean.pop(partition, ()))
        # Back-pressure: at most this many batches of a partition between the poll loop and the lake.
        self.pipeline.submit(batch, max_queued=MAX_BATCHES_IN_FLIGHT)

    def _update_lag(self) -> None:
        lag_offsets, self.lag_offsets = self.lag_offsets, {}
        for partition, offset in lag_offsets.items():
            if partition not in self.assigned:
                continue
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.config.topic, partition), cached=True)
            if high is not None and high >= 0:
                metrics.CONSUMER_LAG.labels(self.config.topic, str(partition)).set(max(high - offset - 1, 0))

    def _cut_due(self) -> None:
        now = time.monotonic()
        for partition, buffer in list(self.buffers.items()):
            if now - buffer.started_at >= self.config.batch_seconds:
                self._cut(partition)

    def _recover(self, partition: int, resume_offset: int) -> None:
        marker = state.read(state.marker_uri(self.config.raw_uri, self.config.group, self.config.topic, partition))
        keys = state.orphans(marker, resume_offset)
        if keys:
            log.warning(
                "partition %d resumes at %d inside uncommitted batch %d-%d: deleting its %d file(s)",
                partition, resume_offset, marker.first_offset, marker.last_offset, len(keys),
            )
            self.pipeline.delete(keys)
            self.reclean[partition] = keys
        self.unchecked.discard(partition)

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            log.info("received %s: finishing the current batches", signal.Signals(signum).name)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


@dataclass
class PartitionBuffer:
    """Messages of one partition polled and not yet cut into a batch, and when the oldest of them arrived."""

    started_at: float
    records: Records = field(default_factory=Records)
