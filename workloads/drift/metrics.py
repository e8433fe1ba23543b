"""Drift metrics, names and labels exactly as in CONTRACT.md."""

from prometheus_client import Gauge

PSI = Gauge("drift_psi", "Population Stability Index, reference vs recent", ["feature"])
DETECTED = Gauge("drift_detected", "1 when any PSI is above the threshold")
LAST_RUN = Gauge("drift_last_run_timestamp_seconds", "Unix time of the last completed drift run")


def publish(report) -> None:
    for feature, value in report.psi.items():
        PSI.labels(feature=feature).set(value)
    DETECTED.set(1 if report.detected else 0)
    LAST_RUN.set_to_current_time()
