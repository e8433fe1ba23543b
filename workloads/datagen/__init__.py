"""Deterministic synthetic card transactions with a learnable, noisy fraud signal.

``generate(n, seed)`` is a pure function of its arguments: the same call always returns the same records,
so tests and benchmarks can regenerate any data set instead of storing it.
"""

from __future__ import annotations

from .generator import DEFAULT_START, generate, make_bad_records

__all__ = ["DEFAULT_START", "generate", "make_bad_records"]
