"""The training loop: deterministic, resumable at any step, single-process or DistributedDataParallel.

Bit-identical resume rests on three things:
  * the data order is a pure function of (seed, epoch): DistributedSampler permutes with a generator seeded
    by seed + epoch, so a resumed run rebuilds the epoch's order and skips the batches already done;
  * every RNG (torch, numpy, python) is saved with the model and optimizer and restored before the next step;
  * deterministic kernels (torch.use_deterministic_algorithms) and the same thread settings.
All ranks seed identically, so rank 0's RNG state is every rank's state and one checkpoint restores all of them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from . import evaluation
from .checkpoint import CheckpointStore, capture_rng, restore_rng
from .config import TrainConfig
from .data import PreparedData
from .model import FraudMLP

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process and nothing is initialised."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if world > 1:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        return Dist(dist.get_rank(), dist.get_world_size(), device)
    return Dist(0, 1, device)


def make_deterministic(seed: int) -> None:
    # cuBLAS needs a fixed workspace to be deterministic; it is read when CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    import random

    random.seed(seed)


@dataclass
class EpochStats:
    train_loss: float
    validation_loss: float
    validation_pr_auc: float
    samples_per_second: float
    """All ranks' training samples over the time spent in training steps (checkpoint writes excluded)."""


class Hooks:
    """What the loop reports; the main module wires these to MLflow and Prometheus on rank 0."""

    def on_step(self, samples: int) -> None: ...

    def on_epoch(self, epoch: int, stats: EpochStats) -> None: ...


def _batches(sampler: DistributedSampler, epoch: int, batch_size: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def evaluate_loss_and_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[float, np.ndarray]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = float(loss_fn(logits, y))
    model.train()
    return loss, torch.sigmoid(logits).cpu().numpy()


def train(
    cfg: TrainConfig,
    data: PreparedData,
    store: CheckpointStore,
    env: Dist,
    hooks: Hooks,
    resume_state: dict | None,
) -> FraudMLP:
    """Returns the trained (unwrapped) model, on CPU, in eval mode."""
    make_deterministic(cfg.seed)
    train_split, val_split = data.splits["train"], data.splits["validation"]
    x_train = torch.from_numpy(train_split.features).to(env.device)
    y_train = torch.from_numpy(train_split.labels).to(env.device)
    x_val = torch.from_numpy(val_split.features).to(env.device)
    y_val = torch.from_numpy(val_split.labels).to(env.device)

    model = FraudMLP(x_train.shape[1], cfg.hidden_units, cfg.dropout)
    model.set_standardisation(train_split.features)
    model.to(env.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # Fraud is ~1-2% of rows: weight positives by the class ratio so the loss does not reward "never fraud".
    positives = float(train_split.labels.sum())
    pos_weight = torch.tensor((len(train_split.labels) - positives) / max(positives, 1.0), device=env.device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    epoch, step_in_epoch, global_step = 0, 0, 0
    loss_sum, loss_count = 0.0, 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        epoch, step_in_epoch, global_step = (
            resume_state["epoch"],
            resume_state["step_in_epoch"],
            resume_state["global_step"],
        )
        loss_sum, loss_count = resume_state["loss_sum"], resume_state["loss_count"]
        restore_rng(resume_state["rng"])
        log.info("resuming at epoch %d, step %d of the epoch (global step %d)", epoch, step_in_epoch, global_step)

    net: nn.Module = model
    if env.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    sampler = DistributedSampler(
        range(len(y_train)), num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed
    )

    def checkpoint() -> None:
        if not env.is_main:
            return
        store.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "loss_sum": loss_sum,
                "loss_count": loss_count,
                "rng": capture_rng(),
            }
        )

    net.train()
    while epoch < cfg.epochs:
        batches = _batches(sampler, epoch, cfg.batch_size)
        step_seconds, epoch_samples = 0.0, 0
        for batch in batches[step_in_epoch:]:
            started = time.perf_counter()
            index = torch.tensor(batch, device=env.device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            step_in_epoch += 1
            global_step += 1
            loss_sum += loss.item()
            loss_count += 1
            step_seconds += time.perf_counter() - started
            epoch_samples += len(batch) * env.world_size
            hooks.on_step(len(batch) * env.world_size)
            # The epoch's last step is checkpointed below, after the epoch counters move on.
            if global_step % cfg.checkpoint_every_steps == 0 and step_in_epoch < len(batches):
                checkpoint()
        if env.is_main:
            val_loss, val_scores = evaluate_loss_and_scores(model, x_val, y_val, loss_fn)
            stats = EpochStats(
                train_loss=loss_sum / max(loss_count, 1),
                validation_loss=val_loss,
                validation_pr_auc=evaluation.pr_auc(val_split.labels, val_scores),
                samples_per_second=epoch_samples / step_seconds if step_seconds else 0.0,
            )
            hooks.on_epoch(epoch, stats)
            log.info(
                "epoch %d: train loss %.5f, validation loss %.5f, validation PR AUC %.4f",
                epoch,
                stats.train_loss,
                stats.validation_loss,
                stats.validation_pr_auc,
            )
        epoch, step_in_epoch, loss_sum, loss_count = epoch + 1, 0, 0.0, 0
        checkpoint()
    return model.cpu().eval()
