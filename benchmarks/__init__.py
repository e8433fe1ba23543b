"""`make bench`: the workloads measured side by side against what users would otherwise run. Not tests."""
