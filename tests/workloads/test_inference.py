"""The inference server as a real subprocess (uvicorn on 127.0.0.1) against the real MLflow registry.

One server follows the model's champion alias through the module: it starts before any model exists, so its
readiness is checked before and after the first model lands; the SIGTERM test uses its own server.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from local_services import create_topics

from ._infer_helpers import FEATURES, Server, metric_value
from ._train_helpers import run_training, s3_env, training_env, write_curated

pytestmark = pytest.mark.services

JSON = {"Content-Type": "application/json"}
CONTRACT_METRICS = (
    "inference_request_duration_seconds",
    "inference_requests_total",
    "inference_requests_in_flight",
    "inference_batch_size",
    "inference_prediction_score",
    "inference_model_version",
)


def test_config_lists_every_bad_variable():
    from common.env import ConfigError
    from inference.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config({"MODEL_URI": "s3://bucket/model", "PORT": "http", "MAX_BATCH_SIZE": "0",
                     "PREDICTION_LOGGING": "maybe"})
    for name in ("MODEL_URI", "PORT", "MAX_BATCH_SIZE", "PREDICTION_LOGGING", "MLFLOW_TRACKING_URI"):
        assert name in str(info.value), name
    config = load_config({"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MODEL_URI": "models:/fraud/7"})
    assert (config.model_name, config.version, config.alias) == ("fraud", "7", None)


@pytest.fixture(scope="module")
def deployment(services, tmp_path_factory):
    """A registered champion and a server following it; records readiness before the model existed."""
    from datagen.generator import generate

    s3_env(services)
    env = training_env(services, EPOCHS="2")
    write_curated(env["LAKE_CURATED_URI"], generate(3000, 11))
    server = Server(
        env,
        tmp_path_factory.mktemp("inference") / "server.log",
        MODEL_POLL_SECONDS="0.3",
        MAX_BATCH_DELAY_MS="5",
        MAX_BATCH_SIZE="256",
        MAX_BODY_BYTES="20000",
        MAX_ROWS_PER_REQUEST="50",
    )
    # Started now so its start-up overlaps training; the SIGTERM test ends it. It also logs its predictions.
    topic = env["MODEL_NAME"] + "-predictions"
    create_topics(services.kafka_bootstrap, [topic])
    drain_server = Server(
        env,
        tmp_path_factory.mktemp("drain") / "server.log",
        DRAIN_SECONDS="1.0",
        MODEL_POLL_SECONDS="0.3",
        PREDICTION_LOGGING="true",
        KAFKA_TOPIC_PREDICTIONS=topic,
    )
    try:
        server.wait_status("/healthz/live", 200)
        ready_before = server.request("GET", "/healthz/ready")[0]
        predict_before = server.predict([FEATURES])[0]
        result = run_training(env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        server.wait_status("/healthz/ready", 200)
        yield {
            "server": server,
            "drain_server": drain_server,
            "env": env,
            "ready_before": ready_before,
            "predict_before": predict_before,
            "topic": topic,
        }
    finally:
        server.stop()
        drain_server.stop()


def test_readiness_is_503_until_a_model_is_loaded(deployment):
    server = deployment["server"]
    assert deployment["ready_before"] == 503
    assert deployment["predict_before"] == 503
    status, raw = server.request("GET", "/healthz/ready")
    assert status == 200 and json.loads(raw)["model_version"] == "1"


def test_predicts_instances_and_mlflow_dataframe_records(deployment):
    server = deployment["server"]
    for key in ("instances", "dataframe_records"):
        status, body = server.predict([FEATURES, {**FEATURES, "amount": 4999.0, "country": "BR"}], key=key)
        assert status == 200, body
        assert body["model_version"] == "1"
        assert len(body["predictions"]) == 2
        for prediction in body["predictions"]:
            assert 0.0 <= prediction["score"] <= 1.0 and isinstance(prediction["is_fraud"], bool)


@pytest.mark.parametrize(
    "case, method, path, body, headers, status, fragment",
    [
        ("malformed json", "POST", "/invocations", b'{"instances": [', JSON, 400, "body: malformed JSON"),
        ("wrong content type", "POST", "/invocations", b"amount=3", {"Content-Type": "text/plain"}, 415, "content-type"),
        ("declared too large", "POST", "/invocations", b"{}", {**JSON, "Content-Length": "999999"}, 413, "MAX_BODY_BYTES"),
        ("streamed too large", "POST", "/invocations", b"x" * 30000, {**JSON, "Transfer-Encoding": "chunked"}, 413, "MAX_BODY_BYTES"),
        ("missing instances", "POST", "/invocations", b'{"rows": []}', JSON, 422, "instances: missing"),
        ("instances not a list", "POST", "/invocations", b'{"instances": {"a": 1}}', JSON, 422, "instances: must be a list"),
        ("empty instances", "POST", "/invocations", b'{"instances": []}', JSON, 422, "instances: must not be empty"),
        ("too many rows", "POST", "/invocations", json.dumps({"instances": [FEATURES] * 51}).encode(), JSON, 413, "MAX_ROWS_PER_REQUEST"),
        ("bad row", "POST", "/invocations", json.dumps({"instances": [FEATURES, {**FEATURES, "amount": -5}]}).encode(), JSON, 422, "instances[1].amount:"),
        ("huge integer", "POST", "/invocations", b'{"instances": [{"amount": ' + b"9" * 400 + b"}]}", JSON, 422, "instances[0].amount:"),
        ("integer past the digit limit", "POST", "/invocations", b'{"instances": [{"amount": ' + b"9" * 5000 + b"}]}", JSON, 400, "body: malformed JSON"),
        ("absurd nesting", "POST", "/invocations", b"[" * 15000, JSON, 400, "nested too deeply"),
        ("event time out of range", "POST", "/invocations", json.dumps({"instances": [{**FEATURES, "event_time": "0001-01-01T00:00:00+01:00"}]}).encode(), JSON, 422, "event_time: out of range"),
        ("lone surrogate id", "POST", "/invocations", b'{"instances": [{"transaction_id": "\\ud800"}]}', JSON, 422, "transaction_id: must be valid Unicode"),
        ("split with non-string columns", "POST", "/invocations", b'{"dataframe_split": {"columns": [[1]], "data": [[1]]}}', JSON, 422, "dataframe_split.columns"),
        ("wrong method", "GET", "/invocations", None, {}, 405, "method: GET"),
        ("unknown path", "GET", "/predict", None, {}, 404, "path: /predict"),
    ],
)
def test_bad_requests_get_4xx_naming_the_problem(deployment, case, method, path, body, headers, status, fragment):
    server = deployment["server"]
    if headers.get("Transfer-Encoding") == "chunked":
        got, raw = _chunked_post(server.port, body)
    else:
        got, raw = server.request(method, path, body, headers)
    assert got == status, (case, raw)
    assert fragment in " ".join(json.loads(raw)["errors"]), (case, raw)
    # The server is still up and still scoring after every kind of bad request.
    assert server.request("GET", "/healthz/live")[0] == 200
    assert server.predict([FEATURES])[0] == 200


def test_row_errors_list_every_field(deployment):
    bad = {**FEATURES, "channel": "fax", "txn_count_1h": 1.5}
    del bad["amount"]
    status, body = deployment["server"].predict([FEATURES, FEATURES, FEATURES, bad])
    assert status == 422
    assert sorted(e.split(":")[0] for e in body["errors"]) == [
        "instances[3].amount",
        "instances[3].channel",
        "instances[3].txn_count_1h",
    ]


def test_concurrent_requests_are_micro_batched(deployment):
    server = deployment["server"]
    before = server.metrics()
    count0 = metric_value(before, "inference_batch_size_count")
    sum0 = metric_value(before, "inference_batch_size_sum")
    statuses = []
    barrier = threading.Barrier(32)

    def client():
        barrier.wait()
        for _ in range(5):
            statuses.append(server.predict([FEATURES])[0])

    threads = [threading.Thread(target=client) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 160
    after = server.metrics()
    calls = metric_value(after, "inference_batch_size_count") - count0
    rows = metric_value(after, "inference_batch_size_sum") - sum0
    assert rows == 160
    assert calls < rows, f"{rows} rows took {calls} model calls: nothing was batched"


def test_metrics_follow_the_contract(deployment):
    text = deployment["server"].metrics()
    model = deployment["env"]["MODEL_NAME"]
    for name in CONTRACT_METRICS:
        assert f"\n{name}" in text or text.startswith(name), name
    assert metric_value(text, "inference_requests_total", 'status="200"') > 0
    assert metric_value(text, "inference_requests_total", 'status="422"') > 0
    assert f'inference_model_version{{model="{model}",version="1"}} 1.0' in text
    assert f'inference_prediction_score_bucket{{le="0.1",model="{model}"}}' in text


def test_champion_change_is_picked_up_without_failed_requests(deployment):
    from mlflow.tracking import MlflowClient

    server, env = deployment["server"], deployment["env"]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    name = env["MODEL_NAME"]
    v1 = client.get_model_version(name, "1")
    results: list[tuple[int, str]] = []
    # (sent, received, version) per request: four client threads append in their own order, not the server's.
    timeline: list[tuple[float, float, str]] = []
    stop = threading.Event()

    def fire():
        while not stop.is_set():
            sent = time.monotonic()
            status, body = server.predict([FEATURES])
            timeline.append((sent, time.monotonic(), body.get("model_version")))
            results.append((status, body.get("model_version")))

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        v2 = mlflow.register_model(v1.source, name)  # the same logged model as a new version
        client.set_registered_model_alias(name, "champion", v2.version)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(v == v2.version for _, v in results[-5:]):
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and all(status == 200 for status, _ in results), {s for s, _ in results}
    versions = [v for _, v in results]
    assert versions[0] == "1" and versions[-1] == v2.version
    # Once the new version has answered, the old one never does again: no request sent after the first v2 answer
    # arrived is answered by v1.
    first_new = min(received for _, received, v in timeline if v == v2.version)
    assert not [v for sent, _, v in timeline if sent > first_new and v != v2.version]
    text = server.metrics()
    assert f'version="{v2.version}"}} 1.0' in text and 'version="1"}' not in text.split("inference_model_version")[-1]


def test_sigterm_drains_in_flight_requests(deployment):
    server = deployment["drain_server"]
    try:
        server.wait_status("/healthz/ready", 200)
        body = json.dumps({"instances": [FEATURES] * 20}).encode()
        # Requests whose bodies are half sent are in flight for certain when the signal lands.
        socks = []
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:100]
            )
            socks.append(sock)
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert server.request("GET", "/healthz/ready")[0] == 503  # draining, still answering
        time.sleep(1.2)  # past DRAIN_SECONDS: the listener is closed now
        with pytest.raises(OSError):
            server.request("GET", "/healthz/live", timeout=2)
        statuses = []
        for sock in socks:
            sock.sendall(body[100:])
            response = _read_response(sock)
            statuses.append(response[0])
            sock.close()
        assert statuses == [200] * 8
        assert server.proc.wait(20) == 0, server.log()[-3000:]
    finally:
        server.stop()
    # The prediction log was flushed on the way out: one record per scored row.
    records = _consume(server.env["KAFKA_BOOTSTRAP_SERVERS"], deployment["topic"], expected=160)
    assert len(records) == 160
    assert len({r["model_version"] for r in records}) == 1 and all(0 <= r["score"] <= 1 for r in records)
    assert records[0]["merchant_category"] == FEATURES["merchant_category"]


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list[dict]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
    # Assigned, not subscribed: no group join to wait for.
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                records.append(json.loads(message.value()))
    finally:
        consumer.close()
    return records


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest


def _chunked_post(port: int, body: bytes) -> tuple[int, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for i in range(0, len(body), 4096):
                piece = body[i : i + 4096]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer 413 and close before the whole body is sent
        return _read_response(sock)
    finally:
        sock.close()
