"""Workloads as child processes, the way their containers run them: `python -m <name>` with a CONTRACT.md environment.

Each child gets its own process group and log file; `stop_all()` (also run on Ctrl-C or failure) ends every one,
so a demo never leaves anything listening.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = REPO / "workloads"


class StepError(RuntimeError):
    """A workload failed; the message says which, how, and ends with the tail of its log."""


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Workloads:
    def __init__(self, workdir: Path, env: Mapping[str, str]):
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # The interpreter's bin directory goes first on PATH: tools the workloads spawn (torchrun workers, the
        # uvicorn that `mlflow models serve` runs) must come from the same environment.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.env = {**os.environ, **env, "PYTHONPATH": str(WORKLOADS), "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "1", "PATH": path}
        self.running: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, module: str, env: Mapping[str, str] | None = None,
              args: Sequence[str] = ()) -> subprocess.Popen:
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=WORKLOADS,
                                    env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.running[name] = proc
        return proc

    def run(self, name: str, module: str, env: Mapping[str, str] | None = None, args: Sequence[str] = (),
            timeout_s: float = 600, ok_codes: Sequence[int] = (0,)) -> int:
        proc = self.start(name, module, env, args)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise StepError(f"{name} did not finish within {timeout_s:.0f} s; log {self.log(name)}:\n"
                            f"{log_tail(self.log(name))}") from None
        self.running.pop(name, None)
        if code not in ok_codes:
            raise StepError(f"{name} exited with code {code}; log {self.log(name)}:\n{log_tail(self.log(name))}")
        return code

    def check_alive(self, name: str) -> None:
        proc = self.running.get(name)
        if proc is not None and proc.poll() is not None:
            raise StepError(f"{name} stopped unexpectedly (exit code {proc.returncode}); log {self.log(name)}:\n"
                            f"{log_tail(self.log(name))}")

    def stop(self, name: str, grace_s: float = 20.0) -> int | None:
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        _signal_group(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            return proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_until(check, *, timeout_s: float, what: str, interval_s: float = 0.5, on_tick=None):
    """Poll `check()` until it returns a truthy value; `on_tick(value)` reports progress."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if on_tick:
            on_tick(value)
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def http_ready(url: str) -> bool:
    """True when `url` answers 200 now (a health or readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except OSError:
        return False
