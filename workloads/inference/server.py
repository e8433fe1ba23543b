"""Process entry point: uvicorn with graceful draining on SIGTERM.

On SIGTERM readiness turns 503 at once while the server keeps serving for DRAIN_SECONDS (Kubernetes needs
that long to take the pod out of its Service endpoints); then the listener closes, in-flight requests finish,
the batcher and the prediction log shut down, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import torch
import uvicorn

from common.env import ConfigError

from .app import InferenceApp
from .config import load_config

log = logging.getLogger("inference")

# The HTTP stack the server runs on; the benchmark's floor (benchmarks/) runs a trivial app on exactly this one.
# uvloop and httptools (both pinned in requirements.txt) cost a fraction of asyncio's loop and h11 per request.
UVICORN_STACK = {"loop": "uvloop", "http": "httptools"}


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: InferenceApp, drain_seconds: float):
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn's own handler re-raises the signal after shutdown, which would end the process with
        # status -15 instead of 0; handle it on the loop instead.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.app.draining:  # second signal: stop draining now
            self.should_exit = True
            return
        log.info("received %s: draining for %.1f s, then closing", signal.Signals(sig).name, self.drain_seconds)
        self.app.draining = True
        asyncio.get_running_loop().call_later(self.drain_seconds, setattr, self, "should_exit", True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    try:
        config = load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    # Batches are small: one thread per model call beats thread hand-offs, and leaves cores to the event loop.
    torch.set_num_threads(config.torch_threads)
    app = InferenceApp(config)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=60,
        backlog=2048,
        **UVICORN_STACK,
    )
    server = DrainingServer(uv_config, app, config.drain_seconds)
    server.run()
    return 0 if server.started else 1
