"""The team-boundary referee: can any team's workload identity touch another team's lake data or Kafka topics?

A property check ("the ingestion role names teams/fraud/") passes as happily after someone widens a grant to
`teams/*` as before. This asks the question AWS and Kafka ask at request time instead: for every workload role bound
in a team's namespace, and every other team, would the role's policy allow a read, write or delete of an object
under the other team's lake prefix (in each lake bucket), a listing of that prefix, or a read or write of the other
team's topics and consumer groups? IAM is evaluated with offline/iam_eval.py (wildcards, conditions); Strimzi's
KafkaUser ACLs with Kafka's rules (a `literal` name matches itself, `*` matches all, a `prefix` pattern every name
that starts with it). It also checks the opposite: each team can still read its own curated data, so a referee
that finds nothing because nothing is granted cannot pass.
"""

from __future__ import annotations

import json
from typing import Any

from offline.harness import Plan
from offline.iam_eval import statement_applies
from platform_config.model import PlatformConfig
from platform_config.services_model import TOPIC_ROLES

TEAM_NAMESPACE_PREFIX = "team-"
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
KAFKA_ACTIONS = ("kafka-cluster:ReadData", "kafka-cluster:WriteData", "kafka-cluster:DescribeTopic")
PROBE = "transactions/date=2026-01-01/hour=00/part-0.parquet"


def allows(policy: dict[str, Any], action: str, resource: str, context: dict[str, Any] | None = None) -> bool:
    return any(s["Effect"] == "Allow" and statement_applies(s, action, resource, context or {})
               for s in policy["Statement"])


def team_roles(plan: Plan) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Team namespace -> (role, inline policy) of each workload identity bound there (Pod Identity or IRSA)."""
    policies: dict[str, list[dict[str, Any]]] = {}
    for r in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        policies.setdefault(r["name"], []).append(json.loads(r["inputs"]["policy"]))
    roles: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for r in plan.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"):
        ns = r["inputs"]["namespace"]
        if ns.startswith(TEAM_NAMESPACE_PREFIX):
            for policy in policies.get(r["name"], []):
                roles.setdefault(ns, []).append((r["name"], policy))
    return roles


def lake_buckets(plan: Plan) -> dict[str, str]:
    """Lake area (raw, curated, artifacts) -> bucket ARN."""
    return {r["name"].removeprefix("data-lake-"): next(v for v in r["identity"] if v.startswith("arn:aws:s3:::"))
            for r in plan.of_type("aws:s3/bucket:Bucket") if r["name"].startswith("data-lake-")
            and r["name"].removeprefix("data-lake-") in ("raw", "curated", "artifacts")}


def msk_cluster_arn(roles: dict[str, list[tuple[str, dict[str, Any]]]]) -> str | None:
    for grants in roles.values():
        for _, policy in grants:
            for st in policy["Statement"]:
                for arn in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
                    if ":kafka:" in arn and ":cluster/" in arn:
                        return arn
    return None




def acl_matches(resource: dict[str, Any], name: str) -> bool:
    pattern, kind = resource.get("name", ""), resource.get("patternType", "literal")
    if pattern == "*":
        return True
    return name.startswith(pattern) if kind == "prefix" else name == pattern


def problems(plan: Plan, cfg: PlatformConfig) -> list[str]:
    found: list[str] = []
    roles, buckets = team_roles(plan), lake_buckets(plan)
    cluster_arn = msk_cluster_arn(roles)
    users = [r["inputs"] for r in plan.resources if r["type"].startswith("kubernetes:")
             and r["inputs"].get("kind") == "KafkaUser"]
    for team in cfg.teams:
        own = roles.get(team.namespace, [])
        if not any(allows(p, "s3:GetObject", f"{buckets['curated']}/{team.lake_prefix}{PROBE}") for _, p in own):
            found.append(f"team {team.name}: no workload role in {team.namespace} can read its own curated data "
                         f"({team.lake_prefix}); the boundary check would prove nothing")
        team_users = [u for u in users if u["metadata"]["name"].startswith(f"{team.namespace}.")]
        for other in cfg.teams:
            if other is team:
                continue
            topics = {other.topic(role) for role in TOPIC_ROLES}
            for role, policy in own:
                for area, bucket in buckets.items():
                    for action in OBJECT_ACTIONS:
                        if allows(policy, action, f"{bucket}/{other.lake_prefix}{PROBE}"):
                            found.append(f"{team.namespace} role {role} may {action} in {other.name}'s {area} data "
                                         f"({other.lake_prefix})")
                    if allows(policy, "s3:ListBucket", bucket, {"s3:prefix": other.lake_prefix}):
                        found.append(f"{team.namespace} role {role} may list {other.name}'s {area} data "
                                     f"({other.lake_prefix})")
                if cluster_arn:
                    # MSK's documented topic and group ARN formats, written out here rather than taken from
                    # components/kafka_msk.py, so a mistake there cannot hide from this check.
                    for topic in sorted(topics):
                        arn = cluster_arn.replace(":cluster/", ":topic/", 1) + f"/{topic}"
                        for action in KAFKA_ACTIONS:
                            if allows(policy, action, arn):
                                found.append(f"{team.namespace} role {role} may {action} on {other.name}'s topic "
                                             f"{topic}")
                    group = cluster_arn.replace(":cluster/", ":group/", 1) + f"/{other.name}.lake-ingestion"
                    if allows(policy, "kafka-cluster:AlterGroup", group):
                        found.append(f"{team.namespace} role {role} may join {other.name}'s consumer groups")
            for user in team_users:
                for acl in user["spec"]["authorization"]["acls"]:
                    resource = acl["resource"]
                    names = sorted(topics) if resource["type"] == "topic" else \
                        [f"{other.name}.lake-ingestion"] if resource["type"] == "group" else []
                    for name in names:
                        if acl_matches(resource, name):
                            found.append(f"KafkaUser {user['metadata']['name']} may {'/'.join(acl['operations'])} "
                                         f"{resource['type']} {name} of team {other.name}")
    return found


def render(plan: Plan, cfg: PlatformConfig) -> list[str]:
    """The referee's verdict in a few lines, for `make plan`."""
    found = problems(plan, cfg)
    pairs = len(cfg.teams) * (len(cfg.teams) - 1)
    lines = [f"team boundaries: {'ok' if not found else f'{len(found)} PROBLEM(S)'} ({len(cfg.teams)} team(s), "
             f"{pairs} ordered pair(s) checked)"]
    return lines + [f"  {p}" for p in found]
