"""What one workload needs to reach Kafka, whichever flavor runs it.

Both Kafka components hand out `KafkaClientAccess` from `grant()`: on MSK that is IAM statements for the workload's
own role (topic- and group-scoped `kafka-cluster:*` actions); on Strimzi it is a KafkaUser with ACLs plus a client
certificate Secret in the workload's own namespace, which the pod mounts. Workloads read the same environment
variables either way (workloads/CONTRACT.md).

Topics and consumer groups belong to teams: a grant may name only its own team's topics and groups, so a mistake in
one workload cannot open another team's data (`check_grant`, called by both flavors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import pulumi

from components.iam import Statement
from platform_config.services_model import TOPIC_ROLES, KafkaConfig, TopicConfig
from platform_config.teams_model import TeamConfig


@dataclass(frozen=True)
class KafkaClientAccess:
    env: dict[str, pulumi.Input[str]]
    statements: list[Statement] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    pod_annotations: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """For the pod template: changes whenever the mounted credentials are re-issued. Clients read their certificate
    files once, at start, so a renewed certificate only takes effect through the rollout this triggers."""


@dataclass(frozen=True, kw_only=True)
class KafkaGrant:
    """Least privilege for one client: the topics it reads and writes, and its consumer group if it has one."""
    client: str
    """The workload's name, unique in its namespace (its Deployment/Job and service account)."""
    namespace: str
    """Where the client's pods run (its team's namespace); Strimzi credentials are written there."""
    team: str
    """The owning team; `read`, `write` and `group` must be that team's."""
    read: Sequence[str] = ()
    """Real topic names (`TeamConfig.topic(role)`)."""
    write: Sequence[str] = ()
    group: str = ""
    """Consumer group, `<team>.<purpose>`."""


def team_topics(team: TeamConfig) -> dict[str, str]:
    """role -> the team's topic name, for every role the platform has."""
    return {role: team.topic(role) for role in TOPIC_ROLES}


def topic_sizing(cfg: KafkaConfig, role: str) -> TopicConfig:
    """Partitions, replication and retention for one role's topics: every team's topic of that role is sized alike."""
    return cfg.topics.get(role) or TopicConfig(role=role, name=TOPIC_ROLES[role])


def teams_by_name(teams: Sequence[TeamConfig]) -> dict[str, TeamConfig]:
    """The teams keyed by name; two teams sharing a topic would share its data, so that is refused here too."""
    by_name: dict[str, TeamConfig] = {}
    owners: dict[str, str] = {}
    for team in teams:
        if team.name in by_name:
            raise ValueError(f"team {team.name!r} is listed twice")
        by_name[team.name] = team
        for topic in team_topics(team).values():
            if topic in owners:
                raise ValueError(f"topic {topic!r} belongs to both team {owners[topic]!r} and team {team.name!r}")
            owners[topic] = team.name
    return by_name


def check_grant(request: KafkaGrant, teams: Mapping[str, TeamConfig]) -> TeamConfig:
    """The grant's team, once the grant is shown to stay inside it: its namespace, topics and consumer group."""
    team = teams.get(request.team)
    if team is None:
        raise ValueError(f"Kafka grant for {request.client!r}: unknown team {request.team!r} "
                         f"(teams: {sorted(teams)})")
    if request.namespace != team.namespace:
        raise ValueError(f"Kafka grant for {request.client!r}: team {team.name!r} runs in namespace "
                         f"{team.namespace!r}, not {request.namespace!r}")
    own = set(team_topics(team).values())
    foreign = sorted({t for t in (*request.read, *request.write) if t not in own})
    if foreign:
        raise ValueError(f"Kafka grant for {request.client!r}: topic(s) {foreign} are not team {team.name!r}'s "
                         f"(its topics: {sorted(own)})")
    if request.group and not request.group.startswith(f"{team.name}."):
        raise ValueError(f"Kafka grant for {request.client!r}: consumer group {request.group!r} must be "
                         f"team {team.name!r}'s (`{team.name}.<purpose>`)")
    return team


class Kafka(Protocol):
    bootstrap: pulumi.Output[str]

    def grant(self, request: KafkaGrant, parent: pulumi.Resource) -> KafkaClientAccess: ...
