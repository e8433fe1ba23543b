"""Training throughput (samples per second): single process against 2-process torchrun (gloo, DDP) on this CPU.

Measured at the default batch size and at a large one: with a model this small, each step's gradient all-reduce
costs about as much as the step itself, so data parallelism only pays once batches are large.
"""

from __future__ import annotations

from demo.processes import Workloads
from local_services import LocalServices


def _samples_per_second(tracking_uri: str, experiment_name: str) -> float:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "train_samples_per_second")
    # The first epoch pays one-off costs (allocations, gloo connection set-up); the steady state is what scales.
    steady = [m.value for m in sorted(history, key=lambda m: m.step)][1:] or [m.value for m in history]
    return sum(steady) / len(steady)


def model_name(mode: str) -> str:
    return f"bench-model-{mode}"


MODES = (("single", "training", []),
         ("torchrun_2", "torch.distributed.run", ["--standalone", "--nproc_per_node=2", "-m", "training"]))


def run(svc: LocalServices, workloads: Workloads, *, epochs: int, curated_uri: str,
        batch_sizes: tuple[int, ...] = (256, 4096)) -> dict:
    results = {}
    for batch in batch_sizes:
        row = {}
        for mode, module, args in MODES:
            name = mode if batch == batch_sizes[0] else f"{mode}-b{batch}"
            workloads.run(f"training-{name}", module, {
                "EPOCHS": str(epochs), "BATCH_SIZE": str(batch), "METRICS_PORT": "0",
                "MLFLOW_EXPERIMENT": f"bench-training-{name}", "MODEL_NAME": model_name(name),
                "LAKE_CURATED_URI": curated_uri, "CHECKPOINT_URI": f"s3://{svc.buckets['artifacts']}/bench/{name}/"},
                args=args, timeout_s=900)
            row[mode] = {"samples_per_s": round(_samples_per_second(svc.mlflow_uri, f"bench-training-{name}"), 1)}
        row["speedup"] = round(row["torchrun_2"]["samples_per_s"] / row["single"]["samples_per_s"], 2)
        results[str(batch)] = row
    return results
