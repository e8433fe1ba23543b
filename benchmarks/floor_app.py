"""python -m benchmarks.floor_app --port N: the inference benchmark's floor.

A trivial ASGI app that reads the request body and answers a fixed prediction body of the same shape as the
inference server's (one row), served by uvicorn with exactly the server's settings: the same ``UVICORN_STACK``
(event loop and HTTP parser, imported from ``inference.server``, never restated here) and the same Config
arguments, in one process. The gap between it and the real server is what the server's own work costs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads"))

try:
    from inference.server import UVICORN_STACK
except ImportError as exc:  # the floor must run on the server's stack, or it is no floor at all
    raise SystemExit(f"benchmarks.floor_app: cannot import UVICORN_STACK from inference.server ({exc}); "
                     "the floor must use exactly the inference server's uvicorn settings") from exc

import uvicorn  # noqa: E402

BODY = json.dumps({"predictions": [{"score": 0.0123, "is_fraud": False}], "model_version": "1"},
                  separators=(",", ":")).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:  # read the whole body, as the server must
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    # The same arguments as workloads/inference/server.py main(), apart from the app.
    config = uvicorn.Config(app, host=args.host, port=args.port, lifespan="on", access_log=False, log_level="warning",
                            timeout_graceful_shutdown=60, backlog=2048, **UVICORN_STACK)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
