"""python -m benchmarks [--format table|json] [--quick]

Measures, side by side in one run on this machine: inference (this server vs `mlflow models serve`), ingestion
(batching consumer vs one record at a time) and training (single process vs 2-process torchrun). Prints a table,
or JSON with --format json. Benchmarks are not tests: they assert nothing and do not run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workloads"), str(REPO)]

from benchmarks import inference, ingestion, training  # noqa: E402
from demo.processes import Workloads  # noqa: E402
from local_services import LocalServices  # noqa: E402

LEVELS = (1, 8, 32)


def table(r: dict) -> str:
    lines = ["", "Inference: one row per request, same client and rows, one server process each",
             f"  {'concurrency':>11}  {'server':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"]
    for level, res in r["inference"].items():
        for name, label in (("ours", "this server"), ("mlflow", "mlflow models serve")):
            s = res[name]
            lines.append(f"  {level:>11}  {label:<20} {s['rps']:>8.0f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
                         f"{s['errors']:>6}")
        lines.append(f"  {'':>11}  {'ratio (ours/mlflow)':<20} {res['throughput_ratio']:>7.2f}x {'':>8} "
                     f"{res['p99_ratio']:>7.2f}x")
    ing = r["ingestion"]
    lines += ["", "Ingestion: Kafka -> Parquet in the lake (raw + curated)",
              f"  batching consumer      {ing['batched']['records_per_s']:>10.0f} records/s "
              f"({ing['batched']['records']} records)",
              f"  one record at a time   {ing['naive']['records_per_s']:>10.0f} records/s "
              f"({ing['naive']['records']} records)",
              f"  speed-up               {ing['speedup']:>10.1f}x"]
    lines += ["", "Training: samples per second (steady-state epochs)",
              f"  {'batch size':>10}  {'single process':>15} {'torchrun x2':>12} {'speed-up':>9}"]
    for batch, tr in r["training"].items():
        lines.append(f"  {batch:>10}  {tr['single']['samples_per_s']:>15.0f} {tr['torchrun_2']['samples_per_s']:>12.0f} "
                     f"{tr['speedup']:>8.2f}x")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--quick", action="store_true", help="fewer requests and records (a smoke run)")
    args = parser.parse_args(argv)
    scale = 0.2 if args.quick else 1.0
    workdir = Path(tempfile.mkdtemp(prefix="ml-platform-bench-"))
    started = time.monotonic()
    with LocalServices(workdir / "services", services=("s3", "kafka", "mlflow")) as svc:
        workloads = Workloads(workdir, svc.env())
        try:
            print("ingestion ...", file=sys.stderr)
            results = {"ingestion": ingestion.run(svc, workloads, batched_records=int(50000 * scale),
                                                  naive_records=int(3000 * scale))}
            print("training ...", file=sys.stderr)
            results["training"] = training.run(svc, workloads, epochs=4, curated_uri=ingestion.curated_uri(svc))
            print("inference ...", file=sys.stderr)
            # Both servers load the model the single-process training run registered.
            results["inference"] = inference.run(
                svc, workloads, model=training.model_name("single"), levels=LEVELS,
                requests={1: int(1500 * scale), 8: int(4000 * scale), 32: int(6000 * scale)})
        finally:
            workloads.stop_all()
    results["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2) if args.format == "json" else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
