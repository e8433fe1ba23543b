"""Run the CrossGuard rules in `policies/rules` over an offline plan, as `pulumi preview --policy-pack` would.

CrossGuard itself needs the engine; its rule functions do not. This builds the same argument objects from the
recorded registrations (custom resources only: CrossGuard never sees component inputs) and collects violations.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from pulumi_policy import (PolicyCustomTimeouts, PolicyProviderResource, PolicyResource, PolicyResourceOptions,
                           ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs)

from offline.harness import Plan
from policies.rules import ALL_POLICIES


class Violation(NamedTuple):
    policy: str
    urn: str
    message: str


def _options(r: dict[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=r["protect"], ignore_changes=r["ignoreChanges"], delete_before_replace=None,
                                 aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
                                 additional_secret_outputs=[], parent=r["parent"])


def _provider(plan: Plan, r: dict[str, Any]) -> PolicyProviderResource | None:
    p = plan.by_urn.get(r["provider"]) if r["provider"] else None
    return PolicyProviderResource(p["type"], p["inputs"], p["urn"], p["name"]) if p else None


def check(plan: Plan, policies: Sequence = ALL_POLICIES) -> list[Violation]:
    found: list[Violation] = []
    custom = [r for r in plan.resources if r["custom"] and not r["type"].startswith("pulumi:providers:")]
    for policy in policies:
        if isinstance(policy, ResourceValidationPolicy):
            for r in custom:
                args = ResourceValidationArgs(r["type"], r["inputs"], r["urn"], r["name"], _options(r),
                                              _provider(plan, r))
                policy.validate(args, lambda message, urn=None, r=r, p=policy: found.append(
                    Violation(p.name, urn or r["urn"], message)))
        else:
            resources = {r["urn"]: PolicyResource(r["type"], r["inputs"], r["urn"], r["name"], _options(r),
                                                  _provider(plan, r), None, [], {}) for r in custom}
            for r in custom:
                resources[r["urn"]].dependencies = [resources[u] for u in r["dependsOn"] if u in resources]
            resources = list(resources.values())
            policy.validate(StackValidationArgs(resources), lambda message, urn=None, p=policy: found.append(
                Violation(p.name, urn or "", message)))
    return found


def main(argv: list[str] | None = None) -> int:
    """`make policy STACK=<s>`: the policy pack's verdict on one stack's offline plan."""
    import argparse
    import sys

    from offline.harness import STACKS, run_program
    parser = argparse.ArgumentParser(description="Run the CrossGuard rules over a stack's offline plan.")
    parser.add_argument("--stack", required=True, help=f"one of {', '.join(STACKS)}")
    violations = check(run_program(parser.parse_args(argv).stack))
    for v in violations:
        print(f"[{v.policy}] {v.urn}\n    {v.message}")
    print(f"{len(ALL_POLICIES)} policies, {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
