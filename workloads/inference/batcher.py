"""Dynamic micro-batching: many requests' rows, one model call.

A request puts its encoded rows on a queue and awaits a future. One task drains the queue: it takes what is
waiting, waits at most MAX_BATCH_DELAY_MS for more while under MAX_BATCH_SIZE rows, then runs the model once in
a worker thread (so the event loop keeps parsing requests meanwhile) and resolves every request's future.

The model is read once per batch, so a hot swap takes effect between batches and every row of a batch, and
the version reported with it, come from the same model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import metrics
from .model_store import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class _Item:
    features: np.ndarray
    future: asyncio.Future


class ModelUnavailable(RuntimeError):
    pass


class MicroBatcher:
    def __init__(self, max_batch_size: int, max_delay_s: float, current_model: Callable[[], LoadedModel | None]):
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._current_model = current_model
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        # One thread: model calls never overlap, so torch's own threads are not oversubscribed.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, features: np.ndarray) -> tuple[np.ndarray, LoadedModel]:
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(features, future))
        return await future

    async def _collect(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, rows = [first], len(first.features)
        deadline = loop.time() + self.max_delay_s
        while rows < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + len(item.features) > self.max_batch_size:
                self._carry = item  # starts the next batch; a batch never exceeds the limit unless one request does
                break
            batch.append(item)
            rows += len(item.features)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [item for item in batch if not item.future.done()]  # client gone (cancelled)
            if not batch:
                continue
            model = self._current_model()
            if model is None:
                for item in batch:
                    item.future.set_exception(ModelUnavailable("no model loaded"))
                continue
            features = batch[0].features if len(batch) == 1 else np.concatenate([i.features for i in batch])
            try:
                scores = await loop.run_in_executor(self._executor, model.scores, features)
            except Exception as exc:  # one bad batch must not stop the batcher
                log.exception("model call failed for %d rows", len(features))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            metrics.BATCH_SIZE.observe(len(features))
            start = 0
            for item in batch:
                end = start + len(item.features)
                if not item.future.done():
                    item.future.set_result((scores[start:end], model))
                start = end
