"""LocalServices: real processes that become healthy, are reachable, fail loudly and leave nothing behind."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import boto3
import pytest
from confluent_kafka.admin import AdminClient

import local_services.services as services_module
from local_services import LocalServices, ServiceError, free_port
from local_services.services import port_is_free

CONTRACT_VARS = {
    "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_AUTH", "KAFKA_TOPIC_TRANSACTIONS", "KAFKA_TOPIC_PREDICTIONS",
    "KAFKA_TOPIC_DEAD_LETTER", "KAFKA_CONSUMER_GROUP", "AWS_REGION", "S3_ENDPOINT_URL", "LAKE_RAW_URI",
    "LAKE_CURATED_URI", "CHECKPOINT_URI", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT", "MODEL_NAME",
}


@pytest.mark.services
def test_session_services_are_healthy_and_env_follows_the_contract(services):
    env = services.env()
    assert CONTRACT_VARS <= set(env)
    assert env["KAFKA_AUTH"] == "none" and env["MLFLOW_S3_ENDPOINT_URL"] == env["S3_ENDPOINT_URL"]
    with urllib.request.urlopen(f"{services.mlflow_uri}/health", timeout=5) as resp:
        assert resp.status == 200
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint, region_name=env["AWS_REGION"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    assert set(services.buckets.values()) <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    topics = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=5).topics
    assert {"transactions", "predictions", "transactions-dlq"} <= set(topics)


@pytest.mark.services
def test_mlflow_stores_artifacts_in_the_s3_bucket(services, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.mlflow_uri)
    artifact = tmp_path / "hello.txt"
    artifact.write_text("hi")
    mlflow.set_experiment(f"local-services-{tmp_path.name}")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(artifact))
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=services.buckets["artifacts"]).get("Contents", [])]
    assert any(run.info.run_id in k and k.endswith("hello.txt") for k in keys), keys


@pytest.mark.services
def test_exit_stops_every_process_and_frees_the_ports(tmp_path):
    with LocalServices(tmp_path, services=("s3", "kafka")) as svc:
        ports = dict(svc.ports)
        procs = list(svc._procs.values())
        assert not any(port_is_free(p) for p in ports.values())
    assert all(p.poll() is not None for p in procs)
    assert all(port_is_free(p) for p in ports.values())


@pytest.mark.services
def test_fixed_port_already_taken_names_the_service_and_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError) as info:
            LocalServices(tmp_path, services=("s3",), ports={"s3": port}).__enter__()
    assert info.value.service == "s3" and info.value.port == port
    assert f"s3 (127.0.0.1:{port}): port already in use" in str(info.value)


@pytest.mark.services
def test_a_dying_process_is_reported_with_its_log_and_the_others_are_stopped(tmp_path, monkeypatch):
    # /bin/sh stands in for a broker binary that fails at start-up; detection and cleanup are what is tested.
    fake = tmp_path / "broken-broker"
    fake.write_text("#!/bin/sh\necho 'cannot open storage engine' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setattr(services_module, "tansu_binary", lambda: Path(fake))
    svc = LocalServices(tmp_path, services=("s3", "kafka"))
    with pytest.raises(ServiceError) as info:
        with svc:
            pass
    message = str(info.value)
    assert message.startswith(f"kafka (127.0.0.1:{svc.ports['kafka']}): process exited with code 7")
    assert "cannot open storage engine" in message
    assert port_is_free(svc.ports["s3"])  # S3 had started and was stopped again


def test_unknown_service_and_mlflow_without_s3_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        LocalServices(tmp_path, services=("redis",))
    with pytest.raises(ValueError, match="mlflow stores its artifacts in S3"):
        LocalServices(tmp_path, services=("mlflow",))


def test_free_port_is_bindable():
    assert port_is_free(free_port())


@pytest.mark.services
@pytest.mark.skipif(not __import__("shutil").which("prometheus"), reason="prometheus binary not installed (apt-get install prometheus)")
def test_prometheus_scrapes_the_given_targets(tmp_path):
    import json
    import time

    from prometheus_client import start_http_server

    target_port = free_port()
    start_http_server(target_port, addr="127.0.0.1")
    with LocalServices(tmp_path, services=("prometheus",), scrape_targets=[f"127.0.0.1:{target_port}"]) as svc:
        deadline = time.monotonic() + 15
        health = None
        while time.monotonic() < deadline and health != "up":
            with urllib.request.urlopen(f"{svc.prometheus_url}/api/v1/targets", timeout=5) as resp:
                targets = json.load(resp)["data"]["activeTargets"]
            health = targets[0]["health"] if targets else None
            time.sleep(0.3)
        assert health == "up", targets
        port = svc.ports["prometheus"]
    assert port_is_free(port)
