"""IAM policy documents built in code, with a least-privilege check that runs before anything is declared.

Documents are assembled with `Output.json_dumps` so statements may hold ARNs of resources not yet created.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import pulumi

Statement = dict[str, Any]


class WildcardPolicyError(ValueError):
    pass


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_least_privilege(statements: Sequence[Statement], where: str) -> None:
    """Reject `Allow` statements that grant a wildcard action on a wildcard resource, or any action `*`.

    Specific actions on `Resource: "*"` stay allowed: many read-only APIs (ec2:DescribeSubnets) have no resource-level
    permissions at all.
    """
    for i, st in enumerate(statements):
        if st.get("Effect") != "Allow":
            continue
        actions = [a for a in _as_list(st.get("Action", [])) if isinstance(a, str)]
        resources = _as_list(st.get("Resource", []))
        if "*" in actions:
            raise WildcardPolicyError(f"{where}: statement {i} allows Action '*'; list the actions it needs")
        wildcard_actions = [a for a in actions if "*" in a]
        if wildcard_actions and "*" in resources:
            raise WildcardPolicyError(f"{where}: statement {i} allows {wildcard_actions} on Resource '*'; name the "
                                      "actions or scope the resources")


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(*services: str) -> str:
    """A trust policy letting AWS services assume a role (EKS, EC2)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": list(services) if len(services) > 1 else services[0]},
        "Action": "sts:AssumeRole",
    }]})


def scoped_service_trust_policy(service: str, *, account_id: pulumi.Input[str],
                                source_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """A service trust limited to this account's resources (confused-deputy protection), for services that send
    aws:SourceAccount and aws:SourceArn when they assume the role (VPC flow logs)."""
    return policy_document([{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}, "ArnLike": {"aws:SourceArn": source_arn}},
    }])


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"
