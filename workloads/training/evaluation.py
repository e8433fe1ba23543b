"""Ranking metrics in numpy, so neither the training image nor the inference image needs scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.shape[0]}) and scores ({scores.shape[0]}) differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels, scores


def _curve(labels: np.ndarray, scores: np.ndarray):
    """Cumulative true/false positives at each distinct score, highest score first.

    Tied scores form one threshold: a model cannot rank inside a tie, so splitting it would invent ordering.
    """
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # Last index of each run of equal scores.
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[ends]
    fps = (ends + 1) - tps
    return tps, fps, scores[ends]


def roc_auc(labels, scores) -> float:
    labels, scores = _check(labels, scores)
    pos = int(labels.sum())
    neg = labels.size - pos
    if pos == 0 or neg == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative label")
    tps, fps, _ = _curve(labels, scores)
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    # Trapezoids: a tie between positives and negatives counts half, like the Mann-Whitney statistic.
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def pr_auc(labels, scores) -> float:
    """Average precision: sum over thresholds of precision weighted by the recall gained there.

    Step-wise rather than trapezoidal, because linear interpolation in PR space overstates the area.
    """
    precision, recall, _ = _precision_recall(labels, scores, "PR AUC")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _precision_recall(labels, scores, what: str):
    """Precision and recall at every distinct score threshold (descending), with those thresholds."""
    labels, scores = _check(labels, scores)
    pos = int(labels.sum())
    if pos == 0:
        raise ValueError(f"{what} needs at least one positive label")
    tps, fps, thresholds = _curve(labels, scores)
    return tps / (tps + fps), tps / pos, thresholds


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    f1: float


def choose_threshold(labels, scores) -> ThresholdChoice:
    """The score threshold (predict fraud when score >= threshold) with the best F1 on these labels."""
    precision, recall, thresholds = _precision_recall(labels, scores, "choosing a threshold")
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))  # first maximum = highest threshold among equals: fewer alerts for the same F1
    return ThresholdChoice(float(thresholds[best]), float(precision[best]), float(recall[best]), float(f1[best]))


def precision_recall_at(labels, scores, threshold: float) -> tuple[float, float]:
    labels, scores = _check(labels, scores)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    flagged = int(predicted.sum())
    pos = int(labels.sum())
    precision = tp / flagged if flagged else 0.0
    recall = tp / pos if pos else 0.0
    return precision, recall
