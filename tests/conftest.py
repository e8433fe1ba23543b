"""Shared fixtures: each stack's plan is computed once per test session (about half a second each)."""

from __future__ import annotations

import functools

import pytest

from offline.harness import STACKS, Plan, run_program


@functools.cache
def stack_plan(stack: str) -> Plan:
    return run_program(stack)


@pytest.fixture(params=STACKS)
def plan(request) -> Plan:
    return stack_plan(request.param)


@pytest.fixture
def plans() -> dict[str, Plan]:
    return {s: stack_plan(s) for s in STACKS}
