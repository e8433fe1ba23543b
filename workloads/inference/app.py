"""The ASGI application: routing, request validation, scoring through the batcher, health and metrics.

Plain ASGI rather than a framework: the hot path is one JSON parse (orjson), a bulk validity check of the
rows, one numpy encode and an await on the batcher, with nothing else per request. Anything the fast paths do
not accept (malformed JSON, an invalid row) goes through the stdlib parser and common.schema's validation, so
error statuses and messages are exactly those of the full checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import mlflow
import orjson
from mlflow.tracking import MlflowClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.schema import (
    CHANNELS,
    ID_FIELDS,
    LABEL,
    MERCHANT_CATEGORIES,
    encode_features,
    validate_record,
)

from . import metrics
from .batcher import MicroBatcher, ModelUnavailable
from .config import ServerConfig
from .model_store import LoadedModel, load_version, resolve_alias

log = logging.getLogger(__name__)

MAX_ERRORS_REPORTED = 50
ROUTES = {"/invocations": ("POST",), "/healthz/live": ("GET",), "/healthz/ready": ("GET",), "/metrics": ("GET",)}


class HTTPError(Exception):
    def __init__(self, status: int, errors: list[str]):
        self.status, self.errors = status, errors


def _json(status: int, payload: dict) -> tuple[int, bytes, bytes]:
    return status, orjson.dumps(payload), b"application/json"


def _parse(raw: bytes):
    """orjson first; on anything it rejects, the stdlib parser decides (and words the error).

    The stdlib accepts some documents orjson does not (integers past 64-bit floats, lone surrogates, NaN), which
    validation then reports field by field, exactly as before.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_COUNTRIES = frozenset(a + b for a in _UPPER for b in _UPPER)
_CATEGORY_SET = frozenset(MERCHANT_CATEGORIES)
_CHANNEL_SET = frozenset(CHANNELS)
_NOT_FEATURES = ID_FIELDS + (LABEL,)


def _plainly_valid(row) -> bool:
    """True only for rows validate_record(row, require_label=False, require_ids=False) accepts.

    A quick check for the common case, stricter than the full one: a row carrying ids or a label, or anything
    unusual, returns False and gets the full validation (which also words the errors).
    """
    if type(row) is not dict:
        return False
    try:
        amount = row["amount"]
        distance = row["distance_from_home_km"]
        since = row["seconds_since_last_txn"]
        count = row["txn_count_1h"]
        category = row["merchant_category"]
        channel = row["channel"]
        country = row["country"]
        card_country = row["card_country"]
    except KeyError:
        return False
    # type() is, not isinstance: bool (an int subclass) must not pass; NaN fails every comparison.
    return (
        (type(amount) is float or type(amount) is int) and 0.0 < amount <= 50_000.0
        and (type(distance) is float or type(distance) is int) and 0.0 <= distance <= 20_000.0
        and (type(since) is float or type(since) is int) and 0.0 <= since <= 31_536_000.0
        and (type(count) is int or (type(count) is float and count.is_integer())) and 0 <= count <= 1000
        and type(category) is str and category in _CATEGORY_SET
        and type(channel) is str and channel in _CHANNEL_SET
        and type(country) is str and country in _COUNTRIES
        and type(card_country) is str and card_country in _COUNTRIES
        and not any(name in row for name in _NOT_FEATURES)
    )


