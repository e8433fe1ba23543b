"""Dynamic micro-batching: many requests' rows, one model call, and no waiting when the model is idle.

A request appends its rows (validated records, or already encoded features) to a pending list and awaits a
future. One task drains the list: it wakes
as soon as something is pending, takes everything that is (up to MAX_BATCH_SIZE rows) and runs the model once.
There is no fixed batching window: a lone request is dispatched at once, and under load a batch is whatever
arrived while the previous model call ran, so batches grow with the load. The one wait: a lone request from a
different connection than the previous batch's, arriving within MAX_BATCH_DELAY_MS of that batch (several
clients, each too slow to overlap the others), waits for the next request, at most MAX_BATCH_DELAY_MS. One
client at a time (whatever its rate) and requests that queued while the model was busy never wait.

Small batches (up to INLINE_MAX_ROWS rows, the common case) run inline on the event loop: a model call on them
costs about as much as handing it to a thread and waking the loop back up, and while it runs, the requests
arriving meanwhile queue in the socket buffers and become the next batch. Larger batches run in a worker thread
so the event loop keeps serving while they are scored.

The model is read once per batch, so a hot swap takes effect between batches and every row of a batch, and
the version reported with it, come from the same model. With an `encode` function the batcher encodes each
batch's records in one call, so under load the encoding is paid per batch rather than per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sized
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import metrics
from .model_store import LoadedModel

log = logging.getLogger(__name__)

# Batches of at most this many rows are scored on the event loop (about 0.1-0.2 ms for the MLP); bigger ones in
# the worker thread.
INLINE_MAX_ROWS = 1024


class ModelUnavailable(RuntimeError):
    pass


class MicroBatcher:
    def __init__(
        self,
        max_batch_size: int,
        max_delay_s: float,
        current_model: Callable[[], LoadedModel | None],
        inline_max_rows: int = INLINE_MAX_ROWS,
        encode: Callable[[list], np.ndarray] | None = None,
    ):
        self._last_source: object = None  # the connection of the previous batch's last request
        self._last_dispatch = float("-inf")
        self.max_batch_size = max_batch_size
        # Kept for configuration compatibility (MAX_BATCH_DELAY_MS): batches form from what queued while the model
        # was busy, so no request waits for others to join it.
        self.max_delay_s = max_delay_s
        self.inline_max_rows = inline_max_rows
        self._encode = encode
        self._current_model = current_model
        self._pending: list[tuple[Sized, asyncio.Future]] = []
        self._sources: list[object] = []  # parallel to _pending
        self._wakeup: asyncio.Future | None = None
        # One thread: model calls never overlap, so torch's own threads are not oversubscribed.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, features: Sized, source: object = None) -> tuple[np.ndarray, LoadedModel]:
        """Scores for `features`' rows and the model that scored them: records when the batcher has an `encode`
        function, else a float32 array of encoded rows. `source` names the client connection (any hashable)."""
        loop = self._loop or asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((features, future))
        self._sources.append(source)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return await future

    def _take(self) -> list[tuple[Sized, asyncio.Future]]:
        """What is pending, up to max_batch_size rows; a batch exceeds the limit only when one request does."""
        pending = self._pending
        taken, rows = 0, 0
        for features, _ in pending:
            n = len(features)
            if taken and rows + n > self.max_batch_size:
                break
            taken += 1
            rows += n
            if rows >= self.max_batch_size:
                break
        self._last_source = self._sources[taken - 1] if taken else self._last_source
        if taken == len(pending):
            self._pending, self._sources = [], []
            return pending
        batch = pending[:taken]
        del pending[:taken]
        del self._sources[:taken]
        return batch

    async def _linger(self, loop: asyncio.AbstractEventLoop) -> None:
        """A lone request from another client shortly after a batch: wait for the next one, up to max_delay_s."""
        if (
            len(self._pending) != 1
            or self._sources[0] is None
            or self._sources[0] == self._last_source
            or loop.time() - self._last_dispatch > self.max_delay_s
            or len(self._pending[0][0]) >= self.max_batch_size
        ):
            return
        self._wakeup = wakeup = loop.create_future()
        timer = loop.call_later(self.max_delay_s, lambda: wakeup.done() or wakeup.set_result(None))
        try:
            await wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
            if self.max_delay_s > 0:
                await self._linger(loop)
            batch = [item for item in self._take() if not item[1].done()]  # client gone (cancelled)
            if not batch:
                continue
            model = self._current_model()
            if model is None:
                for _, future in batch:
                    future.set_exception(ModelUnavailable("no model loaded"))
                continue
            try:
                if self._encode is not None:
                    features = self._encode(batch[0][0] if len(batch) == 1 else [r for rows, _ in batch for r in rows])
                else:
                    features = batch[0][0] if len(batch) == 1 else np.concatenate([f for f, _ in batch])
                if len(features) <= self.inline_max_rows:
                    scores = model.scores(features)
                else:
                    scores = await loop.run_in_executor(self._executor, model.scores, features)
            except Exception as exc:  # one bad batch must not stop the batcher
                log.exception("model call failed for %d rows", sum(len(f) for f, _ in batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._last_dispatch = loop.time()
            metrics.BATCH_SIZE.observe(len(features))
            start = 0
            for item_features, future in batch:
                end = start + len(item_features)
                if not future.done():
                    future.set_result((scores[start:end], model))
                start = end
            if len(batch) > 1 or self._pending:
                # Let the requests just resolved (and anything else ready) run before the next model call.
                await asyncio.sleep(0)
