"""The project's inference server against `mlflow models serve` on the same registered model.

Same client (demo.traffic), same rows, one row per request, same concurrency, one server process each; the two
servers are measured alternately at each concurrency level so machine noise hits both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from demo.processes import Workloads, http_ready, wait_until
from demo.traffic import request_bodies, run_load
from local_services import LocalServices, free_port

def _mlflow_serve(workloads: Workloads, port: int, model_uri: str) -> None:
    """The baseline as users start it: the model's pyfunc flavour behind MLflow's scoring server, one worker."""
    mlflow = Path(sys.executable).parent / "mlflow"
    with open(workloads.log("mlflow-models-serve"), "ab") as log:
        workloads.running["mlflow-models-serve"] = subprocess.Popen(
            [str(mlflow), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port), "-w", "1"], env=workloads.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)


def run(svc: LocalServices, workloads: Workloads, *, model: str, levels: tuple[int, ...],
        requests: dict[int, int]) -> dict:
    from datagen.generator import generate

    ours, theirs = free_port(), free_port()
    model_uri = f"models:/{model}@champion"
    workloads.start("inference", "inference", {"PORT": str(ours), "HOST": "127.0.0.1", "MODEL_POLL_SECONDS": "60",
                                               "MODEL_NAME": model, "MODEL_URI": model_uri})
    _mlflow_serve(workloads, theirs, model_uri)
    wait_until(lambda: http_ready(f"http://127.0.0.1:{ours}/healthz/ready"), timeout_s=120, what="the inference server")
    wait_until(lambda: http_ready(f"http://127.0.0.1:{theirs}/ping"), timeout_s=180, what="mlflow models serve")

    rows = generate(2000, seed=99)
    targets = {"ours": (f"http://127.0.0.1:{ours}/invocations", request_bodies(rows, 1, "instances")),
               "mlflow": (f"http://127.0.0.1:{theirs}/invocations", request_bodies(rows, 1, "dataframe_records"))}
    for url, bodies in targets.values():  # warm both: first requests pay lazy imports and allocator growth
        run_load(url, bodies, concurrency=8, total=300)
    out = {}
    for level in levels:
        results = {name: run_load(url, bodies, concurrency=level, total=requests[level]).summary()
                   for name, (url, bodies) in targets.items()}
        results["throughput_ratio"] = round(results["ours"]["rps"] / results["mlflow"]["rps"], 2)
        results["p99_ratio"] = round(results["ours"]["p99_ms"] / results["mlflow"]["p99_ms"], 2)
        out[str(level)] = results
    workloads.stop("inference")
    workloads.stop("mlflow-models-serve")
    return out

