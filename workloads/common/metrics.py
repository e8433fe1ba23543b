"""Prometheus exporter on METRICS_PORT. Metric names live with each workload and match CONTRACT.md."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import start_http_server

from .env import Env

DEFAULT_METRICS_PORT = 9100


def metrics_port(environ: Mapping[str, str] | None = None) -> int:
    env = Env(environ)
    port = env.int("METRICS_PORT", DEFAULT_METRICS_PORT, minimum=0, maximum=65535)
    env.check()
    return port


def start_metrics_server(port: int | None = None, addr: str = "0.0.0.0") -> int:
    """Serve /metrics in a daemon thread; port 0 disables the exporter (one-shot CLI runs, tests)."""
    port = metrics_port() if port is None else port
    if port:
        start_http_server(port, addr=addr)
    return port
