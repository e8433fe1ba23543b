"""Training throughput (samples per second): single process and 2-process torchrun (gloo, DDP) on this CPU,
against the compute bound of the same model at the same batch size and threads (benchmarks/train_bound.py).

Measured at the default batch size and at a large one: with a model this small, each step's gradient all-reduce
costs about as much as the step itself, so data parallelism only pays once batches are large.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from demo.processes import StepError, Workloads
from local_services import LocalServices

REPO = Path(__file__).resolve().parents[1]


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


def compute_bound(workloads: Workloads, batch: int, seconds: float) -> dict:
    """The bare step loop, in its own process with the trainer's environment (hence the same torch threads)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_bound", "--batch-size", str(batch),
                           "--seconds", str(seconds)], cwd=REPO, env=workloads.env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise StepError(f"train_bound failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(svc: LocalServices, workloads: Workloads, *, epochs: int, curated_uri: str,
        batch_sizes: tuple[int, ...] = (256, 4096), bound_seconds: float = 5.0) -> dict:
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
        row["compute_bound"] = compute_bound(workloads, batch, bound_seconds)
        row["speedup"] = round(row["torchrun_2"]["samples_per_s"] / row["single"]["samples_per_s"], 2)
        row["fraction_of_bound"] = round(row["single"]["samples_per_s"] / row["compute_bound"]["samples_per_s"], 3)
        results[str(batch)] = row
    return results