class InferenceApp:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.model: LoadedModel | None = None
        self.draining = False
        # The batcher encodes each batch's validated rows in one call.
        self.batcher = MicroBatcher(
            config.max_batch_size, config.max_batch_delay_s, lambda: self.model, encode=encode_features
        )
        self.prediction_log = None
        self._tasks: list[asyncio.Task] = []
        self._label = config.model_name
        # Labelled metric children, looked up once rather than per request.
        self._duration = metrics.REQUEST_DURATION.labels(model=self._label)
        self._score = metrics.PREDICTION_SCORE.labels(model=self._label)
        self._requests: dict[int, object] = {}

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        mlflow.set_tracking_uri(self.config.tracking_uri)
        if self.config.prediction_logging:
            from .prediction_log import PredictionLog

            self.prediction_log = PredictionLog(self.config.predictions_topic)
        self.batcher.start()
        # Loading happens in the background: liveness answers at once, readiness waits for a model.
        self._tasks.append(asyncio.get_running_loop().create_task(self._follow_model(), name="model-follower"))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.batcher.stop()
        if self.prediction_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.prediction_log.close)

    async def _follow_model(self) -> None:
        """Loads the configured version, or follows the alias: poll, and swap when it moves."""
        loop = asyncio.get_running_loop()
        client = MlflowClient()
        while True:
            try:
                wanted = self.config.version or await loop.run_in_executor(
                    None, resolve_alias, client, self.config.model_name, self.config.alias
                )
                if wanted is None:
                    log.warning(
                        "%s@%s does not exist; %s",
                        self.config.model_name,
                        self.config.alias,
                        "not ready" if self.model is None else f"still serving version {self.model.version}",
                    )
                elif self.model is None or wanted != self.model.version:
                    log.info("loading %s version %s", self.config.model_name, wanted)
                    new = await loop.run_in_executor(None, load_version, self.config.model_name, wanted)
                    self._swap(new)
                    if self.config.version:
                        return  # pinned: nothing to follow
            except asyncio.CancelledError:
                raise
            except Exception:  # registry hiccups must not kill the follower; the current model keeps serving
                log.exception("checking %s for a new model version failed; retrying", self.config.model_name)
            await asyncio.sleep(self.config.poll_seconds)

    def _swap(self, new: LoadedModel) -> None:
        old, self.model = self.model, new  # one assignment: the batcher sees the old or the new model, never a mix
        if old is not None:
            try:
                metrics.MODEL_VERSION.remove(self._label, old.version)
            except KeyError:
                pass
        metrics.MODEL_VERSION.labels(model=self._label, version=new.version).set(1)
        log.info("now serving %s version %s (was %s)", new.name, new.version, old.version if old else "none")

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        allowed = ROUTES.get(path)
        if allowed is None:
            await self._respond(send, *_json(404, {"errors": [f"path: {path} not found; POST /invocations"]}))
        elif method not in allowed:
            status, body, ctype = _json(405, {"errors": [f"method: {method} not allowed on {path}"]})
            await self._respond(send, status, body, ctype, [(b"allow", ", ".join(allowed).encode())])
        elif path == "/invocations":
            await self._invocations(scope, receive, send)
        elif path == "/healthz/live":
            await self._respond(send, *_json(200, {"status": "alive"}))
        elif path == "/healthz/ready":
            await self._ready(send)
        else:
            await self._respond(send, 200, generate_latest(), CONTENT_TYPE_LATEST.encode())

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ready(self, send) -> None:
        if self.draining:
            payload = _json(503, {"status": "draining"})
        elif self.model is None:
            payload = _json(503, {"status": "no model loaded"})
        else:
            payload = _json(200, {"status": "ready", "model": self.model.name, "model_version": self.model.version})
        await self._respond(send, *payload)

    @staticmethod
    async def _respond(send, status: int, body: bytes, content_type: bytes, headers: list | None = None) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
                + (headers or []),
            }
        )
        await send({"type": "http.response.body", "body": body})

    # ------------------------------------------------------------------ /invocations
    async def _invocations(self, scope, receive, send) -> None:
        start = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        status = 500
        try:
            try:
                status, body, ctype = await self._predict(scope, receive)
            except HTTPError as exc:
                status, body, ctype = _json(exc.status, {"errors": exc.errors})
            except Exception:
                log.exception("scoring failed")
                status, body, ctype = _json(500, {"errors": ["server: internal error while scoring"]})
            await self._respond(send, status, body, ctype)
        finally:
            metrics.IN_FLIGHT.dec()
            counter = self._requests.get(status)
            if counter is None:
                counter = self._requests[status] = metrics.REQUESTS.labels(model=self._label, status=str(status))
            counter.inc()
            self._duration.observe(time.perf_counter() - start)

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.config.max_body_bytes
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"")
        if ctype != b"application/json":
            ctype = ctype.split(b";")[0].strip().lower()
            if ctype != b"application/json":
                raise HTTPError(415, [f"content-type: must be application/json, got {ctype.decode(errors='replace')!r}"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, [f"body: {int(declared)} bytes, at most {limit} (MAX_BODY_BYTES)"])
        # Content-Length can be absent (chunked) or wrong: count what actually arrives.
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):  # all in one piece
            body = message.get("body", b"")
            if len(body) > limit:
                raise HTTPError(413, [f"body: more than {limit} bytes (MAX_BODY_BYTES)"])
            return body
        chunks, size = [], 0
        while True:
            if message["type"] == "http.disconnect":
                raise HTTPError(400, ["body: client disconnected before sending it all"])
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, [f"body: more than {limit} bytes (MAX_BODY_BYTES)"])
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()

    def _rows(self, raw: bytes) -> list:
        try:
            body = _parse(raw)
        # ValueError also covers integer literals past Python's digit limit; RecursionError, absurd nesting.
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, [f"body: malformed JSON: {exc}"[:300]]) from None
        except RecursionError:
            raise HTTPError(400, ["body: malformed JSON: nested too deeply"]) from None
        if not isinstance(body, dict):
            raise HTTPError(422, [f"body: must be a JSON object with an 'instances' list, got {type(body).__name__}"])
        # `dataframe_records` / `dataframe_split` are what `mlflow models serve` clients send.
        if "instances" in body:
            key, rows = "instances", body["instances"]
        elif "dataframe_records" in body:
            key, rows = "dataframe_records", body["dataframe_records"]
        elif "dataframe_split" in body:
            key, rows = "dataframe_split", self._from_split(body["dataframe_split"])
        else:
            raise HTTPError(422, ["instances: missing; send {\"instances\": [{...transaction fields...}]}"])
        if not isinstance(rows, list):
            raise HTTPError(422, [f"{key}: must be a list of objects, got {type(rows).__name__}"])
        if not rows:
            raise HTTPError(422, [f"{key}: must not be empty"])
        if len(rows) > self.config.max_rows_per_request:
            raise HTTPError(
                413, [f"{key}: {len(rows)} rows, at most {self.config.max_rows_per_request} (MAX_ROWS_PER_REQUEST)"]
            )
        if all(map(_plainly_valid, rows)):
            return rows
        errors = []
        for i, row in enumerate(rows):
            for problem in validate_record(row, require_label=False, require_ids=False):
                errors.append(f"{key}[{i}].{problem}")
        if errors:
            extra = len(errors) - MAX_ERRORS_REPORTED
            errors = errors[:MAX_ERRORS_REPORTED] + ([f"... and {extra} more"] if extra > 0 else [])
            raise HTTPError(422, errors)
        return rows

    @staticmethod
    def _from_split(split) -> list:
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) or not isinstance(
            split.get("data"), list
        ):
            raise HTTPError(422, ["dataframe_split: must be an object with 'columns' and 'data' lists"])
        columns = split["columns"]
        if not all(isinstance(c, str) for c in columns):
            raise HTTPError(422, ["dataframe_split.columns: must be a list of field names (strings)"])
        return [dict(zip(columns, row)) if isinstance(row, list) else row for row in split["data"]]

    async def _predict(self, scope, receive) -> tuple[int, bytes, bytes]:
        raw = await self._read_body(scope, receive)
        rows = self._rows(raw)
        if self.model is None:
            raise HTTPError(503, ["model: not loaded yet"])
        try:
            scores, model = await self.batcher.submit(rows, scope.get("client"))
        except ModelUnavailable:
            raise HTTPError(503, ["model: not loaded yet"]) from None
        threshold = model.threshold
        values = scores.tolist()
        observe = self._score.observe
        for value in values:
            observe(value)
        if self.prediction_log is not None:
            self.prediction_log.publish(rows, values, model.name, model.version)
        payload = {
            "predictions": [{"score": v, "is_fraud": v >= threshold} for v in values],
            "model_version": model.version,
        }
        return _json(200, payload)
