"""Training checkpoints in S3, written so a kill at any instant leaves a loadable checkpoint behind.

Layout under CHECKPOINT_URI:
  ckpt-<global step, 10 digits>.pt   full state (model, optimizer, data position, RNG states)
  latest.json                        {"key": ..., "global_step": ...}: the newest complete checkpoint
  mlflow_run.json                    the MLflow run this job logs to, so a restarted pod continues it
  result.json                        written once the model is registered; a restart then does nothing
Each S3 PUT is atomic, and the pointer is only moved after the checkpoint object exists, so a reader never
follows it to a partial object. Older checkpoints are deleted only after the pointer moved.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re

import numpy as np
import torch

from common.lake import S3Uri, delete, get_bytes, list_keys, parse_s3_uri, put_bytes

log = logging.getLogger(__name__)

_CKPT = re.compile(r"ckpt-(\d{10})\.pt")


def capture_rng() -> dict:
    """Every RNG the training step can touch. Stored as tensors and ints so torch.load(weights_only=True) works."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"], np_state["cached"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    def __init__(self, uri: str, keep: int = 2):
        self.prefix: S3Uri = parse_s3_uri(uri, name="CHECKPOINT_URI", prefix=True)
        self.keep = max(2, keep)

    def _uri(self, name: str) -> S3Uri:
        return self.prefix.join(name)

    def read_json(self, name: str) -> dict | None:
        raw = get_bytes(self._uri(name))
        return None if raw is None else json.loads(raw)

    def write_json(self, name: str, value: dict) -> None:
        put_bytes(self._uri(name), json.dumps(value, sort_keys=True).encode(), "application/json")

    def load_latest(self) -> dict | None:
        pointer = self.read_json("latest.json")
        if pointer is None:
            return None
        raw = get_bytes(S3Uri(self.prefix.bucket, pointer["key"]))
        if raw is None:
            raise RuntimeError(f"{self.prefix}latest.json points at {pointer['key']}, which does not exist")
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        log.info("loaded checkpoint s3://%s/%s (global step %d)", self.prefix.bucket, pointer["key"], state["global_step"])
        return state

    def save(self, state: dict) -> None:
        step = int(state["global_step"])
        buffer = io.BytesIO()
        torch.save(state, buffer)
        key = self._uri(f"ckpt-{step:010d}.pt")
        put_bytes(key, buffer.getvalue())
        self.write_json("latest.json", {"key": key.key, "global_step": step})
        self._prune(step)
        log.info("checkpoint saved at global step %d -> %s", step, key)

    def _prune(self, current: int) -> None:
        steps = self._checkpoints()
        kept = sorted((s for s, _ in steps if s <= current), reverse=True)[: self.keep]
        for step, uri in steps:
            # Anything newer than the pointer is a leftover of a killed attempt; it gets rewritten identically.
            if step not in kept:
                delete(uri)

    def checkpoint_steps(self) -> list[int]:
        return sorted(step for step, _ in self._checkpoints())

    def _checkpoints(self) -> list[tuple[int, S3Uri]]:
        """Checkpoints directly under the prefix (not in deeper "folders"), by global step."""
        found = []
        for uri in list_keys(self.prefix, ".pt"):
            match = _CKPT.fullmatch(uri.key[len(self.prefix.key) :])
            if match:
                found.append((int(match.group(1)), uri))
        return found
