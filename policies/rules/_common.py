"""Small helpers shared by rules: reading nested props and IAM documents the way the engine hands them over."""

from __future__ import annotations

import json
from typing import Any


def dig(props: Any, *path: Any) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(props, list) and part < len(props):
            props = props[part]
        elif isinstance(props, dict) and part in props:
            props = props[part]
        else:
            return None
    return props


def statements(document: Any) -> list[dict[str, Any]]:
    """IAM statements from a policy document given as JSON text or as an object; unknown (preview) gives none."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    if not isinstance(document, dict):
        return []
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
