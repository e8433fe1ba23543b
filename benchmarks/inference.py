"""The project's inference server against its floor and against `mlflow models serve`, on the same model.

floor: a trivial ASGI app answering a fixed prediction body on exactly the server's uvicorn stack
(benchmarks/floor_app.py), so ours / floor is the share of what this HTTP stack can do that the server keeps.
Same client (demo.traffic), same rows, one row per request, same concurrency, one server process each. At each
concurrency level the three are measured in two rounds, in order and then in reverse, so machine noise (this
machine is shared) hits all of them alike; each figure combines its two rounds.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.common import is_python, peak_rss_mb
from demo.processes import StepError, Workloads, http_ready, log_tail, wait_until
from demo.traffic import LoadResult, request_bodies, run_load
from local_services import LocalServices, free_port

REPO = Path(__file__).resolve().parents[1]
NAMES = ("ours", "floor", "mlflow")


def _mlflow_serve(workloads: Workloads, port: int, model_uri: str) -> None:
    """The baseline as users start it: the model's pyfunc flavour behind MLflow's scoring server, one worker."""
    mlflow = Path(sys.executable).parent / "mlflow"
    with open(workloads.log("mlflow-models-serve"), "ab") as log:
        workloads.running["mlflow-models-serve"] = subprocess.Popen(
            [str(mlflow), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port), "-w", "1"], env=workloads.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)


def _floor(workloads: Workloads, port: int) -> None:
    with open(workloads.log("floor"), "ab") as log:
        workloads.running["floor"] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.floor_app", "--port", str(port)], cwd=REPO, env=workloads.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _merge(parts: list[LoadResult]) -> dict:
    merged = LoadResult(requests=sum(p.requests for p in parts), seconds=sum(p.seconds for p in parts),
                        latencies_s=[t for p in parts for t in p.latencies_s],
                        statuses=sum((p.statuses for p in parts), Counter()),
                        model_versions=sum((p.model_versions for p in parts), Counter()))
    summary = merged.summary()
    return {k: summary[k] for k in ("requests", "errors", "seconds", "rps", "p50_ms", "p95_ms", "p99_ms", "statuses")}


def run(svc: LocalServices, workloads: Workloads, *, model: str, levels: tuple[int, ...],
        seconds: float) -> dict:
    """`seconds`: about how long each server is loaded at each level (two rounds of half of it)."""
    from datagen.generator import generate

    ports = {name: free_port() for name in NAMES}
    model_uri = f"models:/{model}@champion"
    workloads.start("inference", "inference", {"PORT": str(ports["ours"]), "HOST": "127.0.0.1",
                                               "MODEL_POLL_SECONDS": "60", "MODEL_NAME": model,
                                               "MODEL_URI": model_uri})
    _floor(workloads, ports["floor"])
    _mlflow_serve(workloads, ports["mlflow"], model_uri)
    processes = {"ours": "inference", "floor": "floor", "mlflow": "mlflow-models-serve"}
    for name, path, what in (("ours", "/healthz/ready", "the inference server"), ("floor", "/", "the floor app"),
                             ("mlflow", "/ping", "mlflow models serve")):
        def ready(name=name, path=path) -> bool:
            proc = workloads.running[processes[name]]
            if proc.poll() is not None:
                log = workloads.log(processes[name])
                raise StepError(f"{name} server exited with code {proc.returncode}; log {log}:\n{log_tail(log)}")
            return http_ready(f"http://127.0.0.1:{ports[name]}{path}")
        wait_until(ready, timeout_s=180, what=what)
    # `python -m inference` and the floor are the serving python processes themselves; `mlflow models serve` is a
    # launcher whose serving worker is a descendant, so its peak is the largest in its process tree.
    for name in ("ours", "floor"):
        if not is_python(workloads.running[processes[name]].pid):
            raise StepError(f"{name}: pid {workloads.running[processes[name]].pid} is not the python server process")

    rows = generate(2000, seed=99)
    bodies = {"ours": request_bodies(rows, 1, "instances"), "floor": request_bodies(rows, 1, "instances"),
              "mlflow": request_bodies(rows, 1, "dataframe_records")}
    urls = {name: f"http://127.0.0.1:{port}/invocations" for name, port in ports.items()}
    for name in NAMES:  # warm all: first requests pay lazy imports and allocator growth
        run_load(urls[name], bodies[name], concurrency=8, total=300)
    out = {}
    for level in levels:
        # Each server gets as many requests as it serves in about `seconds` (from a short probe at this level),
        # so connection set-up and the client's start never weigh on a figure, and the slow baseline does not
        # stretch the run; the rate, not the count, is what is compared.
        counts = {}
        for name in NAMES:
            probe = run_load(urls[name], bodies[name], concurrency=level, total=max(4 * level, 50))
            counts[name] = int(min(max(probe.rps * seconds / 2, 5 * level, 100), 500_000))
        parts: dict[str, list[LoadResult]] = {name: [] for name in NAMES}
        for order in (NAMES, NAMES[::-1]):
            for name in order:
                parts[name].append(run_load(urls[name], bodies[name], concurrency=level, total=counts[name]))
        results = {name: _merge(parts[name]) for name in NAMES}
        ours, floor, mlflow = results["ours"], results["floor"], results["mlflow"]
        results["ratio_to_floor"] = round(ours["rps"] / floor["rps"], 3)
        results["throughput_ratio"] = round(ours["rps"] / mlflow["rps"], 2)
        results["p99_ratio_to_floor"] = round(ours["p99_ms"] / floor["p99_ms"], 2)
        results["p99_ratio"] = round(ours["p99_ms"] / mlflow["p99_ms"], 2)
        out[str(level)] = results
    # Peak resident memory since start, read right after the last (highest-concurrency) load.
    for name in NAMES:
        rss = peak_rss_mb(workloads.running[processes[name]].pid, tree=name == "mlflow")
        for level in out:
            out[level][name]["rss_mb"] = rss
    for name in processes.values():
        workloads.stop(name)
    return out
