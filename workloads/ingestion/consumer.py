"""The batching consumer: Kafka topic -> raw and curated Parquet, every valid record exactly once in the lake.

Design (why the lake never holds a record twice nor loses one)
-------------------------------------------------------------
Kafka's committed offset is the only progress record. A batch is a run of consecutive offsets of ONE
partition, [first, last], cut by size (INGEST_BATCH_RECORDS) or age (INGEST_BATCH_SECONDS). It is written as
one file per event-time hour under both lake prefixes, named ``<topic>-p<partition>-<first>-<last>.parquet``,
so its keys are a function of its offsets alone. Each batch goes through, in order:

1. produce its bad records to the dead-letter topic and wait for every delivery;
2. PUT the partition's marker object listing every key this batch will write (state.py), once a re-commit of
   offset ``first`` has shown the group has not moved on (see "Assumption");
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


# The coordinator rejected the commit because this member's generation is over: the group has moved on and
# the offsets were not stored. Member-level, not partition-level: every other commit in the same generation
# fails the same way. FENCED_INSTANCE_ID only occurs with static membership (group.instance.id); librdkafka
# also raises it as a fatal error, which stops the main loop. _ASSIGNMENT_LOST comes from commits of the
# current assignment; _STATE is left out on purpose: it also means a closed or misused consumer.
LOST_GENERATION_CODES = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.STALE_MEMBER_EPOCH,  # the KIP-848 consumer protocol's ILLEGAL_GENERATION
        KafkaError.FENCED_MEMBER_EPOCH,  # ... and its UNKNOWN_MEMBER_ID
        KafkaError._ASSIGNMENT_LOST,
    }
)


def lost_partition_reason(exc: BaseException) -> str | None:
    """The error's name if a failed commit means "these partitions are no longer yours", else None (fatal)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError) and error.code() in LOST_GENERATION_CODES:
        return error.name()
    return None


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
        self.assigned: set[int] = set()
        # Partitions (re)assigned whose marker has not been checked yet.
        self.unchecked: set[int] = set()
        # Files of an uncommitted batch deleted on recovery, deleted once more just before this partition's
        # first write: a member that lost the partition mid-upload may have stored one after the first pass.
        self.reclean: dict[int, tuple[str, ...]] = {}
        # Set when the coordinator rejected a commit (lost_partition_reason): until the next assignment,
        # records are not buffered and batches are not written, because nothing could be committed.
        self.fenced = False
        self.stopping = False
        self.puts = 0
        # Last offset buffered per partition since the previous lag update.
        self.lag_offsets: dict[int, int] = {}
        self.pool = ThreadPoolExecutor(config.upload_threads, thread_name_prefix="s3-put")

    # -------------------------------------------------------------- rebalance callbacks
    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Eager protocol: every rebalance revokes everything and assigns afresh, so a fence from the previous
        # generation ends here and each partition resumes from its committed offset.
        self.fenced = False
        for tp in partitions:
            self.assigned.add(tp.partition)
            self.unchecked.add(tp.partition)
        log.info("assigned partitions %s", [tp.partition for tp in partitions])

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Hand over cleanly: write and commit what we hold, so the next owner does not re-read it. A flush
        # whose commit is rejected fences the rest, which are then dropped unwritten.
        in_flight = sum(1 for tp in partitions if tp.partition in self.batches)
        for tp in partitions:
            if tp.partition in self.batches:
                if self.fenced:
                    self._drop(tp.partition, "generation already over")
                else:
                    self.flush(tp.partition)
            self._forget(tp.partition)
        log.info("revoked partitions %s (%d batch(es) in flight)", [tp.partition for tp in partitions], in_flight)

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: the member was dropped from the group (missed session or poll deadline), so
        # other members may already own these partitions and be writing them. Writing our batches now
        # would race their cleanup, and the commit would be rejected anyway.
        self.fenced = True
        for tp in partitions:
            if tp.partition in self.batches:
                self._drop(tp.partition, "assignment lost")
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

    def _drop(self, partition: int, reason: str) -> None:
        current = self.batches.pop(partition, None)
        if current is not None and current.items:
            log.warning("partition %d: dropping uncommitted offsets %d-%d (%s); they are read again from the "
                        "last commit by the partition's next owner", partition, current.first_offset,
                        current.last_offset, reason)

    # -------------------------------------------------------------- main loop
    def run(self) -> None:
        self.consumer.subscribe([self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        try:
            while not self.stopping:
                messages = self.consumer.consume(num_messages=1000, timeout=0.25)
                for msg in messages:
                    if msg.error():
                        if msg.error().fatal():
                            # The client is unusable (e.g. fenced static member); consuming on would spin.
                            raise KafkaException(msg.error())
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", msg.error())
                        continue
                    self._add(msg)
                self._update_lag()
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
        # A consume() call can return records fetched before a revoke it served; buffering them would start
        # a batch for a partition that is no longer ours. When fenced, everything is read again from the
        # last commit once the group assigns partitions anew.
        if self.fenced or partition not in self.assigned:
            return
        if partition in self.unchecked:
            self._recover(partition, offset)
        current = self.batches.get(partition)
        if current is None:
            current = self.batches[partition] = PartitionBatch(self.config.topic, partition, started_at=time.monotonic())
        ts_type, ts = msg.timestamp()
        current.items.append(batching.decode(offset, msg.key(), msg.value(), ts if ts_type else None))
        # Lag is refreshed once per partition per consume() call (see _update_lag), not per record.
        self.lag_offsets[partition] = offset
        if len(current.items) >= self.config.batch_records:
            self.flush(partition)

    def _update_lag(self) -> None:
        lag_offsets, self.lag_offsets = self.lag_offsets, {}
        for partition, offset in lag_offsets.items():
            if partition not in self.assigned:
                continue
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.config.topic, partition), cached=True)
            if high is not None and high >= 0:
                metrics.CONSUMER_LAG.labels(self.config.topic, str(partition)).set(max(high - offset - 1, 0))

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
            self._delete(keys)
            self.reclean[partition] = keys
        self.unchecked.discard(partition)

    def _delete(self, keys: tuple[str, ...]) -> None:
        list(self.pool.map(lambda k: lake.delete(lake.parse_s3_uri(k)), keys))

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
        if partition in self.reclean:
            # Safe even if this batch reuses a key: its own file is written after this.
            self._delete(self.reclean.pop(partition))
        if files:
            # Fencing probe: re-commit the offset this batch starts at (already the group's position, so
            # nothing moves) and write nothing if the group has moved on. See "Assumption" above.
            if not self._commit_or_fence(partition, first, first, last, "before writing"):
                return
            marker = state.Marker(first, last, tuple(str(uri) for uri, _ in files))
            state.write(self._marker_uri(partition), marker)  # 2. intent before data
            for future in [self.pool.submit(self._put, uri, data) for uri, data in files]:
                future.result()  # 3. every file stored (raises on any failure: no commit)

        if self.config.hold_commit_file:
            self._hold_commit(partition, first, last)
        if not self._commit_or_fence(partition, last + 1, first, last, "after writing"):  # 4.
            return
        valid_count = len(current.items) - len(bad)
        metrics.RECORDS.labels(outcome="written").inc(valid_count)
        metrics.RECORDS.labels(outcome="dead_letter").inc(len(bad))
        metrics.FILES_WRITTEN.inc(len(files))
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        log.info("partition %d offsets %d-%d: %d written, %d dead-lettered, %d file(s)",
                 partition, first, last, valid_count, len(bad), len(files))

    def _commit_or_fence(self, partition: int, offset: int, first: int, last: int, stage: str) -> bool:
        """Commit ``offset``; False if the coordinator says the group has moved on (then fenced, batches dropped)."""
        try:
            self._commit(partition, offset)
        except KafkaException as exc:
            reason = lost_partition_reason(exc)
            if reason is None:
                raise
            # Not committed. If files were written, the marker names them as uncommitted, so the next owner
            # deletes them before re-reading. Nothing else we hold can be committed in this generation.
            log.warning("partition %d: commit of offsets %d-%d rejected (%s) %s: the group has moved on; its "
                        "next owner replays them", partition, first, last, reason, stage)
            self.fenced = True
            for other in list(self.batches):
                self._drop(other, f"fenced after {reason}")
            return False
        return True

    def _commit(self, partition: int, offset: int) -> None:
        result = self.consumer.commit(offsets=[TopicPartition(self.config.topic, partition, offset)],
                                      asynchronous=False)
        # A per-partition failure may come back in the result rather than as the raised error.
        for tp in result or ():
            if tp.error is not None:
                raise KafkaException(tp.error)

    def _hold_commit(self, partition: int, first: int, last: int) -> None:
        path = self.config.hold_commit_file
        if not os.path.exists(path):
            return
        log.warning("fault injection: holding the commit of partition %d offsets %d-%d while %s exists",
                    partition, first, last, path)
        deadline = time.monotonic() + 60
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)

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
