"""Fraud model training job: `python -m training` (configuration: workloads/CONTRACT.md and README.md)."""
