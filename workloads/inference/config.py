"""Server configuration from the environment (see workloads/CONTRACT.md and inference/README.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from common.env import Env

_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    tracking_uri: str
    model_name: str  # registered model name; also the `model` label of every metric
    alias: str | None  # followed when set: the server polls it and swaps to the version it points at
    version: str | None  # pinned version when MODEL_URI names one
    poll_seconds: float
    max_batch_size: int
    max_batch_delay_s: float
    max_body_bytes: int
    max_rows_per_request: int
    drain_seconds: float
    torch_threads: int
    prediction_logging: bool
    predictions_topic: str


def load_config(environ: Mapping[str, str] | None = None) -> ServerConfig:
    env = Env(environ)
    model_name = env.str("MODEL_NAME", "fraud-detector")
    uri = env.str("MODEL_URI", f"models:/{model_name}@champion")
    match = _MODEL_URI.fullmatch(uri)
    if not match:
        env.problems.append(
            f"MODEL_URI must be models:/<name>@<alias> or models:/<name>/<version>, got {uri!r}"
        )
        name, alias, version = model_name, "champion", None
    else:
        name, alias, version = match["name"], match["alias"], match["version"]
    tracking = env.str("MLFLOW_TRACKING_URI", hint="the MLflow server URL, e.g. http://mlflow:5000")
    config = ServerConfig(
        host=env.str("HOST", "0.0.0.0"),
        port=env.int("PORT", 8080, minimum=1, maximum=65535),
        tracking_uri=tracking,
        model_name=name,
        alias=alias,
        version=version,
        poll_seconds=env.float("MODEL_POLL_SECONDS", 30.0, minimum=0.1, maximum=86400),
        max_batch_size=env.int("MAX_BATCH_SIZE", 256, minimum=1, maximum=100_000),
        max_batch_delay_s=env.float("MAX_BATCH_DELAY_MS", 2.0, minimum=0.0, maximum=10_000) / 1000.0,
        max_body_bytes=env.int("MAX_BODY_BYTES", 1 << 20, minimum=64, maximum=1 << 30),
        max_rows_per_request=env.int("MAX_ROWS_PER_REQUEST", 1000, minimum=1, maximum=1_000_000),
        drain_seconds=env.float("DRAIN_SECONDS", 5.0, minimum=0.0, maximum=600),
        torch_threads=env.int("TORCH_NUM_THREADS", 1, minimum=1, maximum=256),
        prediction_logging=env.bool("PREDICTION_LOGGING", False),
        predictions_topic=env.str("KAFKA_TOPIC_PREDICTIONS", "predictions"),
    )
    env.check()
    return config
