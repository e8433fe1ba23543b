"""Ingestion settings, all from the environment (CONTRACT.md plus the INGEST_* tuning knobs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.env import Env
from common.lake import S3Uri, parse_s3_uri


@dataclass(frozen=True)
class IngestConfig:
    topic: str
    dead_letter_topic: str
    group: str
    raw_uri: S3Uri
    curated_uri: S3Uri
    batch_records: int
    batch_seconds: float
    session_timeout_ms: int
    upload_threads: int
    encode_threads: int
    metrics_port: int
    # Fault injection for the crash-recovery tests: SIGKILL itself after this many data-file PUTs (0 = off).
    kill_after_puts: int
    # Fault injection for the rebalance test: while this file exists, a batch whose files are stored waits
    # before its commit, as behind a slow store or a starved CPU ("" = off).
    hold_commit_file: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IngestConfig":
        env = Env(environ)
        uris = {}
        for name in ("LAKE_RAW_URI", "LAKE_CURATED_URI"):
            value = env.str(name, hint="s3://<bucket>/transactions/")
            if value:
                try:
                    uris[name] = parse_s3_uri(value, name=name, prefix=True)
                except ValueError as exc:
                    env.problems.append(str(exc))
        config = cls(
            topic=env.str("KAFKA_TOPIC_TRANSACTIONS", "transactions"),
            dead_letter_topic=env.str("KAFKA_TOPIC_DEAD_LETTER", "transactions-dlq"),
            group=env.str("KAFKA_CONSUMER_GROUP", "lake-ingestion"),
            raw_uri=uris.get("LAKE_RAW_URI", S3Uri("invalid", "")),
            curated_uri=uris.get("LAKE_CURATED_URI", S3Uri("invalid", "")),
            batch_records=env.int("INGEST_BATCH_RECORDS", 20000, minimum=1, maximum=1_000_000),
            batch_seconds=env.float("INGEST_BATCH_SECONDS", 30.0, minimum=0.05, maximum=3600),
            session_timeout_ms=env.int("INGEST_SESSION_TIMEOUT_MS", 6000, minimum=1000, maximum=300_000),
            upload_threads=env.int("INGEST_UPLOAD_THREADS", 8, minimum=1, maximum=64),
            # Decoding and Parquet encoding release the GIL for most of their work: one thread per core is right.
            encode_threads=env.int("INGEST_ENCODE_THREADS", 2, minimum=1, maximum=64),
            metrics_port=env.int("METRICS_PORT", 9100, minimum=0, maximum=65535),
            kill_after_puts=env.int("INGEST_FAULT_KILL_AFTER_PUTS", 0, minimum=0),
            hold_commit_file=env.str("INGEST_FAULT_HOLD_COMMIT_FILE", ""),
        )
        if config.topic == config.dead_letter_topic:
            env.problems.append("KAFKA_TOPIC_DEAD_LETTER must differ from KAFKA_TOPIC_TRANSACTIONS")
        env.check()
        return config
