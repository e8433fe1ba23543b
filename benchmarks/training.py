"""Training throughput (samples per second): single process against 2-process torchrun (gloo, DDP) on this CPU."""

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


def run(svc: LocalServices, workloads: Workloads, *, epochs: int, curated_uri: str) -> dict:
    results = {}
    for mode, module, args in (("single", "training", []),
                               ("torchrun_2", "torch.distributed.run",
                                ["--standalone", "--nproc_per_node=2", "-m", "training"])):
        workloads.run(f"training-{mode}", module, {
            "EPOCHS": str(epochs), "METRICS_PORT": "0", "MLFLOW_EXPERIMENT": f"bench-training-{mode}",
            "MODEL_NAME": model_name(mode), "LAKE_CURATED_URI": curated_uri,
            "CHECKPOINT_URI": f"s3://{svc.buckets['artifacts']}/bench/{mode}/"}, args=args, timeout_s=900)
        results[mode] = {"samples_per_s": round(_samples_per_second(svc.mlflow_uri, f"bench-training-{mode}"), 1)}
    results["speedup"] = round(results["torchrun_2"]["samples_per_s"] / results["single"]["samples_per_s"], 2)
    return results
