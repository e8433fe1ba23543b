"""Entry point: configuration, data, training, then MLflow registration on rank 0."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import mlflow
import torch.distributed as dist
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from common.metrics import start_metrics_server
from common.schema import FEATURE_NAMES

from . import evaluation, metrics, registry
from .checkpoint import CheckpointStore
from .config import ConfigError, TrainConfig, load_config
from .data import DataError, DataQualityError, QualityReport, prepare, snapshot
from .model import Scorer, export_artifacts, write_config
from .trainer import EpochStats, Hooks, init_distributed, train

log = logging.getLogger("training")

EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 1, 2, 4
"""Exit statuses besides 0: no usable data (1), bad configuration (2), refused by MLflow's permissions (4). Neither
2 nor 4 gets better with a retry."""


class MainHooks(Hooks):
    """Rank 0's reporting: Prometheus on every step, MLflow once per epoch (per-step calls would dominate)."""

    def on_step(self, samples: int) -> None:
        metrics.SAMPLES.inc(samples)

    def on_epoch(self, epoch: int, stats: EpochStats) -> None:
        metrics.LOSS.labels(split="train").set(stats.train_loss)
        metrics.LOSS.labels(split="validation").set(stats.validation_loss)
        metrics.EPOCH.set(epoch + 1)
        metrics.VALIDATION_PR_AUC.set(stats.validation_pr_auc)
        mlflow.log_metrics(
            {
                "train_loss": stats.train_loss,
                "validation_loss": stats.validation_loss,
                "validation_pr_auc": stats.validation_pr_auc,
                "train_samples_per_second": stats.samples_per_second,
            },
            step=epoch,
        )


class RankHooks(Hooks):
    pass


def _log_report(report: QualityReport) -> None:
    mlflow.log_dict(report.to_dict(), "data_quality.json")
    values = {
        "rows_total": report.total_rows,
        "rows_accepted": report.accepted_rows,
        "rows_rejected": report.rejected_rows,
    }
    values.update({f"rows_rejected.{name}": count for name, count in report.fields.items()})
    mlflow.log_metrics(values)


def _start_run(cfg: TrainConfig, store: CheckpointStore) -> bool:
    """Starts or (after a restart) continues this job's MLflow run. True when the run is new."""
    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        mlflow.set_experiment(cfg.experiment)
    except MlflowException as exc:
        # Another job created it between our lookup and our create: use theirs.
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        mlflow.set_experiment(cfg.experiment)
    previous = store.read_json("mlflow_run.json")
    if previous:
        mlflow.start_run(run_id=previous["run_id"])
        log.info("continuing MLflow run %s", previous["run_id"])
        return False
    run = mlflow.start_run()
    store.write_json("mlflow_run.json", {"run_id": run.info.run_id})
    return True


def _finish(cfg: TrainConfig, model, prepared, workdir: str) -> registry.Decision:
    val, test = prepared.splits["validation"], prepared.splits["test"]
    # Scores come from the exported program, so the logged metrics describe exactly what gets served.
    files = export_artifacts(model, workdir, {"threshold": 0.5, "feature_names": FEATURE_NAMES})
    scorer = Scorer(workdir)
    choice = evaluation.choose_threshold(val.labels, scorer.scores(val.features))
    write_config(
        workdir,
        {
            "threshold": choice.threshold,
            "feature_names": FEATURE_NAMES,
            "hidden_units": list(cfg.hidden_units),
            "threshold_rule": "max F1 on the validation split",
        },
    )
    test_scores = scorer.scores(test.features)
    precision, recall = evaluation.precision_recall_at(test.labels, test_scores, choice.threshold)
    test_pr_auc = evaluation.pr_auc(test.labels, test_scores)
    mlflow.log_metrics(
        {
            "threshold": choice.threshold,
            "validation_f1": choice.f1,
            "test_roc_auc": evaluation.roc_auc(test.labels, test_scores),
            "test_pr_auc": test_pr_auc,
            "test_precision": precision,
            "test_recall": recall,
        }
    )
    client = MlflowClient()
    # A job killed after registering but before writing result.json must not register the same weights twice.
    run_id = mlflow.active_run().info.run_id
    version = registry.version_of_run(client, cfg.model_name, run_id) or registry.log_model(
        files, prepared.example_rows, cfg.model_name)
    decision = registry.choose_alias(client, cfg.model_name, version, test_pr_auc, test)
    # Details as run tags (one request); the version carries just the decision and its score.
    mlflow.set_tags(
        {
            "model_version": version,
            "alias": decision.alias,
            "compared_with_version": decision.champion_version or "none",
            "champion_test_pr_auc": "none" if decision.champion_pr_auc is None else f"{decision.champion_pr_auc:.6f}",
        }
    )
    client.set_model_version_tag(cfg.model_name, version, "test_pr_auc", f"{test_pr_auc:.6f}")
    client.set_model_version_tag(cfg.model_name, version, "alias_decision", decision.alias)
    log.info(
        "version %s -> %s (test PR AUC %.4f; champion %s scored %s)",
        version,
        decision.alias,
        test_pr_auc,
        decision.champion_version,
        decision.champion_pr_auc,
    )
    return decision


