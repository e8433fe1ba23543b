"""Shared pieces of the benchmarks: local services, a training data set, Prometheus counter scraping."""

from __future__ import annotations

import re
import time
import urllib.request

from demo.lifecycle import produce


def scrape_counter(port: int, name: str, labels: str = "") -> float:
    """Sum of a counter's samples (optionally only those whose labels contain `labels`) at /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", text, flags=re.M):
        if labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


def rate_until(read, target: float, timeout_s: float, poll_s: float = 0.2) -> tuple[float, float]:
    """Wait until read() >= target; return (records/s, seconds), timed from the first record to the last.

    Starting the clock at the first record leaves process start-up and the consumer-group join out of the figure,
    for the baseline and the candidate alike.
    """
    deadline = time.monotonic() + timeout_s
    first_at, first_value = None, 0.0
    while time.monotonic() < deadline:
        value = read()
        now = time.monotonic()
        if first_at is None and value > 0:
            first_at, first_value = now, value
        if value >= target:
            seconds = max(now - (first_at or now), 1e-9)
            return (value - first_value) / seconds, seconds
        time.sleep(poll_s)
    raise TimeoutError(f"only {read():.0f}/{target:.0f} after {timeout_s:.0f} s")


def fill_topic(env: dict[str, str], topic: str, count: int, seed: int) -> None:
    from datagen.__main__ import build
    produce({**env, "KAFKA_TOPIC_TRANSACTIONS": topic}, build(count, seed=seed, drift=False, bad_fraction=0.0))
