"""The typed config of teams and models: who shares the GPU capacity, on what terms, and what each team runs.

A team is a namespace, an identity boundary (lake prefix, Kafka topics, MLflow permissions) and a queue with quotas.
A model is one team's serving, training and drift workloads. Key names are in backticks; stack files set them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from platform_config.services_model import TOPIC_ROLES, ServingConfig, TrainingConfig

# Kueue WorkloadPriorityClasses, highest first: a production retrain preempts a batch job in its own queue, which
# preempts an experiment. The values are Kueue priorities (larger wins).
PRIORITY_CLASSES: dict[str, int] = {"production": 1000, "batch": 500, "experiment": 100}
DEFAULT_PRIORITY_CLASS = "batch"
TEAM_NAMESPACE_PREFIX = "team-"


@dataclass(frozen=True)
class Quota:
    """One resource's share in the team's Kueue ClusterQueue (same units as the resource)."""
    nominal: float
    """`nominal`: guaranteed to the team; lent to others while unused (up to `lendingLimit`)."""
    borrowing_limit: float | None = None
    """`borrowingLimit`: how much above nominal the team may borrow from the cohort; absent = no limit."""
    lending_limit: float | None = None
    """`lendingLimit`: how much of nominal others may borrow; absent = all of it."""


@dataclass(frozen=True)
class TeamQuotas:
    cpu: Quota = field(default_factory=lambda: Quota(0))
    """`quotas.cpu`: vCPUs on the general (CPU) pool."""
    memory_gib: Quota = field(default_factory=lambda: Quota(0))
    """`quotas.memoryGiB`: memory on the general (CPU) pool, in GiB."""
    gpus: dict[str, Quota] = field(default_factory=dict)
    """`quotas.gpus.<pool>`: `nvidia.com/gpu` units per GPU pool (shared units on a time-sliced or MIG pool)."""


@dataclass(frozen=True)
class TeamConfig:
    name: str
    """`teams[i].name`: lower-case; the namespace is `team-<name>`."""
    members: list[str] = field(default_factory=list)
    """`teams[i].members`: IAM role/user ARNs of the team's people; they get edit access to the team's namespace."""
    quotas: TeamQuotas = field(default_factory=TeamQuotas)
    lake_prefix: str = ""
    """`teams[i].lakePrefix`, default `teams/<name>/`: the team's key prefix in the raw, curated and artifacts
    buckets; its workloads' roles reach nothing else in the lake."""
    topics: dict[str, str] = field(default_factory=dict)
    """`teams[i].topics.<role>`: the team's Kafka topic per role (TOPIC_ROLES), default `<name>.<role's default>`;
    its workloads may use only these."""
    monthly_budget_usd: float | None = None
    """`teams[i].monthlyBudgetUsd`, optional: what the team may spend on the cluster in a month, in USD, as OpenCost
    prices it; the budget alerts warn at 80 % and page at 100 % of it. Absent: no budget, no budget alerts."""

    def __post_init__(self) -> None:
        if not self.lake_prefix:
            object.__setattr__(self, "lake_prefix", f"teams/{self.name}/")

    @property
    def namespace(self) -> str:
        return f"{TEAM_NAMESPACE_PREFIX}{self.name}"

    def topic(self, role: str) -> str:
        return self.topics.get(role) or f"{self.name}.{TOPIC_ROLES[role]}"


@dataclass(frozen=True)
class DriftConfig:
    psi_threshold: float = 0.2
    """`models[i].drift.psiThreshold`, default `monitoring.driftPsiThreshold`: PSI above this on a feature is drift."""
    window_hours: int = 24
    """`models[i].drift.windowHours`, default 24: the recent window compared with the training data before it."""
    interval_seconds: int = 900
    """`models[i].drift.intervalSeconds`, default 900: how often drift is re-evaluated."""


@dataclass(frozen=True)
class ModelImages:
    """A full image reference per workload that overrides the platform's; empty runs the platform's image (the
    stack's repositories, or `images.registry`, at `images.tag` or its `images.digests` pin)."""
    training: str = ""
    serving: str = ""
    drift: str = ""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    """`models[i].name`: the registered model's name in MLflow, unique in the stack; also the workloads' names."""
    team: str
    """`models[i].team`: the owning team (one of `teams`)."""
    images: ModelImages
    """`models[i].images.{training,serving,drift}`: override the platform's images for this model."""
    training: TrainingConfig
    """`models[i].training`: as the TrainingConfig fields, plus `priorityClass`."""
    serving: ServingConfig
    """`models[i].serving`: as the ServingConfig fields, plus the latency objective."""
    drift: DriftConfig = field(default_factory=DriftConfig)

    @property
    def experiment(self) -> str:
        return self.name
