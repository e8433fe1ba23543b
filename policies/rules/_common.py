"""Small helpers shared by rules: reading nested props and IAM documents the way the engine hands them over.

The engine does not hand rules dicts and lists: it wraps every object in a read-only Mapping and every array in a
Sequence that raise on values unknown during a preview (pulumi_policy/proxy.py, ``unknown_checking_proxy``). So
rules test for Mapping and Sequence, never dict and list; offline/policy_check.py wraps the plan the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def is_array(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def dig(props: Any, *path: Any) -> Any:
    for part in path:
        if isinstance(part, int) and is_array(props) and part < len(props):
            props = props[part]
        elif isinstance(part, str) and isinstance(props, Mapping) and part in props:
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
    if not isinstance(document, Mapping):
        return []
    found = document.get("Statement", [])
    return list(found) if is_array(found) else [found]


def as_list(value: Any) -> list[Any]:
    return list(value) if is_array(value) else [value]
