"""A config reader that collects every problem instead of stopping at the first.

Each `Section` wraps one object of raw config (the project namespace, or a nested object such as `systemNodes`),
hands out typed values, and remembers which keys were read so that anything left over is reported as unknown, with
the closest known key as the suggested fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from typing import Any, Iterable, Sequence, TypeVar

T = TypeVar("T")
_MISSING = object()
# What an EKS access entry accepts: an IAM role (with its path) or user, never an STS session or a group.
IAM_PRINCIPAL = r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+"


class ConfigError(ValueError):
    """Raised before any resource is declared; its message lists every problem in the stack config."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"stack '{stack}' has {len(self.problems)} config problem(s); nothing was declared. "
            f"Fix them in stacks/Pulumi.{stack}.yaml (or with `pulumi config set`):\n{lines}"
        )


class Problems:
    def __init__(self):
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")


class Section:
    """Typed access to one config object; `prefix` is how its keys are named in messages (`ml-platform:gpuPools[0]`)."""

    def __init__(self, raw: dict[str, Any], prefix: str, problems: Problems, separator: str = "."):
        self.raw = raw
        self.prefix = prefix
        self.separator = separator
        self.problems = problems
        self.known: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{self.separator}{name}"

    def _get(self, name: str) -> Any:
        self.known.add(name)
        return self.raw.get(name, _MISSING)

    def _wrong(self, name: str, expected: str, value: Any) -> None:
        self.problems.add(self.key(name), f"expected {expected}, got {json.dumps(value)}")

    def string(self, name: str, default: Any = _MISSING, *, choices: Iterable[str] | None = None,
               pattern: str | None = None, hint: str = "") -> str:
        value = self._get(name)
        if value is _MISSING:
            if default is _MISSING:
                self.problems.add(self.key(name), f"required; set it{hint or ''}")
                return ""
            return default
        if not isinstance(value, str):
            self._wrong(name, "a string", value)
            return default if default is not _MISSING else ""
        if choices is not None and value not in choices:
            self.problems.add(self.key(name), f"{value!r} is not allowed; use one of: {', '.join(sorted(choices))}")
        elif pattern is not None and not re.fullmatch(pattern, value):
            self.problems.add(self.key(name), f"{value!r} is not valid{hint}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = _coerce_int(self._get(name))
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self._wrong(name, f"a whole number from {minimum} to {maximum}", value)
            return default
        if not minimum <= value <= maximum:
            self.problems.add(self.key(name), f"{value} is out of range; use a value from {minimum} to {maximum}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._get(name)
        if value is _MISSING:
            return default
        if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):
            value = float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self._wrong(name, f"a number from {minimum} to {maximum}", value)
            return default
        if not minimum <= value <= maximum:
            self.problems.add(self.key(name), f"{value} is out of range; use a value from {minimum} to {maximum}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is _MISSING:
            return default
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            self._wrong(name, "true or false", value)
            return default
        return value

    def string_list(self, name: str, default: list[str], *, min_items: int = 0) -> list[str]:
        value = self._get(name)
        if value is _MISSING:
            value = default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._wrong(name, "a list of strings", value)
            return list(default)
        if len(value) < min_items:
            self.problems.add(self.key(name), f"needs at least {min_items} item(s), got {len(value)}")
        if len(set(value)) != len(value):
            self.problems.add(self.key(name), "contains duplicates")
        return list(value)

    def string_map(self, name: str) -> dict[str, str]:
        value = self._get(name)
        if value is _MISSING:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self._wrong(name, "an object of string values", value)
            return {}
        return dict(value)

    def section(self, name: str) -> "Section":
        value = self._get(name)
        if value is _MISSING:
            value = {}
        elif not isinstance(value, dict):
            self._wrong(name, "an object", value)
            value = {}
        return Section(value, self.key(name), self.problems)

    def sections(self, name: str, default: list[dict[str, Any]]) -> list["Section"]:
        value = self._get(name)
        if value is _MISSING:
            value = default
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self._wrong(name, "a list of objects", value)
            return []
        return [Section(item, f"{self.key(name)}[{i}]", self.problems) for i, item in enumerate(value)]

    def cidr(self, name: str, default: str, *, min_prefix: int, max_prefix: int) -> ipaddress.IPv4Network | None:
        text = self.string(name, default)
        try:
            network = ipaddress.IPv4Network(text)
        except ValueError as exc:
            self.problems.add(self.key(name), f"{text!r} is not an IPv4 CIDR block ({exc})")
            return None
        if not min_prefix <= network.prefixlen <= max_prefix:
            self.problems.add(self.key(name), f"prefix /{network.prefixlen} is out of range; use /{min_prefix} to /{max_prefix}")
            return None
        return network

    def finish(self) -> None:
        """Report every key that no reader asked for; each is a typo or a setting this version does not have."""
        for unknown in sorted(set(self.raw) - self.known):
            close = difflib.get_close_matches(unknown, sorted(self.known), n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(self.known))}"
            self.problems.add(self.key(unknown), f"unknown key; {fix}")


def _coerce_int(value: Any) -> Any:
    # The CLI hands top-level scalars over as strings; `pulumi config set minSize 3` must still count as a number.
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def decode(value: str) -> Any:
    """A top-level value as the program receives it: objects and lists arrive JSON-encoded, scalars as text."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
