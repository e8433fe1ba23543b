"""What one workload needs to reach Kafka, whichever flavor runs it.

Both Kafka components hand out `KafkaClientAccess` from `grant()`: on MSK that is IAM statements for the workload's
own role (topic- and group-scoped `kafka-cluster:*` actions); on Strimzi it is a KafkaUser with ACLs and the
certificate volume the workload mounts. Workloads read the same environment variables either way
(workloads/CONTRACT.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import pulumi

from components.iam import Statement


@dataclass(frozen=True)
class KafkaClientAccess:
    env: dict[str, pulumi.Input[str]]
    statements: list[Statement] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    depends_on: list[pulumi.Resource] = field(default_factory=list)


@dataclass(frozen=True)
class KafkaGrant:
    """Least privilege for one client: the topics it reads and writes, and its consumer group if it has one."""
    client: str
    read: Sequence[str] = ()
    write: Sequence[str] = ()
    group: str = ""


class Kafka(Protocol):
    bootstrap: pulumi.Output[str]

    def grant(self, request: KafkaGrant, parent: pulumi.Resource) -> KafkaClientAccess: ...
