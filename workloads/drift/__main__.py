"""python -m drift: PSI of every model feature between a reference and recent data; exit 3 on drift.

Data: either --reference and --recent (s3:// prefixes, .parquet files/directories or .jsonl files), or
--cutoff with LAKE_CURATED_URI: curated rows before the cutoff (the training window) are the reference, rows
from it on are recent. --recent-hours H is a rolling cutoff (now - H hours, recomputed each run), for a long-running
monitor. Scores (--reference-scores/--recent-scores, a 'score' column) add prediction_score.

On drift: the exit code is 3 (a CronJob or pipeline step can branch on it), --on-drift-command runs with the
report as JSON in $DRIFT_REPORT, and RETRAIN_WEBHOOK, when set, receives the report as a JSON POST. A failing
hook makes the exit code 1, so a lost retraining trigger is never silent.
Exit codes: 0 no drift, 1 hook failed, 2 bad configuration or input, 3 drift detected.
--interval-seconds N keeps running (a Deployment scraped by Prometheus) and never exits on drift.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

from common.env import ConfigError, Env
from common.metrics import start_metrics_server

from . import data, metrics
from .psi import DEFAULT_THRESHOLD, DriftReport, compute_drift

log = logging.getLogger("drift")
EXIT_OK, EXIT_HOOK_FAILED, EXIT_INPUT, EXIT_DRIFT = 0, 1, 2, 3


def cutoff(args) -> str | None:
    if args.recent_hours:
        return datetime.fromtimestamp(time.time() - args.recent_hours * 3600, tz=timezone.utc).isoformat()
    return args.cutoff


def run_once(args, threshold: float) -> DriftReport:
    if cutoff(args):
        curated = Env().str("LAKE_CURATED_URI", hint="needed with --cutoff")
        if not curated:
            raise ValueError("LAKE_CURATED_URI is not set: needed with --cutoff")
        reference, recent = data.split_at(data.load_table(curated, name="LAKE_CURATED_URI"), cutoff(args))
    else:
        reference = data.load_table(args.reference, name="--reference")
        recent = data.load_table(args.recent, name="--recent")
    ref_scores = data.load_scores(args.reference_scores, name="--reference-scores") if args.reference_scores else None
    cur_scores = data.load_scores(args.recent_scores, name="--recent-scores") if args.recent_scores else None
    report = compute_drift(reference, recent, ref_scores, cur_scores, threshold=threshold)
    metrics.publish(report)
    return report


def trigger(report: DriftReport, command: str | None, webhook: str | None) -> bool:
    """Run the retraining hooks; True when every configured hook succeeded."""
    payload = json.dumps(report.to_dict())
    ok = True
    if command:
        result = subprocess.run(shlex.split(command), env={**os.environ, "DRIFT_REPORT": payload}, check=False)
        if result.returncode != 0:
            log.error("--on-drift-command exited %d", result.returncode)
            ok = False
    if webhook:
        request = urllib.request.Request(webhook, data=payload.encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                log.info("RETRAIN_WEBHOOK answered %d", resp.status)
        except OSError as exc:
            log.error("RETRAIN_WEBHOOK %s failed: %s", webhook, exc)
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift", description=__doc__.splitlines()[0])
    parser.add_argument("--reference")
    parser.add_argument("--recent")
    parser.add_argument("--cutoff", help="ISO-8601 time splitting LAKE_CURATED_URI into reference | recent")
    parser.add_argument("--recent-hours", type=float, help="rolling cutoff: the last H hours are recent")
    parser.add_argument("--reference-scores")
    parser.add_argument("--recent-scores")
    parser.add_argument("--on-drift-command", help="run when drift is detected; gets $DRIFT_REPORT (JSON)")
    parser.add_argument("--interval-seconds", type=float, default=0, help="repeat forever; 0 = run once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.cutoff and args.recent_hours:
        parser.error("give --cutoff or --recent-hours, not both")
    split = args.cutoff or args.recent_hours
    if split and (args.reference or args.recent):
        parser.error("--cutoff/--recent-hours split LAKE_CURATED_URI: do not combine with --reference/--recent")
    if not split and not (args.reference and args.recent):
        parser.error("give --cutoff, --recent-hours, or both --reference and --recent")

    env = Env()
    threshold = env.float("DRIFT_PSI_THRESHOLD", DEFAULT_THRESHOLD, minimum=0.0)
    webhook = env.optional("RETRAIN_WEBHOOK")
    try:
        port = env.int("METRICS_PORT", 9100, minimum=0, maximum=65535)
        env.check()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT
    start_metrics_server(port)

    while True:
        try:
            report = run_once(args, threshold)
        except (ValueError, KeyError) as exc:
            print(f"drift: {exc}", file=sys.stderr)
            if not args.interval_seconds:
                return EXIT_INPUT
            report = None
        if report is not None:
            print(json.dumps(report.to_dict()))
            hooks_ok = trigger(report, args.on_drift_command, webhook) if report.detected else True
            if not args.interval_seconds:
                if not hooks_ok:
                    return EXIT_HOOK_FAILED
                return EXIT_DRIFT if report.detected else EXIT_OK
        time.sleep(args.interval_seconds)


if __name__ == "__main__":
    sys.exit(main())
