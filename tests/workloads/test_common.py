"""Shared helpers: Kafka client config shapes, env error collection, S3 URIs and lake round trips."""

from __future__ import annotations

import pyarrow as pa
import pytest

from common import lake
from common.env import ConfigError, Env
from common.kafka_config import client_config, consumer_config, producer_config


def test_kafka_none_is_plaintext():
    config = client_config({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_AUTH": "none"})
    assert config["bootstrap.servers"] == "b:9092"
    assert "security.protocol" not in config  # librdkafka's default: PLAINTEXT


def test_kafka_mtls_points_at_the_strimzi_user_files(tmp_path):
    for name in ("ca.crt", "user.crt", "user.key"):
        (tmp_path / name).write_text("x")
    config = client_config({"KAFKA_BOOTSTRAP_SERVERS": "b:9093", "KAFKA_AUTH": "mtls", "KAFKA_TLS_DIR": str(tmp_path)})
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == str(tmp_path / "ca.crt")
    assert config["ssl.certificate.location"] == str(tmp_path / "user.crt")
    assert config["ssl.key.location"] == str(tmp_path / "user.key")


def test_kafka_mtls_names_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="user.key"):
        client_config({"KAFKA_BOOTSTRAP_SERVERS": "b:9093", "KAFKA_AUTH": "mtls", "KAFKA_TLS_DIR": str(tmp_path)})


def test_kafka_msk_iam_shape_without_calling_aws():
    config = client_config({"KAFKA_BOOTSTRAP_SERVERS": "b:9098", "KAFKA_AUTH": "msk-iam", "AWS_REGION": "eu-west-1"})
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "OAUTHBEARER"
    assert callable(config["oauth_cb"])


def test_kafka_unknown_auth_and_missing_bootstrap_reported_together():
    with pytest.raises(ConfigError) as info:
        client_config({"KAFKA_AUTH": "sasl-plain"})
    text = str(info.value)
    assert "KAFKA_AUTH must be one of none, mtls, msk-iam, got 'sasl-plain'" in text
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in text


def test_consumer_commits_manually_and_producer_is_idempotent():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}
    consumer = consumer_config("g", env, **{"session.timeout.ms": 3000})
    assert consumer["enable.auto.commit"] is False and consumer["session.timeout.ms"] == 3000
    assert producer_config(env)["enable.idempotence"] is True


def test_env_typed_reads_collect_problems():
    env = Env({"A": "x", "B": "5", "C": "maybe", "D": "99"})
    env.int("A", 1)
    assert env.int("B", 1) == 5
    env.bool("C", False)
    env.int("D", 1, minimum=0, maximum=10)
    env.str("MISSING", hint="set it to the bucket")
    with pytest.raises(ConfigError) as info:
        env.check()
    assert [p.split()[0] for p in info.value.problems] == ["A", "C", "D", "MISSING"]
    assert "set it to the bucket" in str(info.value)


@pytest.mark.parametrize("bad", ["bucket/key", "s3://", "s3:///key", "http://b/k", None])
def test_s3_uri_errors_name_the_setting(bad):
    with pytest.raises(ValueError, match="LAKE_RAW_URI: "):
        lake.parse_s3_uri(bad, name="LAKE_RAW_URI")


def test_s3_uri_prefix_normalised_and_joined():
    uri = lake.parse_s3_uri("s3://bucket/raw", prefix=True)
    assert (uri.bucket, uri.key) == ("bucket", "raw/")
    assert str(uri.join("date=2026-01-01/hour=00", "f.parquet")) == "s3://bucket/raw/date=2026-01-01/hour=00/f.parquet"


@pytest.mark.services
def test_lake_round_trip_skips_state_objects(apply_env):
    prefix = lake.parse_s3_uri(apply_env["LAKE_CURATED_URI"], prefix=True)
    table = pa.table({"x": [1, 2, 3]})
    lake.put_bytes(prefix.join("date=2026-01-01/a.parquet"), lake.table_to_parquet_bytes(table))
    lake.put_bytes(prefix.join("_state/b.parquet"), lake.table_to_parquet_bytes(table))
    assert lake.read_parquet_prefix(str(prefix)).num_rows == 3
    assert lake.get_bytes(prefix.join("nothing-here")) is None
    lake.delete(prefix.join("date=2026-01-01/a.parquet"))
    assert lake.read_parquet_prefix(str(prefix)) is None
