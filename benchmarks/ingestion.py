"""Kafka to Parquet in the lake: the batching consumer against a one-record-at-a-time consumer, same broker and S3."""

from __future__ import annotations

from benchmarks.common import fill_topic, rate_until, scrape_counter
from demo.processes import Workloads
from local_services import LocalServices, create_topics, free_port


def curated_uri(svc: LocalServices, mode: str = "batched") -> str:
    return f"s3://{svc.buckets['curated']}/bench-{mode}/transactions/"


def run(svc: LocalServices, workloads: Workloads, *, batched_records: int, naive_records: int) -> dict:
    env = svc.env()
    results = {}
    for mode, count, args in (("batched", batched_records, []), ("naive", naive_records, ["--naive"])):
        topic = f"bench-{mode}"
        create_topics(svc.kafka_bootstrap, [topic])
        fill_topic(env, topic, count, seed=11)
        port = free_port()
        workloads.start(f"ingestion-{mode}", "ingestion", {
            "KAFKA_TOPIC_TRANSACTIONS": topic, "KAFKA_CONSUMER_GROUP": f"bench-{mode}", "METRICS_PORT": str(port),
            "LAKE_RAW_URI": f"s3://{svc.buckets['raw']}/bench-{mode}/transactions/",
            "LAKE_CURATED_URI": curated_uri(svc, mode)}, args=args)

        def written() -> float:
            workloads.check_alive(f"ingestion-{mode}")
            try:
                return scrape_counter(port, "ingestion_records_total", 'outcome="written"')
            except OSError:
                return 0.0

        rate, seconds = rate_until(written, count, timeout_s=600)
        workloads.stop(f"ingestion-{mode}")
        results[mode] = {"records": count, "seconds": round(seconds, 2), "records_per_s": round(rate, 1)}
    results["speedup"] = round(results["batched"]["records_per_s"] / results["naive"]["records_per_s"], 1)
    return results
