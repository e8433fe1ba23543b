"""Run the CrossGuard rules in `policies/rules` over an offline plan, as `pulumi preview --policy-pack` would.

CrossGuard itself needs the engine; its rule functions do not. This builds the same argument objects from the
recorded registrations (custom resources only: CrossGuard never sees component inputs) and collects violations.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NamedTuple, Sequence

from pulumi_policy import (PolicyCustomTimeouts, PolicyProviderResource, PolicyResource, PolicyResourceOptions,
                           ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs)
from pulumi_policy.proxy import unknown_checking_proxy

from offline.harness import STACKS, Plan, run_program
from platform_config import ConfigError
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
    # Built once and shared by every policy, as the engine does for one preview.
    # Props wrapped as the engine wraps them (Mapping/Sequence proxies, not dicts and lists): a rule that tests for
    # dict would pass here and fail under `pulumi preview --policy-pack` otherwise.
    resource_args = [ResourceValidationArgs(r["type"], unknown_checking_proxy(r["inputs"]), r["urn"], r["name"],
                                            _options(r), _provider(plan, r)) for r in custom]
    stack_resources = {a.urn: PolicyResource(a.resource_type, a.props, a.urn, a.name, a.opts, a.provider, None, [],
                                             {}) for a in resource_args}
    for r in custom:
        stack_resources[r["urn"]].dependencies = [stack_resources[u] for u in r["dependsOn"] if u in stack_resources]
    stack_args = StackValidationArgs(list(stack_resources.values()))
    for policy in policies:
        if isinstance(policy, ResourceValidationPolicy):
            for args in resource_args:
                policy.validate(args, lambda message, urn=None, a=args, p=policy: found.append(
                    Violation(p.name, urn or a.urn, message)))
        else:
            policy.validate(stack_args, lambda message, urn=None, p=policy: found.append(
                Violation(p.name, urn or "", message)))
    return found


def verdict(stack: str, violations: Sequence[Violation] | None, error: str | None = None) -> dict[str, Any]:
    """The JSON form: what the pull-request comment (offline/pr_comment.py) reads."""
    return {"stack": stack, "error": error, "policies": len(ALL_POLICIES),
            "violations": [v._asdict() for v in violations or ()]}


def main(argv: list[str] | None = None) -> int:
    """`make policy STACK=<s>`: the policy pack's verdict on one stack's offline plan.

    Exit codes in both formats: 0 no violation, 1 violations, 2 the plan could not be built.
    """
    parser = argparse.ArgumentParser(description="Run the CrossGuard rules over a stack's offline plan.")
    parser.add_argument("--stack", required=True, help=f"one of {', '.join(STACKS)}")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        plan = run_program(args.stack)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps(verdict(args.stack, None, str(exc)), indent=2))
        return 2
    violations = check(plan)
    if args.format == "json":
        print(json.dumps(verdict(args.stack, violations), indent=2))
    else:
        for v in violations:
            print(f"[{v.policy}] {v.urn}\n    {v.message}")
        print(f"{len(ALL_POLICIES)} policies, {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
