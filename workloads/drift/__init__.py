"""Feature and prediction-score drift (PSI) between a reference window and recent data."""

from .psi import DriftReport, compute_drift, psi_categorical, psi_numeric

__all__ = ["DriftReport", "compute_drift", "psi_categorical", "psi_numeric"]
