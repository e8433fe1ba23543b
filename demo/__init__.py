"""`make demo`: the platform's whole ML lifecycle on one machine, against real local services."""
