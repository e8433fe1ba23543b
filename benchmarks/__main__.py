"""python -m benchmarks [--format table|json] [--quick]

Measures, side by side in one run on this machine, each workload against its floor (the best this machine and
stack can do) and against what users would otherwise run: inference (this server vs a trivial app on the same
uvicorn stack vs `mlflow models serve`), ingestion (batching consumer vs raw consume of the same backlog vs one
record at a time) and training (single process and 2-process torchrun vs the model's bare compute loop). Prints a
table, or JSON with --format json. Benchmarks are not tests: they assert nothing and do not run in CI.
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
             "  floor = trivial app on the server's uvicorn stack; rss = peak (VmHWM) after the concurrency-32 run",
             f"  {'conc.':>5}  {'server':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'rss MB':>7}"]
    for level, res in r["inference"].items():
        for name in ("ours", "floor", "mlflow"):
            s = res[name]
            rss = f"{s['rss_mb']:>7.0f}" if s.get("rss_mb") is not None else f"{'-':>7}"
            lines.append(f"  {level:>5}  {name:<12} {s['rps']:>8.0f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
                         f"{s['errors']:>6} {rss}")
        lines.append(f"  {'':>5}  {'ours/floor':<12} {res['ratio_to_floor']:>7.2f}x {'':>8} "
                     f"{res['p99_ratio_to_floor']:>7.2f}x")
        lines.append(f"  {'':>5}  {'ours/mlflow':<12} {res['throughput_ratio']:>7.2f}x {'':>8} {res['p99_ratio']:>7.2f}x")
    ing = r["ingestion"]
    ours, raw, naive = ing["ours"], ing["raw_consume"], ing["naive"]
    lines += ["", "Ingestion: Kafka -> Parquet in the lake (raw + curated), steady state from "
                  f"{ours['window'][0]:.0%} to {ours['window'][1]:.0%} of a backlog",
              f"  {'consumer':<34} {'records/s':>10} {'backlog':>9} {'window s':>9} {'rss MB':>7}",
              f"  {'ours (batching)':<34} {ours['records_per_s']:>10.0f} {ours['records']:>9} "
              f"{ours['window_s']:>9.1f} {ours['rss_mb'] or 0:>7.0f}",
              f"  {'floor: raw consume, same client':<34} {raw['records_per_s']:>10.0f} {raw['records']:>9} "
              f"{raw['window_s']:>9.1f}",
              f"  {'naive: one record at a time':<34} {naive['records_per_s']:>10.0f} {naive['records']:>9} "
              f"{naive['window_s']:>9.1f} {naive['rss_mb'] or 0:>7.0f}",
              f"  {'ours/floor':<34} {ing['ratio_to_raw']:>9.3f}x"
              + (f"  (median of rounds {', '.join(f'{x:.3f}' for x in ing['ratio_rounds'])})"
                 if len(ing.get("ratio_rounds", [])) > 1 else ""),
              f"  {'ours/naive':<34} {ing['speedup']:>9.1f}x"]
    lines += ["", "Training: samples per second (steady-state epochs); bound = bare forward+backward+step loop, "
                  "same model, batch, threads",
              f"  {'batch':>6}  {'single':>9} {'torchrun x2':>12} {'bound':>9} {'single/bound':>13} {'x2/single':>10}"]
    for batch, tr in r["training"].items():
        lines.append(f"  {batch:>6}  {tr['single']['samples_per_s']:>9.0f} {tr['torchrun_2']['samples_per_s']:>12.0f} "
                     f"{tr['compute_bound']['samples_per_s']:>9.0f} {tr['fraction_of_bound']:>12.2f}x "
                     f"{tr['speedup']:>9.2f}x")
    lines += ["", f"({r['seconds']:.0f} s in all{', quick run' if r.get('quick') else ''}; a shared machine: "
                  "figures are noisy)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--quick", action="store_true", help="fewer requests and records (a smoke run)")
    args = parser.parse_args(argv)
    quick = args.quick
    workdir = Path(tempfile.mkdtemp(prefix="ml-platform-bench-"))
    started = time.monotonic()
    with LocalServices(workdir / "services", services=("s3", "kafka", "mlflow")) as svc:
        workloads = Workloads(workdir, svc.env())
        try:
            sections = {}
            mark = time.monotonic()
            print("ingestion ...", file=sys.stderr)
            # The window ends before the last partial batches (3 partitions x INGEST_BATCH_RECORDS): a quick run's
            # backlog leaves a shorter window.
            results = {"ingestion": ingestion.run(svc, workloads, batched_records=200_000 if quick else 500_000,
                                                  naive_records=200 if quick else 3000,
                                                  raw_min_seconds=1.0 if quick else 3.0,
                                                  rounds=1 if quick else 3)}
            sections["ingestion"], mark = round(time.monotonic() - mark, 1), time.monotonic()
            print("training ...", file=sys.stderr)
            # Quick: the default batch size only (each training run pays ~15 s of start-up, data load and
            # model registration outside its figure).
            results["training"] = training.run(svc, workloads, epochs=2 if quick else 4,
                                               curated_uri=ingestion.curated_uri(svc),
                                               batch_sizes=(256,) if quick else (256, 4096),
                                               bound_seconds=2.0 if quick else 5.0)
            sections["training"], mark = round(time.monotonic() - mark, 1), time.monotonic()
            print("inference ...", file=sys.stderr)
            # All servers load the model the single-process training run registered.
            results["inference"] = inference.run(svc, workloads, model=training.model_name("single"), levels=LEVELS,
                                                 seconds=1.0 if quick else 8.0)
            sections["inference"] = round(time.monotonic() - mark, 1)
        finally:
            workloads.stop_all()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["quick"] = quick
    results["section_seconds"] = sections
    print(json.dumps(results, indent=2) if args.format == "json" else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
