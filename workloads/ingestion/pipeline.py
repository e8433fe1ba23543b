"""How a cut batch reaches the lake: encoded ahead on a pool, uploaded on another, committed by the poll thread.

The consumer's poll loop buffers messages and cuts batches. Each batch is then

- *prepared* on the encode pool: its values decoded and validated in bulk (``bulk.py``), its Parquet files encoded.
  Pure work with no side effect, so it runs ahead, several batches at once; Arrow and Parquet release the GIL;
- *written* through the steps consumer.py's design describes: the fencing probe (a commit), then dead letters,
  marker and data files (an upload job on the write pool), then the commit. A partition's batches take these steps
  strictly one after the other, in cut order, as the design needs; different partitions' batches, and the encoding
  of the next ones, overlap with them and with polling.

Every consumer call, the two commits of each batch included, is made by the poll thread, between ``consume()``
calls or inside its rebalance callbacks: a synchronous commit from another thread while the poll thread is inside
``consume()`` or ``poll()`` never returns (confluent-kafka 2.16.1, seen here). So ``BatchPipeline.advance`` is
driven by the poll loop and moves each partition's oldest batch as far as its finished work allows.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from common import lake
from common.lake import S3Uri

from . import batch as batching
from . import bulk, metrics, state
from .batch import Decoded
from .config import IngestConfig

log = logging.getLogger("ingestion")


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


@dataclass
class GroupState:
    """What the consumer knows of its group membership; the poll loop and the pipeline both read it.

    ``generation`` counts assignments; ``fenced_generation`` is the last generation in which the coordinator rejected
    a commit or the assignment was lost. Batches cut in a fenced generation are never written nor committed.
    """

    generation: int = 0
    fenced_generation: int = -1
    aborting: bool = False  # the consumer is stopping on a failure: write nothing more

    @property
    def fenced(self) -> bool:
        return self.fenced_generation >= self.generation

    def abandoned(self, generation: int) -> str | None:
        if self.aborting:
            return "the consumer is stopping on a failure"
        if generation <= self.fenced_generation:
            return "the group has moved on"
        return None


@dataclass
class Records:
    """Messages of one partition, in offset order, as plain columns.

    A consumed ``Message`` is an object the cyclic garbage collector tracks; buffering thousands of them made it
    rescan them all, over and over (a fifth of a native profile's samples here). Offsets, keys, values and
    timestamps are ints and bytes, which it ignores, so the poll loop copies them out and lets each Message go.
    """

    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int | None] = field(default_factory=list)

    @classmethod
    def of(cls, messages: list[Message]) -> "Records":
        return cls(list(map(Message.offset, messages)), list(map(Message.key, messages)),
                   list(map(Message.value, messages)),
                   [ts if kind else None for kind, ts in map(Message.timestamp, messages)])

    def __len__(self) -> int:
        return len(self.offsets)

    def extend(self, other: "Records") -> None:
        self.offsets += other.offsets
        self.keys += other.keys
        self.values += other.values
        self.timestamps += other.timestamps

    def split(self, count: int) -> tuple["Records", "Records"]:
        """(the first ``count`` records, the rest)."""
        columns = (self.offsets, self.keys, self.values, self.timestamps)
        return Records(*(c[:count] for c in columns)), Records(*(c[count:] for c in columns))


@dataclass
class CutBatch:
    """Consecutive messages of one partition, in offset order, cut from the poll loop's buffer."""

    topic: str
    partition: int
    generation: int
    records: Records
    # Keys of an uncommitted batch deleted at recovery, deleted once more right before this partition's first write.
    reclean: tuple[str, ...] = ()
    prepared: Future | None = field(default=None, repr=False)  # -> Prepared, on the encode pool
    upload: Future | None = field(default=None, repr=False)  # dead letters, marker and files, on the write pool
    started: float = 0.0

    @property
    def first_offset(self) -> int:
        return self.records.offsets[0]

    @property
    def last_offset(self) -> int:
        return self.records.offsets[-1]


@dataclass
class Prepared:
    files: list[tuple[S3Uri, bytes]]
    bad: list[Decoded]
    valid_count: int


class BatchPipeline:
    """Cut batches from encoding to commit; see the module docstring. Only the poll thread calls its methods."""

    def __init__(self, config: IngestConfig, consumer: Consumer, dead_letters, group: GroupState):
        self.config, self.consumer, self.dead_letters, self.group = config, consumer, dead_letters, group
        self.encode_pool = ThreadPoolExecutor(config.encode_threads, thread_name_prefix="encode")
        # A partition uploads one batch at a time (its oldest), so up to 4 partitions upload at once, each fanning its
        # files out to the upload pool.
        self.write_pool = ThreadPoolExecutor(4, thread_name_prefix="write")
        self.upload_pool = ThreadPoolExecutor(config.upload_threads, thread_name_prefix="s3-put")
        self.queues: dict[int, deque[CutBatch]] = defaultdict(deque)
        self._puts = 0
        self._puts_lock = threading.Lock()

    def submit(self, batch: CutBatch, max_queued: int) -> None:
        """Start encoding ``batch``; if its partition then has more than ``max_queued`` batches, finish the oldest."""
        batch.prepared = self.encode_pool.submit(self.prepare, batch)
        queue = self.queues[batch.partition]
        queue.append(batch)
        while len(queue) > max_queued:
            self._advance(queue, block=True, until=len(queue) - 1)

    def pending(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self.queues.get(partition, ()))
        return sum(len(queue) for queue in self.queues.values())

    def advance(self) -> None:
        """Move every partition's batches on as far as finished work allows, without waiting."""
        for queue in list(self.queues.values()):
            self._advance(queue, block=False)

    def drain(self, partitions) -> None:
        """Take every batch of ``partitions`` to its end (committed, or dropped if abandoned), waiting as needed."""
        for partition in list(partitions):
            queue = self.queues.get(partition)
            if queue:
                self._advance(queue, block=True)

    def shutdown(self) -> None:
        for pool in (self.encode_pool, self.write_pool, self.upload_pool):
            pool.shutdown(wait=True)

    def _advance(self, queue: deque, *, block: bool, until: int = 0) -> None:
        while len(queue) > until:
            batch = queue[0]
            if batch.upload is None:
                if not block and not batch.prepared.done():
                    return
                if not self._start_upload(batch):
                    queue.popleft()
                    continue
            if not block and not batch.upload.done():
                return
            queue.popleft()
            self._finish(batch)

    def _start_upload(self, batch: CutBatch) -> bool:
        """Probe and start the batch's upload; False if it is dropped instead."""
        if self._dropped(batch):
            return False
        prepared = batch.prepared.result()  # an encoding failure stops the consumer here
        batch.started = time.perf_counter()
        # Fencing probe: re-commit the offset this batch starts at (already the group's position, so nothing moves)
        # and write nothing if the group has moved on. See "Assumption" in consumer.py.
        if prepared.files and not self._commit_or_fence(batch, batch.first_offset, "before writing"):
            return False
        batch.upload = self.write_pool.submit(self._upload, batch, prepared)
        return True

    def _finish(self, batch: CutBatch) -> None:
        prepared = batch.upload.result()  # a failed upload (S3, dead letters) stops the consumer here
        if self.group.aborting:
            log_drop(batch.partition, batch.first_offset, batch.last_offset, "the consumer is stopping on a failure")
            return
        partition, first, last = batch.partition, batch.first_offset, batch.last_offset
        if self.config.hold_commit_file:
            self._hold_commit(partition, first, last)
        if not self._commit_or_fence(batch, last + 1, "after writing"):  # 4.
            return
        metrics.RECORDS.labels(outcome="written").inc(prepared.valid_count)
        metrics.RECORDS.labels(outcome="dead_letter").inc(len(prepared.bad))
        metrics.FILES_WRITTEN.inc(len(prepared.files))
        metrics.BATCH_DURATION.observe(time.perf_counter() - batch.started)
        log.info("partition %d offsets %d-%d: %d written, %d dead-lettered, %d file(s)",
                 partition, first, last, prepared.valid_count, len(prepared.bad), len(prepared.files))

    # -------------------------------------------------------------- encoding (no side effects)
    def prepare(self, batch: CutBatch) -> Prepared:
        records = batch.records
        decoded = bulk.decode_batch(batch.topic, batch.partition, records.offsets, records.keys, records.values,
                                    records.timestamps)
        name = batching.file_name(batch.topic, batch.partition, batch.first_offset, batch.last_offset)
        files = []
        for hour, raw, curated in decoded.groups:
            files.append((self.config.raw_uri.join(hour, name), batching.encode_raw(raw)))
            files.append((self.config.curated_uri.join(hour, name), batching.encode_curated(curated)))
        return Prepared(files, decoded.bad, decoded.valid_count)

    # -------------------------------------------------------------- uploading, on the write pool
    def _upload(self, batch: CutBatch, prepared: Prepared) -> Prepared:
        if prepared.bad:
            for item in prepared.bad:
                self.dead_letters.send(batch.topic, batch.partition, item)
            self.dead_letters.flush()  # 1. dead letters delivered before anything is committed
        if batch.reclean:
            # Safe even if this batch reuses a key: its own file is written after this.
            self.delete(batch.reclean)
        if prepared.files:
            marker = state.Marker(batch.first_offset, batch.last_offset, tuple(str(uri) for uri, _ in prepared.files))
            state.write(state.marker_uri(self.config.raw_uri, self.config.group, batch.topic, batch.partition),
                        marker)  # 2. intent before data
            for future in [self.upload_pool.submit(self._put, uri, data) for uri, data in prepared.files]:
                future.result()  # 3. every file stored (raises on any failure: no commit)
        return prepared

    def _dropped(self, batch: CutBatch) -> bool:
        reason = self.group.abandoned(batch.generation)
        if reason is not None:
            log_drop(batch.partition, batch.first_offset, batch.last_offset, reason)
        return reason is not None

    def _commit_or_fence(self, batch: CutBatch, offset: int, stage: str) -> bool:
        """Commit ``offset``; False if the coordinator says the group has moved on (the generation is then fenced)."""
        try:
            self._commit(batch.topic, batch.partition, offset)
        except KafkaException as exc:
            reason = lost_partition_reason(exc)
            if reason is None:
                raise
            # Not committed. If files were written, the marker names them as uncommitted, so the next owner
            # deletes them before re-reading. Nothing else cut in this generation can be committed.
            log.warning("partition %d: commit of offsets %d-%d rejected (%s) %s: the group has moved on; its "
                        "next owner replays them", batch.partition, batch.first_offset, batch.last_offset, reason,
                        stage)
            self.group.fenced_generation = max(self.group.fenced_generation, batch.generation)
            return False
        return True

    def _commit(self, topic: str, partition: int, offset: int) -> None:
        result = self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        # A per-partition failure may come back in the result rather than as the raised error.
        for tp in result or ():
            if tp.error is not None:
                raise KafkaException(tp.error)

    def delete(self, keys: tuple[str, ...]) -> None:
        list(self.upload_pool.map(lambda k: lake.delete(lake.parse_s3_uri(k)), keys))

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
        with self._puts_lock:
            self._puts += 1
            kill = self.config.kill_after_puts and self._puts >= self.config.kill_after_puts
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)


def log_drop(partition: int, first: int, last: int, reason: str) -> None:
    log.warning("partition %d: dropping uncommitted offsets %d-%d (%s); they are read again from the last commit by "
                "the partition's next owner", partition, first, last, reason)
