"""The inference server's batcher and fast paths, in process: no services, no timing assertions.

Batching is checked by what was batched (the rows of each model call), never by how long anything took.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

import numpy as np
import pytest

from ._infer_helpers import FEATURES


class FakeModel:
    """Records the number of rows of each call; a row's score is its first feature."""

    def __init__(self, version: str = "1", gate: threading.Event | None = None):
        self.version, self.calls, self.gate, self.entered = version, [], gate, threading.Event()

    def scores(self, features: np.ndarray) -> np.ndarray:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(len(features))
        return features[:, 0].copy()


def _batcher(model, **kwargs):
    from inference.batcher import MicroBatcher

    holder = {"model": model}
    return MicroBatcher(kwargs.pop("max_batch_size", 256), kwargs.pop("max_delay_s", 3600.0), lambda: holder["model"],
                        **kwargs), holder


def _rows(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values], dtype=np.float32)


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))  # a guard against hanging, not a timing assertion


def test_a_lone_request_is_dispatched_without_waiting_out_the_window():
    model = FakeModel()

    async def main():
        # An hour-long window: the request is answered only if it does not wait it out.
        batcher, _ = _batcher(model, max_delay_s=3600.0)
        batcher.start()
        try:
            results = []
            for i in range(3):  # one client, one request at a time, same connection
                scores, used = await batcher.submit(_rows(float(i)), ("127.0.0.1", 5000))
                results.append((scores.tolist(), used.version))
            return results
        finally:
            await batcher.stop()

    assert _run(main()) == [([0.0], "1"), ([1.0], "1"), ([2.0], "1")]
    assert model.calls == [1, 1, 1]


def test_requests_arriving_together_share_one_model_call():
    model = FakeModel()

    async def main():
        batcher, _ = _batcher(model)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(_rows(float(i), float(i))) for i in range(10)))
        finally:
            await batcher.stop()

    results = _run(main())
    assert model.calls == [20]
    assert [scores.tolist() for scores, _ in results] == [[float(i), float(i)] for i in range(10)]


def test_requests_queued_while_the_model_is_busy_form_the_next_batch():
    gate = threading.Event()
    model = FakeModel(gate=gate)

    async def main():
        # inline_max_rows=0: every call in the worker thread, so the test can hold the model busy.
        batcher, _ = _batcher(model, inline_max_rows=0)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(_rows(1.0)))
            while not model.entered.is_set():
                await asyncio.sleep(0.001)
            rest = [asyncio.ensure_future(batcher.submit(_rows(float(i)))) for i in range(2, 7)]
            await asyncio.sleep(0)
            gate.set()
            return await first, await asyncio.gather(*rest)
        finally:
            gate.set()
            await batcher.stop()

    (first, _), rest = _run(main())
    assert model.calls == [1, 5]
    assert first.tolist() == [1.0] and [s.tolist() for s, _ in rest] == [[float(i)] for i in range(2, 7)]


def test_a_batch_stays_under_max_batch_size_unless_one_request_exceeds_it():
    model = FakeModel()

    async def main():
        batcher, _ = _batcher(model, max_batch_size=4)
        batcher.start()
        try:
            sizes = (3, 2, 1, 6, 1)
            await asyncio.gather(*(batcher.submit(_rows(*[1.0] * n)) for n in sizes))
        finally:
            await batcher.stop()

    _run(main())
    assert model.calls == [3, 3, 6, 1]


def test_several_clients_too_slow_to_overlap_still_share_model_calls():
    """Requests on different connections a moment apart: a lone one waits for the next (the window is long)."""
    model = FakeModel()

    async def main():
        batcher, _ = _batcher(model, max_delay_s=3600.0)
        batcher.start()
        try:
            await batcher.submit(_rows(0.0), ("127.0.0.1", 1))
            a = asyncio.ensure_future(batcher.submit(_rows(1.0), ("127.0.0.1", 2)))
            for _ in range(5):
                await asyncio.sleep(0)
            b = asyncio.ensure_future(batcher.submit(_rows(2.0), ("127.0.0.1", 3)))
            return (await a)[0].tolist(), (await b)[0].tolist()
        finally:
            await batcher.stop()

    assert _run(main()) == ([1.0], [2.0])
    assert model.calls == [1, 2]


def test_a_swapped_model_answers_whole_batches():
    old, new = FakeModel("1"), FakeModel("2")

    async def main():
        batcher, holder = _batcher(old)
        batcher.start()
        try:
            first = await asyncio.gather(*(batcher.submit(_rows(1.0)) for _ in range(3)))
            holder["model"] = new
            second = await asyncio.gather(*(batcher.submit(_rows(1.0)) for _ in range(3)))
            holder["model"] = None
            from inference.batcher import ModelUnavailable

            with pytest.raises(ModelUnavailable):
                await batcher.submit(_rows(1.0))
            return [m.version for _, m in first], [m.version for _, m in second]
        finally:
            await batcher.stop()

    assert _run(main()) == (["1"] * 3, ["2"] * 3)
    assert old.calls == [3] and new.calls == [3]


