"""Typed reads of environment variables that collect every problem before failing.

A pod that is missing three settings should say so once, not crash-loop three times.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """Invalid or missing configuration; the message lists every problem with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class Env:
    """Reads from ``environ`` (default ``os.environ``); call ``check()`` after the reads to raise them all."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def str(self, name: str, default: str | None = None, *, hint: str = "") -> str:
        value = self._environ.get(name, "").strip()
        if value:
            return value
        if default is not None:
            return default
        self.problems.append(f"{name} is not set{': ' + hint if hint else ''}")
        return ""

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def int(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer, got {raw!r}")
            return default
        return self._bounded(name, value, minimum, maximum, default)

    def float(self, name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        return self._bounded(name, value, minimum, maximum, default)

    def bool(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.str(name, default, hint=f"set it to one of {', '.join(allowed)}")
        if value and value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def _bounded(self, name, value, minimum, maximum, default):
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name} must be {bounds}, got {value}")
            return default
        return value

    def check(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)
