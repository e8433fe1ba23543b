"""Helpers for unit tests that declare a single component under the offline harness."""

from __future__ import annotations

import json
from typing import Any, Callable

from offline.harness import Plan, run_program

UNIT_CONFIG = {"aws:region": "us-west-2", "ml-platform:environment": "dev",
               "ml-platform:availabilityZones": '["us-west-2a", "us-west-2b"]',
               "ml-platform:images": '{"registry": "registry.example.com/ml", "tag": "1.0.0"}'}


def run_component(declare: Callable[[], Any]) -> Plan:
    return run_program("unit", dict(UNIT_CONFIG), program=lambda: declare())


def policy_json(resource: dict[str, Any], field: str = "policy") -> dict[str, Any]:
    return json.loads(resource["inputs"][field])
