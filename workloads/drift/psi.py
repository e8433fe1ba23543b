"""Population Stability Index per feature.

PSI = sum((recent% - reference%) * ln(recent% / reference%)) over bins. Numeric bins are the reference's
deciles, so each reference bin holds ~10 % whatever the distribution's shape (heavy tails included); the
outer bins are open-ended so recent values outside the reference range still land somewhere. Empty bins get a
small floor so one empty bin does not make PSI infinite. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate,
> 0.2 significant (the default threshold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

DEFAULT_THRESHOLD = 0.2
SCORE_FEATURE = "prediction_score"
N_BINS = 10
_FLOOR = 1e-4
MIN_ROWS = 50  # fewer rows give PSI values dominated by sampling noise


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref = np.maximum(ref_counts / max(ref_counts.sum(), 1), _FLOOR)
    cur = np.maximum(cur_counts / max(cur_counts.sum(), 1), _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_numeric(reference: Sequence[float], recent: Sequence[float], bins: int = N_BINS) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(recent, dtype=np.float64)
    # Interior edges only; unique() merges edges of point masses (e.g. many zero counts) into one bin.
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    return _psi(ref_counts.astype(np.float64), cur_counts.astype(np.float64))


def psi_categorical(reference: Sequence[Any], recent: Sequence[Any]) -> float:
    categories = sorted(set(map(str, reference)) | set(map(str, recent)))
    index = {c: i for i, c in enumerate(categories)}
    ref_counts = np.bincount([index[str(v)] for v in reference], minlength=len(categories))
    cur_counts = np.bincount([index[str(v)] for v in recent], minlength=len(categories))
    return _psi(ref_counts.astype(np.float64), cur_counts.astype(np.float64))


@dataclass
class DriftReport:
    psi: dict[str, float]
    threshold: float
    reference_rows: int
    recent_rows: int
    drifted: list[str] = field(default_factory=list)

    @property
    def detected(self) -> bool:
        return bool(self.drifted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "psi": {k: round(v, 6) for k, v in self.psi.items()},
            "reference_rows": self.reference_rows,
            "recent_rows": self.recent_rows,
        }


def _column(rows: Any, name: str) -> list:
    if hasattr(rows, "columns") and not isinstance(rows, (list, tuple)):
        if name not in rows.columns:
            raise KeyError(f"{name}: column missing from the data")
        return rows[name].tolist()
    try:
        return [r[name] for r in rows]
    except KeyError:
        raise KeyError(f"{name}: missing from a row") from None


def compute_drift(
    reference_rows: Sequence[Mapping] | Any,
    recent_rows: Sequence[Mapping] | Any,
    reference_scores: Sequence[float] | None = None,
    recent_scores: Sequence[float] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> DriftReport:
    """PSI of every model feature (and of prediction scores when both score sets are given)."""
    n_ref, n_cur = len(reference_rows), len(recent_rows)
    for what, n in (("reference_rows", n_ref), ("recent_rows", n_cur)):
        if n < MIN_ROWS:
            raise ValueError(f"{what}: need at least {MIN_ROWS} rows for a meaningful PSI, got {n}")
    psi: dict[str, float] = {}
    for name in NUMERIC_FEATURES:
        psi[name] = psi_numeric(_column(reference_rows, name), _column(recent_rows, name))
    for name in CATEGORICAL_FEATURES:
        psi[name] = psi_categorical(_column(reference_rows, name), _column(recent_rows, name))
    if (reference_scores is None) != (recent_scores is None):
        raise ValueError("reference_scores and recent_scores: give both or neither")
    if reference_scores is not None:
        psi[SCORE_FEATURE] = psi_numeric(reference_scores, recent_scores)
    drifted = sorted(name for name, value in psi.items() if value > threshold)
    return DriftReport(psi, threshold, n_ref, n_cur, drifted)
