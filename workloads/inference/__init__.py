"""Fraud scoring HTTP server: `python -m inference` (configuration: workloads/CONTRACT.md and README.md)."""
