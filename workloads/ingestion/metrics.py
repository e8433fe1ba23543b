"""Ingestion metrics, names and labels exactly as in CONTRACT.md."""

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("ingestion_records", "Records ingested, by outcome", ["outcome"])  # exported as *_total
FILES_WRITTEN = Counter("ingestion_files_written", "Parquet files written to the lake")
BATCH_DURATION = Histogram(
    "ingestion_batch_duration_seconds",
    "Time to write and commit one partition batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge("ingestion_consumer_lag", "Records behind the partition's end", ["topic", "partition"])

for outcome in ("written", "dead_letter"):
    RECORDS.labels(outcome=outcome)
