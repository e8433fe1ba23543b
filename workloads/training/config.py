"""Training configuration, read from the environment only (see workloads/CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.env import ConfigError, Env
from common.lake import parse_s3_uri

__all__ = ["ConfigError", "TrainConfig", "load_config"]


@dataclass(frozen=True)
class TrainConfig:
    curated_uri: str
    checkpoint_uri: str
    tracking_uri: str
    experiment: str
    model_name: str
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    hidden_units: tuple[int, ...]
    dropout: float
    seed: int
    checkpoint_every_steps: int
    checkpoints_kept: int
    min_positives: int
    metrics_port: int
    # Share of the transaction_id hash space per split; the rest is test. Fixed shares keep a transaction in the
    # same split however much data arrives later, so a model is never tested on rows an earlier model trained on.
    train_fraction: float
    validation_fraction: float


def _units(env: Env, name: str, default: str) -> tuple[int, ...]:
    raw = env.str(name, default)
    try:
        units = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        units = ()
    if not units or any(u <= 0 for u in units):
        env.problems.append(f"{name} must be comma-separated positive integers (e.g. 64,32), got {raw!r}")
        return tuple(int(p) for p in default.split(","))
    return units


def _s3_prefix(env: Env, name: str, hint: str) -> str:
    raw = env.str(name, hint=hint)
    if raw:
        try:
            return str(parse_s3_uri(raw, name=name, prefix=True))
        except ValueError as exc:
            env.problems.append(str(exc))
    return raw


def load_config(environ: Mapping[str, str] | None = None) -> TrainConfig:
    """Raises ConfigError listing every missing or bad variable."""
    env = Env(environ)
    curated = _s3_prefix(env, "LAKE_CURATED_URI", "s3://<curated bucket>/transactions/")
    checkpoint = _s3_prefix(env, "CHECKPOINT_URI", "s3://<artifacts bucket>/checkpoints/<job name>/")
    tracking = env.str("MLFLOW_TRACKING_URI", hint="the MLflow server URL, e.g. http://mlflow:5000")
    if tracking and not tracking.startswith(("http://", "https://")):
        env.problems.append(f"MLFLOW_TRACKING_URI must be an http(s):// URL, got {tracking!r}")
    config = TrainConfig(
        curated_uri=curated,
        checkpoint_uri=checkpoint,
        tracking_uri=tracking,
        experiment=env.str("MLFLOW_EXPERIMENT", "fraud-detection"),
        model_name=env.str("MODEL_NAME", "fraud-detector"),
        epochs=env.int("EPOCHS", 5, minimum=1, maximum=10_000),
        batch_size=env.int("BATCH_SIZE", 256, minimum=1, maximum=1_000_000),
        learning_rate=env.float("LEARNING_RATE", 0.003, minimum=1e-9, maximum=10.0),
        weight_decay=env.float("WEIGHT_DECAY", 1e-4, minimum=0.0, maximum=1.0),
        hidden_units=_units(env, "HIDDEN_UNITS", "64,32"),
        dropout=env.float("DROPOUT", 0.1, minimum=0.0, maximum=0.9),
        seed=env.int("SEED", 42, minimum=0, maximum=2**63 - 1),
        checkpoint_every_steps=env.int("CHECKPOINT_EVERY_STEPS", 200, minimum=1),
        checkpoints_kept=env.int("CHECKPOINTS_KEPT", 2, minimum=2, maximum=100),
        min_positives=env.int("MIN_POSITIVES", 20, minimum=1),
        metrics_port=env.int("METRICS_PORT", 9100, minimum=0, maximum=65535),
        train_fraction=env.float("TRAIN_FRACTION", 0.7, minimum=0.05, maximum=0.95),
        validation_fraction=env.float("VALIDATION_FRACTION", 0.15, minimum=0.01, maximum=0.9),
    )
    if config.train_fraction + config.validation_fraction >= 1.0:
        env.problems.append(
            "TRAIN_FRACTION + VALIDATION_FRACTION must be < 1 so some data is left for the test split, got "
            f"{config.train_fraction} + {config.validation_fraction}"
        )
    env.check()
    return config
