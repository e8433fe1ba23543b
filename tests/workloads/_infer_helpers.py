"""Running `python -m inference` as a real uvicorn subprocess and talking HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ._train_helpers import WORKLOADS

FEATURES = {
    "merchant_category": "grocery",
    "channel": "pos",
    "amount": 42.5,
    "country": "DE",
    "card_country": "DE",
    "distance_from_home_km": 3.2,
    "seconds_since_last_txn": 3600.0,
    "txn_count_1h": 1,
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, env: Mapping[str, str], log_path: Path, **overrides: str):
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "HOST": "127.0.0.1", **overrides}
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inference"], env=self.env, cwd=WORKLOADS, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def predict(self, rows, key: str = "instances"):
        status, raw = self.request(
            "POST", "/invocations", json.dumps({key: rows}).encode(), {"Content-Type": "application/json"}
        )
        return status, json.loads(raw)

    def wait_status(self, path: str, status: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                last = self.request("GET", path, timeout=2)[0]
                if last == status:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"GET {path} never returned {status} (last: {last}):\n{self.log()[-3000:]}")

    def metrics(self) -> str:
        status, raw = self.request("GET", "/metrics")
        assert status == 200
        return raw.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def metric_value(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
    total = 0.0
    for match in pattern.finditer(text):
        if labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


os.environ.setdefault("NO_PROXY", "127.0.0.1")