def run(cfg: TrainConfig) -> int:
    env = init_distributed()
    store = CheckpointStore(cfg.checkpoint_uri, cfg.checkpoints_kept)
    try:
        done = store.read_json("result.json")
        if done:
            log.info("this job already finished: %s; nothing to do", done)
            return 0
        new_run = False
        if env.is_main:
            start_metrics_server(cfg.metrics_port)
            new_run = _start_run(cfg, store)
        manifest = store.read_json("manifest.json") if env.is_main else None
        if env.is_main and manifest is None:
            manifest = {"keys": snapshot(cfg.curated_uri)}
            store.write_json("manifest.json", manifest)
        if env.world_size > 1:
            # Every rank trains on rank 0's file list, even if the lake changed in between.
            shared = [manifest]
            dist.broadcast_object_list(shared, src=0)
            manifest = shared[0]
        try:
            prepared = prepare(
                cfg.curated_uri,
                manifest["keys"],
                train_fraction=cfg.train_fraction,
                validation_fraction=cfg.validation_fraction,
                min_positives=cfg.min_positives,
            )
        except DataQualityError as exc:
            if env.is_main:
                _log_report(exc.prepared.report)
                mlflow.end_run(status="FAILED")
            raise
        if env.is_main:
            _log_report(prepared.report)
            # A restart after mlflow_run.json was written but before the params were may find them missing.
            if new_run or not mlflow.get_run(mlflow.active_run().info.run_id).data.params:
                sizes = {f"{name}_rows": len(s.labels) for name, s in prepared.splits.items()}
                sizes.update({f"{name}_positives": s.positives for name, s in prepared.splits.items()})
                params = {k: v for k, v in vars(cfg).items() if not k.endswith("uri") and k != "metrics_port"}
                params.update(sizes, world_size=env.world_size, curated_files=len(manifest["keys"]))
                mlflow.log_params(params)

        resume_state = store.load_latest()
        model = train(cfg, prepared, store, env, MainHooks() if env.is_main else RankHooks(), resume_state)

        if env.is_main:
            with tempfile.TemporaryDirectory() as workdir:
                decision = _finish(cfg, model, prepared, workdir)
            store.write_json("result.json", {"model_version": decision.version, "alias": decision.alias})
            mlflow.end_run()
        if env.world_size > 1:
            dist.barrier()
        return 0
    finally:
        if env.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        cfg = load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    try:
        return run(cfg)
    except DataError as exc:
        log.error("no usable training data: %s", exc)
        _fail_run()
        return EXIT_FAILED
    except MlflowException as exc:
        if not registry.is_refusal(exc):
            raise
        log.error("%s", registry.refusal_message(exc, cfg.model_name, cfg.experiment))
        _fail_run()
        return EXIT_REFUSED


def _fail_run() -> None:
    """Marks this job's MLflow run FAILED, if one was started (and MLflow still lets us)."""
    active = mlflow.active_run()
    if active is None:
        return
    try:
        mlflow.end_run(status="FAILED")
    except MlflowException as exc:
        log.warning("could not mark MLflow run %s FAILED: %s", active.info.run_id, exc)
