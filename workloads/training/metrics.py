"""Prometheus metrics of the training job (names and labels from workloads/CONTRACT.md). Rank 0 only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LOSS = Gauge("training_loss", "Mean loss of the latest epoch", ["split"])
SAMPLES = Counter("training_samples_total", "Training samples processed, all ranks together")
EPOCH = Gauge("training_epoch", "Epochs completed")
VALIDATION_PR_AUC = Gauge("training_validation_pr_auc", "PR AUC on the validation split after the latest epoch")
