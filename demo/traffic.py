"""An HTTP load generator for prediction servers: a fixed number of requests at a fixed concurrency.

Used by the demo (traffic against the inference server) and by the benchmarks, where the same client, request
mix and concurrency drive both servers under comparison. Latency is measured per request, end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import aiohttp


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    model_versions: Counter = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
        return ordered[index] * 1000

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "seconds": round(self.seconds, 3),
                "rps": round(self.rps, 1), "p50_ms": round(self.percentile_ms(50), 2),
                "p95_ms": round(self.percentile_ms(95), 2), "p99_ms": round(self.percentile_ms(99), 2),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "model_versions": dict(self.model_versions)}


async def _run(url: str, bodies: Sequence[bytes], concurrency: int, total: int, timeout_s: float) -> LoadResult:
    result = LoadResult(requests=total, seconds=0.0)
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < total:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    result.latencies_s.append(time.perf_counter() - started)
                    result.statuses[response.status] += 1
                    if response.status == 200:
                        version = _model_version(payload)
                        if version:
                            result.model_versions[version] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                result.latencies_s.append(time.perf_counter() - started)
                result.statuses[type(exc).__name__] += 1

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def _model_version(payload: bytes) -> str | None:
    try:
        version = json.loads(payload).get("model_version")
    except (ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


def run_load(url: str, bodies: Sequence[bytes], *, concurrency: int, total: int, timeout_s: float = 30.0) -> LoadResult:
    if not bodies:
        raise ValueError("bodies: need at least one request body")
    return asyncio.run(_run(url, bodies, concurrency, total, timeout_s))


def request_bodies(rows: Sequence[dict], rows_per_request: int, key: str = "instances") -> list[bytes]:
    """JSON bodies of `rows_per_request` rows each, cycling through `rows`; label and ids are left out."""
    from common.schema import FEATURE_FIELDS

    features = [{f: r[f] for f in FEATURE_FIELDS} for r in rows]
    return [json.dumps({key: features[i:i + rows_per_request]}).encode()
            for i in range(0, len(features) - rows_per_request + 1, rows_per_request)]
