"""Kafka to Parquet in the lake, at steady state over a backlog: the batching consumer against the raw consume
rate of the same broker and client (floor), and against a one-record-at-a-time consumer (naive), same S3.

Each consumer starts on a topic already holding its whole backlog. Its rate is measured from 10 % of the backlog
written (read from its own Prometheus counter) to a mark that all but the records partial batches can hold have
reached (at most 90 %), so process start-up, the group join and the last partial batches (which wait on batch age,
INGEST_BATCH_SECONDS) are all outside the window; the batch age is also set far beyond the run, so every batch inside
the window is cut by size. After the mark the consumer is stopped with SIGTERM, which writes and commits what it
holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import fill_topic, is_python, peak_rss_mb, scrape_counter, steady_rate
from demo.processes import StepError, Workloads
from local_services import LocalServices, create_topics, free_port
from local_services.services import TOPIC_PARTITIONS

REPO = Path(__file__).resolve().parents[1]
LOW, HIGH = 0.1, 0.9
MIN_WINDOW = 0.3  # of the backlog


def curated_uri(svc: LocalServices, mode: str = "batched") -> str:
    return f"s3://{svc.buckets['curated']}/bench-{mode}/transactions/"


def _consume(svc: LocalServices, workloads: Workloads, mode: str, topic: str, count: int, args: list[str],
             extra: dict[str, str], high: float = HIGH) -> dict:
    port = free_port()
    env = {"KAFKA_TOPIC_TRANSACTIONS": topic, "KAFKA_CONSUMER_GROUP": f"bench-{mode}", "METRICS_PORT": str(port),
           "LAKE_RAW_URI": f"s3://{svc.buckets['raw']}/bench-{mode}/transactions/",
           "LAKE_CURATED_URI": curated_uri(svc, mode), **extra}
    name = f"ingestion-{mode}"
    proc = workloads.start(name, "ingestion", env, args=args)

    def written() -> float:
        workloads.check_alive(name)
        try:
            return scrape_counter(port, "ingestion_records_total", 'outcome="written"')
        except OSError:
            return 0.0

    result = steady_rate(written, count, timeout_s=900, low=LOW, high=high)
    # `python -m ingestion` is the consumer process itself (no wrapper): its peak resident set over the backlog.
    if not is_python(proc.pid):
        raise StepError(f"{name}: pid {proc.pid} is not the python consumer process")
    result["rss_mb"] = peak_rss_mb(proc.pid)
    workloads.stop(name, grace_s=120)
    return {"records": count, **result}


def run(svc: LocalServices, workloads: Workloads, *, batched_records: int, naive_records: int,
        raw_min_seconds: float = 3.0, rounds: int = 1) -> dict:
    from ingestion.config import IngestConfig

    env = svc.env()
    # The consumer's own batch size, as it will read it from this environment (its default unless tuned).
    extra = {"INGEST_BATCH_SECONDS": "3600"}
    config = IngestConfig.from_env({**workloads.env, **extra, "LAKE_RAW_URI": f"s3://{svc.buckets['raw']}/x/",
                                    "LAKE_CURATED_URI": curated_uri(svc)})
    stuck = TOPIC_PARTITIONS * config.batch_records  # at most this many records wait in partial batches
    # The window ends where every partition still has more than a batch to come (20 % to spare), so batch age never
    # lands in it.
    high = min(HIGH, 1 - 1.2 * stuck / batched_records)
    if high - LOW < MIN_WINDOW:
        raise ValueError(f"batched_records={batched_records}: too few for {stuck} records in partial batches; the "
                         f"window would span {max(high - LOW, 0):.0%} of the backlog, under {MIN_WINDOW:.0%}")
    results = {}

    topic = "bench-batched"
    create_topics(svc.kafka_bootstrap, [topic])
    fill_s = fill_topic(env, topic, batched_records, seed=11)
    print(f"  filled {batched_records} records in {fill_s:.1f} s", file=sys.stderr)
    # The floor and ours take turns over the same backlog (each on its own consumer group), so a slow spell of this
    # shared machine lands on both; the ratio is the median of the rounds' ratios.
    raws, ours = [], []
    for round_ in range(rounds):
        raw = subprocess.run([sys.executable, "-m", "benchmarks.raw_consume", "--topic", topic,
                              "--group", f"bench-raw-{round_}", "--count", str(batched_records), "--low", str(LOW),
                              "--high", str(round(high, 3)), "--min-seconds", str(raw_min_seconds)],
                             cwd=REPO, env=workloads.env, capture_output=True, text=True, timeout=900)
        if raw.returncode != 0:
            raise StepError(f"raw consume failed ({raw.returncode}):\n{raw.stderr[-2000:]}")
        raws.append(json.loads(raw.stdout.strip().splitlines()[-1]))
        # Round 0 keeps the plain name: the training benchmark reads its curated prefix (curated_uri).
        ours.append(_consume(svc, workloads, "batched" if round_ == 0 else f"batched-{round_}", topic,
                             batched_records, [], extra, high))
    ratios = [o["records_per_s"] / r["records_per_s"] for o, r in zip(ours, raws)]
    middle = sorted(range(rounds), key=lambda i: ratios[i])[(rounds - 1) // 2]  # the lower median
    results["raw_consume"] = {**raws[middle], "rounds": [r["records_per_s"] for r in raws]}
    results["ours"] = {**ours[middle], "rounds": [o["records_per_s"] for o in ours],
                       "rss_mb": max(o["rss_mb"] or 0 for o in ours)}
    results["ours"]["fill_s"] = round(fill_s, 1)
    results["ours"]["batch_records"] = config.batch_records

    topic = "bench-naive"
    create_topics(svc.kafka_bootstrap, [topic])
    fill_topic(env, topic, naive_records, seed=11)
    results["naive"] = _consume(svc, workloads, "naive", topic, naive_records, ["--naive"], {})

    results["ratio_to_raw"] = round(ratios[middle], 3)
    results["ratio_rounds"] = [round(r, 3) for r in ratios]
    results["speedup"] = round(results["ours"]["records_per_s"] / results["naive"]["records_per_s"], 1)
    return results
