"""Pulumi component resources, one per module; `__main__.py` wires them together."""