def test_a_failing_model_call_fails_its_batch_and_not_the_batcher():
    class Flaky(FakeModel):
        def scores(self, features):
            if not self.calls:
                self.calls.append(-1)
                raise RuntimeError("boom")
            return super().scores(features)

    model = Flaky()

    async def main():
        batcher, _ = _batcher(model)
        batcher.start()
        try:
            with pytest.raises(RuntimeError):
                await batcher.submit(_rows(1.0))
            return (await batcher.submit(_rows(2.0)))[0].tolist()
        finally:
            await batcher.stop()

    assert _run(main()) == [2.0]


def test_the_batcher_encodes_each_batch_once():
    from common.schema import encode_features

    model, encoded = FakeModel(), []

    def encode(rows):
        encoded.append(len(rows))
        return encode_features(rows)

    async def main():
        batcher, _ = _batcher(model, encode=encode)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([FEATURES] * n) for n in (1, 2, 3)))
        finally:
            await batcher.stop()

    results = _run(main())
    assert encoded == [6] and model.calls == [6]
    assert [len(scores) for scores, _ in results] == [1, 2, 3]


def _variants():
    """Valid rows and near misses of every kind the full validation distinguishes."""
    values = {
        "amount": [42.5, 1, 0, 0.0, -1.0, 50_000, 50_000.01, float("nan"), float("inf"), True, "3", None, 10**400],
        "distance_from_home_km": [0, 0.0, 3.2, 20_000.0, 20_001, -0.1, False, float("nan")],
        "seconds_since_last_txn": [0, 3600.0, 31_536_000, 31_536_001, -1],
        "txn_count_1h": [0, 1, 1.0, 1.5, 1000, 1001, -1, True, float("inf"), "1"],
        "merchant_category": ["grocery", "Grocery", "fax", 1, None],
        "channel": ["pos", "atm", "POS", ""],
        "country": ["DE", "de", "DEU", "D", "É1", 7],
        "card_country": ["DE", "US", "us", None],
    }
    for name, options in values.items():
        for value in options:
            yield {**FEATURES, name: value}
    for name in FEATURES:
        row = dict(FEATURES)
        del row[name]
        yield row
    for extra in ({"transaction_id": "t-1"}, {"transaction_id": ""}, {"event_time": "2026-01-01T00:00:00Z"},
                  {"event_time": "yesterday"}, {"is_fraud": 1}, {"is_fraud": 2}, {"unknown": 1}):
        yield {**FEATURES, **extra}
    yield [1, 2]
    yield "row"
    yield None


def test_the_quick_row_check_accepts_only_rows_the_full_validation_accepts():
    from common.schema import validate_record
    from inference.app import _plainly_valid

    checked = 0
    for row in itertools.chain(_variants(), [FEATURES]):
        full = not validate_record(row, require_label=False, require_ids=False)
        if _plainly_valid(row):
            assert full, row
        checked += 1
    assert _plainly_valid(dict(FEATURES)) and checked > 60


def test_json_parsing_falls_back_to_the_stdlib_for_what_orjson_rejects():
    from inference.app import _parse

    assert _parse(b'{"instances": [{"amount": 1.5}]}') == {"instances": [{"amount": 1.5}]}
    big = b'{"a": ' + b"9" * 400 + b"}"
    assert _parse(big) == json.loads(big)  # an int, so validation reports its digits as before
    assert _parse(b'{"a": "\\ud800"}') == {"a": "\ud800"}
    assert _parse(b'{"a": NaN}')["a"] != _parse(b'{"a": NaN}')["a"]
    with pytest.raises(ValueError):
        _parse(b'{"instances": [')
    with pytest.raises(RecursionError):
        _parse(b"[" * 15000)


def test_the_flat_graph_call_scores_exactly_like_the_exported_module(tmp_path):
    import torch

    from common.schema import FEATURE_NAMES, encode_features
    from inference.model_store import LoadedModel, _checked_flat_call
    from training.model import FraudMLP, export_artifacts

    torch.manual_seed(0)
    net = FraudMLP(len(FEATURE_NAMES), (16, 8), 0.1)
    export_artifacts(net, str(tmp_path), {"threshold": 0.5, "feature_names": FEATURE_NAMES})
    exported = torch.export.load(str(tmp_path / "model.pt2"))
    program = exported.module()
    call = _checked_flat_call(exported, program, len(FEATURE_NAMES))
    assert call is not None
    fast = LoadedModel("m", "1", 0.5, program, call)
    slow = LoadedModel("m", "1", 0.5, program)
    for n in (1, 5, 300):
        features = encode_features([{**FEATURES, "amount": 1.0 + i} for i in range(n)])
        assert np.array_equal(fast.scores(features), slow.scores(features))
