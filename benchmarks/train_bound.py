"""python -m benchmarks.train_bound --batch-size B [--seconds S] [--rows N]: training's compute bound on this CPU.

A bare loop of forward + backward + optimizer step on batches already in memory (contiguous tensors, no
sampling, indexing, hooks or checkpoints): the trainer's own model class and shape, optimizer, loss, batch size,
deterministic-kernel setting and torch threads (this process gets the trainer's environment, so the same
OMP_NUM_THREADS). Prints {"samples_per_s": ..., ...} as JSON. The trainer's single-process figure over this one
is the share of the CPU's best that the training loop achieves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_bound", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window, after a warm-up")
    parser.add_argument("--rows", type=int, default=65536, help="rows of synthetic data held in memory")
    args = parser.parse_args(argv)

    import torch
    from torch import nn

    from common.schema import FEATURE_NAMES
    from training.config import load_config
    from training.model import FraudMLP
    from training.trainer import make_deterministic

    # The trainer's defaults for everything but the batch size (URIs are required by the loader, never used here).
    cfg = load_config({"LAKE_CURATED_URI": "s3://unused/x/", "CHECKPOINT_URI": "s3://unused/y/",
                       "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "BATCH_SIZE": str(args.batch_size)})
    make_deterministic(cfg.seed)
    n_features = len(FEATURE_NAMES)
    rows = max(args.rows, cfg.batch_size)
    x = torch.randn(rows, n_features)
    y = (torch.rand(rows) < 0.015).float()
    model = FraudMLP(n_features, cfg.hidden_units, cfg.dropout)
    model.set_standardisation(x.numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(65.0))
    batches = [(x[i:i + cfg.batch_size].contiguous(), y[i:i + cfg.batch_size].contiguous())
               for i in range(0, rows - cfg.batch_size + 1, cfg.batch_size)]
    model.train()

    def step(xb, yb) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        optimizer.step()

    warm_until = time.perf_counter() + min(1.0, args.seconds / 4)
    while time.perf_counter() < warm_until:
        for xb, yb in batches[:8]:
            step(xb, yb)
    steps, started = 0, time.perf_counter()
    deadline = started + args.seconds
    while time.perf_counter() < deadline:
        for xb, yb in batches:
            step(xb, yb)
            steps += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"samples_per_s": round(steps * cfg.batch_size / elapsed, 1), "steps": steps,
                      "seconds": round(elapsed, 2), "batch_size": cfg.batch_size,
                      "torch_threads": torch.get_num_threads(), "hidden_units": list(cfg.hidden_units)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
