"""Fixtures for the workload tests.

``workloads/`` is the images' import root (PYTHONPATH=/app), so it goes on sys.path here too. Real services
start once per session (MLflow takes ~14 s); each test isolates itself with unique topic names and lake
prefixes instead of restarting them.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "workloads"
for path in (str(WORKLOADS), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

from local_services import LocalServices, create_topics  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "services: starts real local services (S3, Kafka, MLflow); slower")


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[LocalServices]:
    """S3 + Kafka + MLflow, running for the whole session."""
    with LocalServices(tmp_path_factory.mktemp("services"), services=("s3", "kafka", "mlflow")) as svc:
        yield svc


@pytest.fixture
def unique_prefix() -> str:
    """A short name unique to this test, for topics, consumer groups and lake prefixes."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def workload_env(services: LocalServices, unique_prefix: str) -> dict[str, str]:
    """The CONTRACT.md environment with this test's own topics (3 partitions each), group and lake prefixes.

    Includes the parent environment (PATH etc.), so it can be passed straight to a subprocess.
    """
    p = unique_prefix
    env = {**os.environ, **services.env()}
    env.update(
        {
            "KAFKA_TOPIC_TRANSACTIONS": f"{p}-transactions",
            "KAFKA_TOPIC_PREDICTIONS": f"{p}-predictions",
            "KAFKA_TOPIC_DEAD_LETTER": f"{p}-transactions-dlq",
            "KAFKA_CONSUMER_GROUP": f"{p}-lake-ingestion",
            "LAKE_RAW_URI": f"s3://{services.buckets['raw']}/{p}/transactions/",
            "LAKE_CURATED_URI": f"s3://{services.buckets['curated']}/{p}/transactions/",
            "CHECKPOINT_URI": f"s3://{services.buckets['artifacts']}/{p}/checkpoints/",
            "MLFLOW_EXPERIMENT": f"{p}-fraud-detection",
            "MODEL_NAME": f"{p}-fraud-detector",
            "PYTHONPATH": os.pathsep.join([str(WORKLOADS), str(REPO)]),
            "METRICS_PORT": "0",
        }
    )
    create_topics(
        services.kafka_bootstrap,
        [env["KAFKA_TOPIC_TRANSACTIONS"], env["KAFKA_TOPIC_PREDICTIONS"], env["KAFKA_TOPIC_DEAD_LETTER"]],
    )
    return env


@pytest.fixture
def apply_env(workload_env: dict[str, str], monkeypatch) -> dict[str, str]:
    """workload_env applied to this process's os.environ (undone after the test), for in-process calls."""
    for key, value in workload_env.items():
        monkeypatch.setenv(key, value)
    return workload_env
