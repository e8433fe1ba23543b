"""Shared pieces of the benchmarks: filling a topic, Prometheus counter scraping, steady-state rates, peak RSS."""

from __future__ import annotations

import os
import re
import sys
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


def _crossing(samples: list[tuple[float, float]], level: float) -> float:
    """When the counter crossed `level`, interpolated linearly between the two polls around it."""
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if v1 >= level:
            return t1 if v1 == v0 else t0 + (t1 - t0) * (level - v0) / (v1 - v0)
    raise ValueError(f"never reached {level}")


def steady_rate(read, total: int, *, timeout_s: float, low: float = 0.1, high: float = 0.9,
                poll_s: float = 0.1) -> dict:
    """Records/s while read() goes from low * total to high * total (a backlog of `total` records).

    Start-up, the consumer-group join and the first batches before `low`, and the last partial batches after
    `high` (whose flush can wait on batch age), are all outside the window. Returns the rate, the window and
    the poll interval; the window is checked to be long against the poll interval, so polling cannot dominate.
    """
    deadline = time.monotonic() + timeout_s
    samples: list[tuple[float, float]] = [(time.monotonic(), read())]
    while samples[-1][1] < high * total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {samples[-1][1]:.0f}/{high * total:.0f} records after {timeout_s:.0f} s")
        time.sleep(poll_s)
        samples.append((time.monotonic(), read()))
    started, ended = _crossing(samples, low * total), _crossing(samples, high * total)
    window = max(ended - started, 1e-9)
    if window < 20 * poll_s:
        print(f"warning: measured window {window:.2f} s is short against the {poll_s} s poll interval; "
              "use more records", file=sys.stderr)
    return {"records_per_s": round((high - low) * total / window, 1), "window_s": round(window, 2),
            "window": [low, high], "poll_s": poll_s}


def rate_until(read, target: float, timeout_s: float, poll_s: float = 0.2) -> tuple[float, float]:
    """Wait until read() >= target; return (records/s, seconds), timed from the first record to the last."""
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


def fill_topic(env: dict[str, str], topic: str, count: int, seed: int) -> float:
    """Produces `count` generated records (the data generator's, keyed by card) to `topic`; returns seconds taken."""
    from datagen.__main__ import build
    started = time.monotonic()
    produce({**env, "KAFKA_TOPIC_TRANSACTIONS": topic}, build(count, seed=seed, drift=False, bad_fraction=0.0))
    return time.monotonic() - started


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    # The command name can hold spaces and parentheses: the ppid follows the last ')'.
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def peak_rss_mb(pid: int, *, tree: bool = False) -> float | None:
    """VmHWM (peak resident set) of `pid` in MB; with tree=True, the largest of it and all its descendants
    (for launchers that serve from a child process, like `mlflow models serve`)."""
    pids, seen = [pid], []
    while pids:
        current = pids.pop()
        seen.append(current)
        if tree:
            pids.extend(_children(current))
    peaks = []
    for p in seen:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return round(max(peaks), 1) if peaks else None


def is_python(pid: int) -> bool:
    """True when `pid` runs a python interpreter itself (not a shell or launcher wrapping one)."""
    try:
        return "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
