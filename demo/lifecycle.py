"""The demo's lifecycle: data into Kafka, lake ingestion, training and promotion, serving, drift, retraining.

Every step talks to real local services through the workloads' own entry points, exactly as the cluster runs
them; only the data generator is called in-process. MLflow runs with its permissions on and two teams, each
training under its own MLflow user: fraud owns fraud-detector, payments owns chargeback-risk, and payments'
training pointed at fraud-detector is refused by the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.processes import StepError, Workloads, http_ready, wait_until
from demo.progress import Progress
from demo.traffic import request_bodies, run_load
from local_services import LocalServices, free_port

STEPS = 12
# team -> its models, as ml-platform:teams / ml-platform:models would give them; the first team's model is served.
TEAMS = {"fraud": ("fraud-detector",), "payments": ("chargeback-risk",)}
OWNER, OTHER = "fraud", "payments"
# Training's exit status when MLflow refuses its user (workloads/training/main.py EXIT_REFUSED).
TRAINING_REFUSED = 4
REFUSAL = re.compile(r"MLflow refused (?P<user>\S+) \(HTTP (?P<status>\d+) (?P<code>\w+)(?: at (?P<endpoint>\S+))?\)")


@dataclass(frozen=True)
class Sizes:
    transactions: int
    drifted: int
    epochs: int
    requests: int
    concurrency: int

    @staticmethod
    def of(fast: bool) -> "Sizes":
        # fast: the variant the test suite runs; still every step, on less data.
        return Sizes(4000, 2000, 3, 400, 8) if fast else Sizes(20000, 8000, 8, 4000, 16)


def curated_rows(uri: str) -> int:
    from common.lake import read_parquet_prefix
    table = read_parquet_prefix(uri, columns=["transaction_id"])
    return 0 if table is None else table.num_rows


def lake_summary(buckets: dict[str, str]) -> dict[str, dict[str, int]]:
    from common.lake import list_keys, parse_s3_uri
    out = {}
    for area, bucket in buckets.items():
        keys = [str(k) for k in list_keys(parse_s3_uri(f"s3://{bucket}/", prefix=True))]
        out[area] = {"objects": len(keys), "parquet_files": sum(k.endswith(".parquet") for k in keys)}
    return out


def model_versions(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri)
    # Version search results do not carry aliases; the registered model has the alias -> version map.
    aliases = client.get_registered_model(name).aliases
    versions = []
    for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        run = client.get_run(mv.run_id).data
        entry = {"version": mv.version, "aliases": sorted(a for a, v in aliases.items() if v == mv.version),
                 "metrics": {k: round(v, 4) for k, v in sorted(run.metrics.items()) if k.startswith("test_")}}
        # The promotion decision re-scored the then-champion on this version's test split; show that pairing,
        # since each version's own test_* metrics come from different (growing) test data.
        if run.tags.get("compared_with_version", "none") != "none":
            entry["compared_with"] = {"version": run.tags["compared_with_version"],
                                      "test_pr_auc_same_data": run.tags.get("champion_test_pr_auc")}
        versions.append(entry)
    return versions


def champion_of(tracking_uri: str, name: str) -> str | None:
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri).get_registered_model(name).aliases.get("champion")


def refusal(log: Path) -> dict[str, Any]:
    """The refusal training reported (one log line); empty when there was none."""
    found = REFUSAL.search(log.read_text(errors="replace"))
    if not found:
        return {}
    return {"user": found["user"], "status": int(found["status"]), "error_code": found["code"],
            "endpoint": found["endpoint"]}


def produce(env: dict[str, str], pairs: list[tuple[bytes | None, bytes]]) -> None:
    from common.kafka_config import producer_config
    from datagen.__main__ import produce as produce_pairs
    produce_pairs(pairs, env["KAFKA_TOPIC_TRANSACTIONS"], producer_config(env))


def run(workdir: Path, fast: bool, progress: Progress, hold=None, ports: dict[str, int] | None = None) -> dict[str, Any]:
    """Runs every step; returns the summary. Everything started here is stopped before returning or raising."""
    from datagen.__main__ import build
    from datagen.generator import DEFAULT_SPAN, DEFAULT_START, generate

    sizes = Sizes.of(fast)
    serve_port, ingest_port = free_port(), free_port()
    services = ("s3", "kafka", "mlflow") + (("prometheus",) if shutil.which("prometheus") else ())
    summary: dict[str, Any] = {"fast": fast}

    # The MLflow database lives in the workdir but S3 and Kafka are in memory: a second run in the same workdir
    # must not inherit model versions whose artifacts are gone.
    shutil.rmtree(workdir / "services", ignore_errors=True)
    progress.step(f"Starting local services ({', '.join(services)}) on 127.0.0.1, MLflow with permissions on")
    with LocalServices(workdir / "services", services=services, ports=ports, mlflow_teams=TEAMS,
                       scrape_targets=[f"127.0.0.1:{serve_port}", f"127.0.0.1:{ingest_port}"]) as svc:
        env = svc.env(OWNER)
        os.environ.update(env)  # the demo itself reads the lake and the registry as a client of these services
        workloads = Workloads(workdir, env)
        other_env = svc.env(OTHER)
        other_model = TEAMS[OTHER][0]
        as_other = {k: other_env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                              "MLFLOW_EXPERIMENT", "MODEL_NAME")}
        summary["teams"] = {t: {"user": svc.mlflow_credentials(t)[0], "models": list(m)} for t, m in TEAMS.items()}
        try:
            progress.done(", ".join(f"{s} :{svc.ports[s]}" for s in services) + "; MLflow users "
                          + ", ".join(v["user"] for v in summary["teams"].values()))

            progress.step(f"Generating {sizes.transactions} transactions (1% malformed) into Kafka")
            pairs = build(sizes.transactions, seed=7, drift=False, bad_fraction=0.01)
            produce(env, pairs)
            bad = len(pairs) - sizes.transactions
            progress.done(f"{len(pairs)} records, {bad} malformed")

            progress.step("Ingesting Kafka into the lake (Parquet, raw and curated)")
            workloads.start("ingestion", "ingestion", {"METRICS_PORT": str(ingest_port), "INGEST_BATCH_RECORDS": "1000",
                                                       "INGEST_BATCH_SECONDS": "1"})

            def ingested(target: int):
                def check():
                    workloads.check_alive("ingestion")
                    return curated_rows(env["LAKE_CURATED_URI"]) >= target
                return check

            wait_until(ingested(sizes.transactions), timeout_s=180, what="ingestion of the first batch",
                       interval_s=1.0, on_tick=lambda _: progress.detail(
                           f"{curated_rows(env['LAKE_CURATED_URI'])}/{sizes.transactions} records in the lake"))
            progress.done(f"{sizes.transactions} records in the curated area")

            train_env = {"EPOCHS": str(sizes.epochs), "METRICS_PORT": "0"}
            progress.step(f"Training the first model ({sizes.epochs} epochs) and registering it, as "
                          f"{env['MLFLOW_TRACKING_USERNAME']}")
            workloads.run("training-1", "training", {**train_env, "CHECKPOINT_URI": env["CHECKPOINT_URI"] + "run-1/"})
            first = model_versions(svc.mlflow_uri, env["MODEL_NAME"])
            progress.done(f"{env['MODEL_NAME']} version {first[-1]['version']} -> {', '.join(first[-1]['aliases'])}")

            progress.step(f"Training {other_model} as {as_other['MLFLOW_TRACKING_USERNAME']}, its own model")
            workloads.run("training-payments", "training", {**train_env, **as_other,
                                                            "CHECKPOINT_URI": env["CHECKPOINT_URI"] + "payments-1/"})
            theirs = model_versions(svc.mlflow_uri, other_model)
            progress.done(f"{other_model} version {theirs[-1]['version']} -> {', '.join(theirs[-1]['aliases'])}")

            progress.step("Starting the inference server on models:/fraud-detector@champion")
            ready_url = f"http://127.0.0.1:{serve_port}/healthz/ready"
            workloads.start("inference", "inference", {"PORT": str(serve_port), "HOST": "127.0.0.1",
                                                       "MODEL_POLL_SECONDS": "1"})
            wait_until(lambda: workloads.check_alive("inference") or http_ready(ready_url), timeout_s=120,
                       what="the inference server to become ready")
            progress.done(f"ready on :{serve_port}")

            progress.step(f"Sending {sizes.requests} prediction requests ({sizes.concurrency} concurrent)")
            holdout = generate(2000, seed=1234)
            url = f"http://127.0.0.1:{serve_port}/invocations"
            traffic = run_load(url, request_bodies(holdout, 1), concurrency=sizes.concurrency, total=sizes.requests)
            if traffic.errors:
                raise StepError(f"{traffic.errors} of {traffic.requests} prediction requests failed: "
                                f"{dict(traffic.statuses)}")
            summary["serving"] = traffic.summary()
            progress.done(f"{traffic.rps:.0f} req/s, p50 {traffic.percentile_ms(50):.1f} ms, "
                          f"p99 {traffic.percentile_ms(99):.1f} ms")

            progress.step(f"Injecting drift: {sizes.drifted} transactions with shifted behaviour")
            drift_start = DEFAULT_START + DEFAULT_SPAN
            drifted = generate(sizes.drifted, seed=8, drift=True, start=drift_start)
            produce(env, [(r["card_id"].encode(), json.dumps(r).encode()) for r in drifted])
            total = sizes.transactions + sizes.drifted
            wait_until(ingested(total), timeout_s=180, what="ingestion of the drifted batch", interval_s=1.0,
                       on_tick=lambda _: progress.detail(
                           f"{curated_rows(env['LAKE_CURATED_URI'])}/{total} records in the lake"))
            progress.done(f"{total} records in the curated area")

            progress.step("Detecting drift (PSI per feature, recent vs training window)")
            code = workloads.run("drift", "drift", {"METRICS_PORT": "0"}, args=["--cutoff", drift_start.isoformat()],
                                 ok_codes=(0, 3))
            report = _last_json_line(workloads.log("drift"))
            summary["drift"] = {"detected": code == 3, "threshold": report.get("threshold"),
                                "psi": {k: round(v, 3) for k, v in sorted(report.get("psi", {}).items())}}
            worst = max(summary["drift"]["psi"].items(), key=lambda kv: kv[1], default=("none", 0.0))
            progress.done(f"{'drift detected' if code == 3 else 'no drift'} (max PSI {worst[1]:.2f} on {worst[0]})")

            progress.step("Retraining on all data and promoting if better on held-out data")
            workloads.run("training-2", "training", {**train_env, "CHECKPOINT_URI": env["CHECKPOINT_URI"] + "run-2/"})
            versions = model_versions(svc.mlflow_uri, env["MODEL_NAME"])
            newest = versions[-1]
            progress.done(f"version {newest['version']} -> {', '.join(newest['aliases']) or 'no alias'}")

            champion = next(v["version"] for v in versions if "champion" in v["aliases"])
            progress.step(f"Training as {as_other['MLFLOW_TRACKING_USERNAME']}, pointed at {env['MODEL_NAME']} "
                          f"(must be refused)")
            code = workloads.run("training-refused", "training", {
                **train_env, **as_other, "MODEL_NAME": env["MODEL_NAME"],
                "CHECKPOINT_URI": env["CHECKPOINT_URI"] + "payments-at-fraud/"}, ok_codes=(0, TRAINING_REFUSED))
            refused = refusal(workloads.log("training-refused"))
            after = champion_of(svc.mlflow_uri, env["MODEL_NAME"])
            if code != TRAINING_REFUSED or refused.get("status") != 403:
                raise StepError(f"{as_other['MLFLOW_TRACKING_USERNAME']} was not refused on {env['MODEL_NAME']} "
                                f"(exit code {code}): MLflow's permissions are not in force")
            if after != champion:
                raise StepError(f"{env['MODEL_NAME']}@champion moved from v{champion} to v{after}")
            summary["refused"] = {**refused, "team": OTHER, "model": env["MODEL_NAME"], "exit_code": code,
                                  "champion_before": champion, "champion_after": after}
            progress.done(f"refused: HTTP {refused['status']} {refused['error_code']} at {refused['endpoint']}; "
                          f"{env['MODEL_NAME']}@champion still v{after}")

            progress.step("Checking the server follows the champion alias")

            def serving_champion():
                probe = run_load(url, request_bodies(holdout[:50], 1), concurrency=2, total=20)
                return probe.errors == 0 and set(probe.model_versions) == {champion}

            wait_until(serving_champion, timeout_s=60, what=f"the server to serve version {champion}", interval_s=1.0)
            progress.done(f"serving version {champion}")

            summary.update({
                "data": {"transactions": sizes.transactions, "malformed_to_dead_letter": bad,
                         "drifted_transactions": sizes.drifted, "lake": lake_summary(svc.buckets)},
                "models": versions, "champion": champion,
                "other_models": {other_model: model_versions(svc.mlflow_uri, other_model)},
                "where": {"mlflow_ui": svc.mlflow_uri, "prometheus": svc.prometheus_url if "prometheus" in services
                          else None, "s3_endpoint": svc.s3_endpoint, "lake_buckets": svc.buckets,
                          "logs": str(workdir / "logs")},
            })
            if hold:
                # The UI asks for a login now; this run's generated one is shown while held, never in the summary.
                hold({**summary, "login": svc.mlflow_credentials(OWNER)})
        finally:
            workloads.stop_all()
    summary["stopped"] = True
    return summary


def _last_json_line(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}

