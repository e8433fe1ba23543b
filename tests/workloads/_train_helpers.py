"""Helpers shared by the training and inference tests: lake fixtures and running `python -m training`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "workloads"


def training_env(services, **overrides: str) -> dict[str, str]:
    """A complete training environment with its own lake prefix, checkpoint prefix, experiment and model."""
    p = "t" + uuid.uuid4().hex[:10]
    env = {**os.environ, **services.env()}
    env.update(
        {
            "LAKE_CURATED_URI": f"s3://{services.buckets['curated']}/{p}/transactions/",
            "CHECKPOINT_URI": f"s3://{services.buckets['artifacts']}/{p}/checkpoints/",
            "MLFLOW_EXPERIMENT": f"{p}-fraud",
            "MODEL_NAME": f"{p}-fraud-detector",
            "PYTHONPATH": os.pathsep.join([str(WORKLOADS), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "METRICS_PORT": "0",
            "EPOCHS": "3",
            "BATCH_SIZE": "64",
            "LEARNING_RATE": "0.01",
            "HIDDEN_UNITS": "16,8",
            "SEED": "7",
            "CHECKPOINT_EVERY_STEPS": "20",
            "MIN_POSITIVES": "10",
        }
    )
    env.update(overrides)
    return env


def s3_env(services) -> None:
    """common.lake reads S3_ENDPOINT_URL and credentials from os.environ; point this process at moto."""
    for key, value in services.env().items():
        if key.startswith(("AWS_", "S3_", "MLFLOW_S3")):
            os.environ[key] = value


def write_curated(uri: str, records: Sequence[Mapping], files: int = 2) -> None:
    """Writes records as Parquet files under date=/hour= partitions, as ingestion does."""
    from common.lake import parse_s3_uri, put_bytes, table_to_parquet_bytes
    from common.schema import records_to_table

    prefix = parse_s3_uri(uri, prefix=True)
    chunk = -(-len(records) // files)
    for i in range(files):
        part = records[i * chunk : (i + 1) * chunk]
        if part:
            key = prefix.join(f"date=2026-11-0{i % 9 + 1}", "hour=00", f"part-{i:04d}.parquet")
            put_bytes(key, table_to_parquet_bytes(records_to_table(part)))


def put_table(uri: str, name: str, table) -> None:
    from common.lake import parse_s3_uri, put_bytes, table_to_parquet_bytes

    put_bytes(parse_s3_uri(uri, prefix=True).join("date=2026-11-09", "hour=01", name), table_to_parquet_bytes(table))


def run_training(env: Mapping[str, str], *, timeout: float = 120, torchrun: int = 0) -> subprocess.CompletedProcess:
    if torchrun:
        argv = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
            "-m", "training",
        ]
    else:
        argv = [sys.executable, "-m", "training"]
    return subprocess.run(argv, env=dict(env), cwd=WORKLOADS, capture_output=True, text=True, timeout=timeout)


def final_weights(env: Mapping[str, str]) -> dict:
    from training.checkpoint import CheckpointStore

    state = CheckpointStore(env["CHECKPOINT_URI"]).load_latest()
    assert state is not None, f"no checkpoint under {env['CHECKPOINT_URI']}"
    return state["model"]
