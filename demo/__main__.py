"""python -m demo [--fast] [--format text|json] [--hold] [--workdir DIR] [--port SERVICE=PORT ...]

Runs the platform's ML lifecycle end to end on 127.0.0.1 and prints a summary (text, or JSON with --format json).
Everything it starts is stopped at the end, on Ctrl-C and on failure; --hold keeps the services up until Ctrl-C so
the MLflow UI and Prometheus can be browsed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workloads"), str(REPO)]

from demo import lifecycle  # noqa: E402
from demo.processes import StepError  # noqa: E402
from demo.progress import Progress  # noqa: E402
from local_services import ServiceError  # noqa: E402

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def text_summary(s: dict) -> str:
    serving, drift = s["serving"], s["drift"]
    lines = ["", "ML platform demo: the whole lifecycle ran on local services", ""]
    d = s["data"]
    lines.append(f"  data       {d['transactions']} transactions + {d['drifted_transactions']} drifted into Kafka; "
                 f"{d['malformed_to_dead_letter']} malformed sent to the dead-letter topic")
    lake = ", ".join(f"{area}: {v['parquet_files']} Parquet files" for area, v in d["lake"].items())
    lines.append(f"  lake       {lake}")
    teams = "; ".join(f"{t} ({v['user']}) owns {', '.join(v['models'])}" for t, v in s["teams"].items())
    lines.append(f"  teams      {teams}")
    served = next(iter(s["teams"].values()))["models"][0]
    for name, versions in [(served, s["models"]), *s["other_models"].items()]:
        for m in versions:
            metrics = ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in m["metrics"].items())
            aliases = ("@" + ", @".join(m["aliases"])) if m["aliases"] else ""
            lines.append(f"  {name:<16} v{m['version']:<3} {aliases:<12} {metrics}")
            if "compared_with" in m:
                c = m["compared_with"]
                score = c["test_pr_auc_same_data"]
                score = f"{float(score):.3f}" if score not in (None, "none") else "not evaluated"
                lines.append(f"  {'':<35} promotion test: v{c['version']} scored pr_auc {score} on the same test data")
    lines.append(f"  serving    {serving['requests']} predictions, {serving['errors']} errors, {serving['rps']:.0f} req/s, "
                 f"p50 {serving['p50_ms']:.1f} ms, p95 {serving['p95_ms']:.1f} ms, p99 {serving['p99_ms']:.1f} ms")
    drifted = [f"{k} {v:.2f}" for k, v in drift["psi"].items() if v > (drift["threshold"] or 0)]
    lines.append(f"  drift      {'detected' if drift['detected'] else 'not detected'}"
                 f"{' (PSI ' + ', '.join(drifted) + ')' if drifted else ''}; champion now v{s['champion']}")
    r = s["refused"]
    lines.append(f"  access     {r['user']} registering {r['model']}: refused, HTTP {r['status']} {r['error_code']} "
                 f"({r['endpoint']}); {r['model']}@champion still v{r['champion_after']}")
    w = s["where"]
    lines += ["", "  where to look (while --hold keeps them up):",
              f"    MLflow UI   {w['mlflow_ui']}",
              f"    Prometheus  {w['prometheus'] or 'not installed (apt-get install prometheus)'}",
              f"    lake        {w['s3_endpoint']}  buckets {', '.join(w['lake_buckets'].values())}",
              f"    logs        {w['logs']}", ""]
    return "\n".join(lines)


def port_option(text: str) -> tuple[str, int]:
    service, _, port = text.partition("=")
    if service not in ("s3", "kafka", "mlflow", "prometheus") or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--port: expected SERVICE=PORT with SERVICE one of s3, kafka, mlflow, "
                                         f"prometheus and PORT 1-65535, got {text!r}")
    return service, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="less data and traffic (the test-suite variant)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--hold", action="store_true", help="keep services running until Ctrl-C")
    parser.add_argument("--workdir", type=Path, help="where logs and service data go (default: a temp dir)")
    parser.add_argument("--port", type=port_option, action="append", default=[], metavar="SERVICE=PORT",
                        help="fixed port for a service, e.g. mlflow=5000 (default: free ports)")
    args = parser.parse_args(argv)
    # SIGTERM behaves like Ctrl-C, so `kill` also runs the cleanup.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ml-platform-demo-"))
    progress = Progress(lifecycle.STEPS)

    def hold(summary: dict) -> None:
        print(text_summary(summary), file=sys.stderr)
        user, password = summary["login"]
        print(f"MLflow UI login for this run: {user} / {password}", file=sys.stderr)
        print("Services are up; press Ctrl-C to stop them.", file=sys.stderr)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass

    started = time.monotonic()
    try:
        summary = lifecycle.run(workdir, args.fast, progress, hold=hold if args.hold else None, ports=dict(args.port))
    except (ServiceError, StepError) as exc:
        print(f"\ndemo failed: {exc}\n(everything it started has been stopped; logs in {workdir})", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\ndemo interrupted; everything it started has been stopped (logs in {workdir})", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["steps"] = progress.timings
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(text_summary(summary))
        print(f"  finished in {summary['seconds']:.0f} s; everything it started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
