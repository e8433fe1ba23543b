"""confluent-kafka client settings from the environment (see CONTRACT.md: KAFKA_AUTH, KAFKA_TLS_DIR)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from .env import ConfigError, Env

AUTH_MODES = ("none", "mtls", "msk-iam")
TLS_FILES = {"ssl.ca.location": "ca.crt", "ssl.certificate.location": "user.crt", "ssl.key.location": "user.key"}


def _msk_oauth_cb(region: str):
    def callback(_config_str: str) -> tuple[str, float]:
        # Imported lazily: only MSK deployments need the signer, and it reads the pod's IAM role (IRSA) itself.
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000.0  # librdkafka wants seconds since the epoch

    return callback


def client_config(environ: Mapping[str, str] | None = None, *, check_files: bool = True) -> dict[str, Any]:
    """Connection and authentication settings shared by producers, consumers and admin clients."""
    env = Env(environ)
    bootstrap = env.str("KAFKA_BOOTSTRAP_SERVERS", hint="comma-separated host:port list of the Kafka brokers")
    auth = env.choice("KAFKA_AUTH", AUTH_MODES, default="none")
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "client.id": socket.gethostname()}
    if auth == "mtls":
        tls_dir = env.str("KAFKA_TLS_DIR", hint="directory holding ca.crt, user.crt and user.key (KAFKA_AUTH=mtls)")
        config["security.protocol"] = "SSL"
        for key, filename in TLS_FILES.items():
            path = os.path.join(tls_dir, filename)
            config[key] = path
            if check_files and tls_dir and not os.path.isfile(path):
                env.problems.append(f"KAFKA_TLS_DIR: {path} does not exist (KAFKA_AUTH=mtls needs {filename})")
    elif auth == "msk-iam":
        region = env.str("AWS_REGION", hint="the MSK cluster's region, needed to sign IAM auth tokens")
        config.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "OAUTHBEARER",
                "oauth_cb": _msk_oauth_cb(region),
            }
        )
    env.check()
    return config


def producer_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    # Idempotence keeps broker-side retries from duplicating records within a partition.
    config = client_config(environ)
    config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "zstd"})
    config.update(overrides)
    return config


def consumer_config(group_id: str, environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    if not group_id:
        raise ConfigError(["KAFKA_CONSUMER_GROUP must not be empty"])
    config = client_config(environ)
    config.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    config.update(overrides)
    return config
