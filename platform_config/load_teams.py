"""Parse `teams` and `models`: who shares the cluster, on what quotas, and what each team runs.

Problems go into the same `Problems` as the rest of the config, so one run names every bad key. The checks here are
the ones Kubernetes, Kueue or Kafka would otherwise report only after `pulumi up` had half-applied the stack, or
never (a job that no queue can admit waits forever).
"""

from __future__ import annotations

import re
from typing import Iterable

from platform_config.load_services import IMAGE_REF, serving, training
from platform_config.model import ClusterConfig, GeneralPoolConfig, GpuPoolConfig
from platform_config.reader import IAM_PRINCIPAL, Section
from platform_config.services_model import TOPIC_ROLES, MonitoringConfig, ServicesConfig
from platform_config.teams_model import DriftConfig, ModelConfig, ModelImages, Quota, TeamConfig, TeamQuotas

# 2-20 characters: the namespace `team-<name>`, the ingestion workload `<name>-lake-ingestion` and the IAM roles
# Pulumi names after them (plus an 8-character suffix) stay well inside the 63/64-character limits.
TEAM_NAME = r"[a-z][a-z0-9-]{0,18}[a-z0-9]"
# 2-40 characters, a DNS-1035 label (the Service is named after the model): `<model>-training` is a CronJob, whose
# Jobs get an 11-character suffix and whose indexed pods another `-<index>`, and hostnames stop at 63.
MODEL_NAME = r"[a-z][a-z0-9-]{0,38}[a-z0-9]"
# Slash-separated segments of plain characters: '*', '?' and '$' are wildcards and variables in IAM policies, where
# the prefix ends up, so `teams/*/` would grant every team's data.
_LAKE_SEGMENTS = r"([a-z0-9][a-z0-9._-]*/)+"
# The artifacts bucket's own area for MLflow (components/mlflow.py ARTIFACT_PREFIX); no team may be given it.
RESERVED_LAKE_PREFIXES = ("mlflow/",)
# Kafka allows up to 249 of [a-zA-Z0-9._-]; Strimzi names each KafkaTopic object after its topic, and Kubernetes
# names are lower-case DNS subdomains, so the two rules meet here (no '_', so no '.'/'_' collisions either).
_TOPIC = r"[a-z0-9]([a-z0-9.-]{0,247}[a-z0-9])?"
# Upper bounds that only catch typos; the sums against the pools are the real limits.
_MAX_CPU, _MAX_MEMORY_GIB, _MAX_GPU_UNITS = 2000, 16000, 12800
# A month of the largest GPU pool a stack can hold is far below this; a larger figure is a typo (cents, an extra 0).
_MAX_MONTHLY_BUDGET_USD = 10_000_000
INGESTION_SUFFIX = "-lake-ingestion"


def load_teams(top: Section, cluster: ClusterConfig, general: GeneralPoolConfig,
               pools: list[GpuPoolConfig]) -> list[TeamConfig]:
    by_pool = {p.name: p for p in pools}
    teams: list[TeamConfig] = []
    for s in top.sections("teams", []):
        name = s.string("name", pattern=TEAM_NAME,
                        hint=" (lower-case letters, digits and '-', 2-20 characters, starting with a letter)")
        members = s.string_list("members", [])
        _check_members(s, members, cluster)
        quotas = _quotas(s.section("quotas"), by_pool)
        lake_prefix = _lake_prefix(s, f"teams/{name}/")
        topics = _topics(s)
        budget = _monthly_budget(s)
        s.finish()
        teams.append(TeamConfig(name=name, members=members, quotas=quotas, lake_prefix=lake_prefix, topics=topics,
                                monthly_budget_usd=budget))

    names = [t.name for t in teams]
    for dup in sorted({n for n in names if n and names.count(n) > 1}):
        top.problems.add(top.key("teams"), f"team name {dup!r} is used more than once")
    _check_capacity(top, teams, general, pools)
    _check_lake_prefixes(top, teams)
    _check_topics(top, teams)
    return teams


def _check_members(s: Section, members: list[str], cluster: ClusterConfig) -> None:
    for arn in members:
        if not re.fullmatch(IAM_PRINCIPAL, arn):
            s.problems.add(s.key("members"), f"{arn!r} is not an IAM role or user ARN "
                                             "(arn:aws:iam::<account>:role/<name>)")
        elif arn in cluster.admin_arns:
            s.problems.add(s.key("members"), f"{arn} is also in clusterAdmins; EKS allows one access entry per IAM "
                                             "principal and the admin's already reaches every namespace, so remove "
                                             "it here")
        elif arn in cluster.viewer_arns:
            s.problems.add(s.key("members"), f"{arn} is also in clusterViewers; EKS allows one access entry per IAM "
                                             "principal, so it cannot be both a viewer and a team member; use "
                                             "another role for one of them")


def _quota(s: Section, maximum: float, whole: bool) -> Quota:
    def read(name: str) -> float | None:
        if whole:
            value: float = s.integer(name, 0, minimum=0, maximum=int(maximum))
        else:
            value = s.number(name, 0, minimum=0, maximum=maximum)
        return value if name in s.raw else None

    if "nominal" not in s.raw:
        s.problems.add(s.key("nominal"), "required: the amount guaranteed to the team (0 to only borrow)")
    nominal = read("nominal") or 0
    borrowing, lending = read("borrowingLimit"), read("lendingLimit")
    if lending is not None and lending > nominal:
        s.problems.add(s.key("lendingLimit"), f"{lending:g} is above nominal ({nominal:g}); Kueue rejects a "
                                              "ClusterQueue that lends more than its nominal quota")
    s.finish()
    return Quota(nominal=nominal, borrowing_limit=borrowing, lending_limit=lending)


def _quotas(s: Section, pools: dict[str, GpuPoolConfig]) -> TeamQuotas:
    def general(name: str, maximum: float) -> Quota:
        section = s.section(name)
        return _quota(section, maximum, whole=False) if isinstance(s.raw.get(name), dict) else Quota(0)

    cpu, memory = general("cpu", _MAX_CPU), general("memoryGiB", _MAX_MEMORY_GIB)
    g = s.section("gpus")
    gpus = {}
    for pool in g.raw:
        quota = g.section(pool)
        if pool not in pools:
            known = ", ".join(sorted(pools)) or "none configured"
            g.problems.add(quota.prefix, f"{pool!r} is not a GPU pool of this stack (gpuPools: {known})")
            continue
        if isinstance(g.raw[pool], dict):  # otherwise section() has said what it expected
            gpus[pool] = _quota(quota, _MAX_GPU_UNITS, whole=True)
    g.finish()
    s.finish()
    return TeamQuotas(cpu=cpu, memory_gib=memory, gpus=gpus)


def _lake_prefix(s: Section, default: str) -> str:
    prefix = s.string("lakePrefix", default)
    key = s.key("lakePrefix")
    if "lakePrefix" not in s.raw:
        pass  # the default is made of the team's name, which is checked on its own
    elif prefix.startswith("/"):
        s.problems.add(key, f"{prefix!r} must not start with '/': S3 keys have no leading slash, so it would match "
                            "nothing")
    elif not prefix.endswith("/"):
        s.problems.add(key, f"{prefix!r} must end with '/', or it would also cover every prefix that starts the "
                            f"same way ({prefix}-other/)")
    elif not re.fullmatch(_LAKE_SEGMENTS, prefix):
        s.problems.add(key, f"{prefix!r} is not valid: lower-case letters, digits, '.', '_' and '-' between "
                            "slashes, no empty segment ('*', '?' and '$' are wildcards in IAM policies)")
    elif any(prefix.startswith(r) for r in RESERVED_LAKE_PREFIXES):
        s.problems.add(key, f"{prefix!r} is inside MLflow's own artifacts area ({', '.join(RESERVED_LAKE_PREFIXES)})"
                            "; choose another prefix")
    return prefix


def _monthly_budget(s: Section) -> float | None:
    # Optional (absent: no budget alerts), and at least 1: a budget of 0 would page for the first cent.
    return s.number("monthlyBudgetUsd", None, minimum=1, maximum=_MAX_MONTHLY_BUDGET_USD)  # type: ignore[arg-type]


def _topics(s: Section) -> dict[str, str]:
    topics = s.string_map("topics")
    for role, name in topics.items():
        key = f"{s.key('topics')}.{role}"
        if role not in TOPIC_ROLES:
            s.problems.add(key, f"unknown topic role; known: {', '.join(sorted(TOPIC_ROLES))}")
        elif not re.fullmatch(_TOPIC, name):
            s.problems.add(key, f"{name!r} is not a valid topic name (lower-case letters, digits, '.' and '-', at "
                                "most 249, starting and ending with a letter or digit)")
    return {role: name for role, name in topics.items() if role in TOPIC_ROLES}


def _check_capacity(top: Section, teams: list[TeamConfig], general: GeneralPoolConfig,
                    pools: list[GpuPoolConfig]) -> None:
    """Nominal quotas are guarantees: together they must fit what the pools can ever launch."""
    key = top.key("teams")
    for pool in pools:
        total = sum(t.quotas.gpus[pool.name].nominal for t in teams if pool.name in t.quotas.gpus)
        if total > pool.max_units:
            top.problems.add(key, f"nominal quotas on GPU pool {pool.name!r} add up to {total:g} units, more than the "
                                  f"pool can hold ({pool.max_units}: maxNodes x GPUs per node x sharing); Kueue "
                                  "would admit work Karpenter cannot place, so lower them or raise the pool's "
                                  "maxNodes")
    for label, total, limit, setting in (
            ("cpu", sum(t.quotas.cpu.nominal for t in teams), general.max_cpu, "generalPool.maxCpu"),
            ("memoryGiB", sum(t.quotas.memory_gib.nominal for t in teams), general.max_memory_gib,
             "generalPool.maxMemoryGiB")):
        if total > limit:
            top.problems.add(key, f"nominal {label} quotas add up to {total:g}, more than {setting} ({limit}); the "
                                  "general pool could never hold what the teams are guaranteed")


def _check_lake_prefixes(top: Section, teams: list[TeamConfig]) -> None:
    for j, later in enumerate(teams):
        for earlier in teams[:j]:
            if earlier.name == later.name:
                continue  # the duplicate name is the problem, already reported
            a, b = earlier.lake_prefix, later.lake_prefix
            where = f"{top.key('teams')}[{j}].lakePrefix"
            if a == b:
                top.problems.add(where, f"{b!r} is also team {earlier.name!r}'s; each team needs its own prefix")
            elif a.startswith(b) or b.startswith(a):
                outer, inner = (a, b) if b.startswith(a) else (b, a)
                top.problems.add(where, f"{outer!r} contains {inner!r} (teams {earlier.name!r} and {later.name!r}); "
                                        "the outer team's roles would reach the other's data")


def _check_topics(top: Section, teams: list[TeamConfig]) -> None:
    owners: dict[str, tuple[int, str]] = {}
    for i, team in enumerate(teams):
        for role in TOPIC_ROLES:
            name = team.topic(role)
            if name in owners and teams[owners[name][0]].name == team.name and owners[name][0] != i:
                continue  # the duplicate team name is the problem, already reported
            if name in owners:
                owner, owner_role = teams[owners[name][0]].name, owners[name][1]
                whose = "its own" if owners[name][0] == i else f"team {owner!r}'s"
                top.problems.add(f"{top.key('teams')}[{i}].topics.{role}",
                                 f"topic {name!r} is also {whose} {owner_role} topic; every team and role needs its "
                                 "own, or they would share its data")
            else:
                owners[name] = (i, role)


def load_models(top: Section, teams: list[TeamConfig], pools: list[GpuPoolConfig],
                services: ServicesConfig) -> list[ModelConfig]:
    by_team = {t.name: (i, t) for i, t in enumerate(teams)}
    by_pool = {p.name: p for p in pools}
    models: list[ModelConfig] = []
    for s in top.sections("models", []):
        name = s.string("name", pattern=MODEL_NAME,
                        hint=" (lower-case letters, digits and '-', 2-40 characters, starting with a letter)")
        team_name = s.string("team")
        if team_name and team_name not in by_team:
            known = ", ".join(sorted(by_team)) if by_team else "none; add it to ml-platform:teams first"
            s.problems.add(s.key("team"), f"{team_name!r} is not a team of this stack (teams: {known})")
        images = _images(s.section("images"))
        training_section = s.section("training")
        train = training(training_section, by_pool)
        serve = serving(s.section("serving"), by_pool, services.monitoring)
        drift = _drift(s.section("drift"), services.monitoring)
        s.finish()
        if team_name in by_team and train.gpu_pool in by_pool:
            _check_admissible(training_section, train.workers, train.gpus_per_worker, by_pool[train.gpu_pool],
                              *by_team[team_name], teams, top.key("teams"))
        models.append(ModelConfig(name=name, team=team_name, images=images, training=train, serving=serve,
                                  drift=drift))

    names = [m.name for m in models]
    for dup in sorted({n for n in names if n and names.count(n) > 1}):
        top.problems.add(top.key("models"), f"model name {dup!r} is used more than once")
    _check_workload_names(top, teams, models)
    _check_serving_room(top, teams, models, pools)
    return models


def _images(s: Section) -> ModelImages:
    refs = {}
    for key in ("training", "serving", "drift"):
        # Empty: the platform's image, whose reference needs the stack's account (components/image_registry.py).
        refs[key] = s.string(key, "")
        if key in s.raw:
            _check_image(s, key, refs[key])
    s.finish()
    return ModelImages(**refs)


def _check_image(s: Section, key: str, ref: str) -> None:
    match = re.fullmatch(IMAGE_REF, ref)
    if match is None:
        unpinned = "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]
        why = ("it has no tag or digest; pin one" if unpinned
               else "use registry/path:tag or registry/path@sha256:<64 hex>")
        s.problems.add(s.key(key), f"{ref!r} is not a full, pinned image reference ({why})")
    elif not ("." in match["registry"] or ":" in match["registry"] or match["registry"] == "localhost"):
        s.problems.add(s.key(key), f"{ref!r} names no registry host (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com"
                                   "/name:tag); a bare name would be pulled from Docker Hub")
    elif match["tag"] == "latest":
        s.problems.add(s.key(key), "'latest' is not allowed: it makes rollouts unrepeatable; use a version tag or a "
                                   "digest")


def _drift(s: Section, monitoring: MonitoringConfig) -> DriftConfig:
    config = DriftConfig(
        psi_threshold=s.number("psiThreshold", monitoring.drift_psi_threshold, minimum=0.01, maximum=5),
        window_hours=s.integer("windowHours", 24, minimum=1, maximum=720),
        interval_seconds=s.integer("intervalSeconds", 900, minimum=60, maximum=86400),
    )
    s.finish()
    return config


def _check_admissible(s: Section, workers: int, per_worker: int, pool: GpuPoolConfig, index: int, team: TeamConfig,
                      teams: list[TeamConfig], teams_key: str) -> None:
    """Kueue admits a job only whole: its units must fit what the team's queue can hold on the pool at best."""
    need = workers * per_worker
    if need > pool.max_units or per_worker > pool.max_units_per_node:
        return  # already reported against the pool itself
    quota = team.quotas.gpus.get(pool.name)
    if quota is None:
        s.problems.add(s.key("gpuPool"), f"team {team.name!r} has no quota on GPU pool {pool.name!r} "
                                         f"({teams_key}[{index}].quotas.gpus.{pool.name}), so its queue could "
                                         "never admit this job; give it one or train on another pool")
        return
    # Borrowing comes only from what the other teams' quotas lend, never from capacity nobody is guaranteed.
    lendable = sum(q.nominal if q.lending_limit is None else q.lending_limit
                   for t in teams if t is not team and (q := t.quotas.gpus.get(pool.name)) is not None)
    borrow = lendable if quota.borrowing_limit is None else min(quota.borrowing_limit, lendable)
    ceiling = min(pool.max_units, quota.nominal + borrow)
    if need > ceiling:
        s.problems.add(s.key("workers"), f"the job needs {need} units of pool {pool.name!r} (workers x gpusPerWorker) "
                                         f"but team {team.name!r} can hold at most {ceiling:g} there (nominal "
                                         f"{quota.nominal:g} + {borrow:g} borrowable from the other teams); Kueue "
                                         "would never admit it")


def _workload_names(teams: Iterable[TeamConfig], models: Iterable[ModelConfig]) -> list[tuple[str, str, int | None]]:
    names: list[tuple[str, str, int | None]] = [(f"{t.name}{INGESTION_SUFFIX}", f"team {t.name!r}'s ingestion", None)
                                                for t in teams]
    for i, m in enumerate(models):
        names += [(m.name, f"model {m.name!r}'s serving", i), (f"{m.name}-training", f"model {m.name!r}'s training", i),
                  (f"{m.name}-drift", f"model {m.name!r}'s drift monitor", i)]
    return names


def _check_workload_names(top: Section, teams: list[TeamConfig], models: list[ModelConfig]) -> None:
    """Workloads are named after their model or team; two that come out alike would overwrite each other."""
    seen: dict[str, str] = {}
    names = [m.name for m in models]
    for workload, owner, index in _workload_names(teams, models):
        if index is None or names.count(names[index]) > 1:
            # A team's own names come only from its (unique) name; a duplicate model name is already reported.
            seen.setdefault(workload, owner)
            continue
        if workload in seen:
            top.problems.add(f"{top.key('models')}[{index}].name",
                             f"{owner} would be named {workload!r}, like {seen[workload]}; rename the model")
        else:
            seen[workload] = owner


def _check_serving_room(top: Section, teams: list[TeamConfig], models: list[ModelConfig],
                        pools: list[GpuPoolConfig]) -> None:
    """Serving pods take GPU units outside the queues, so the quotas must leave them room on the pool."""
    for pool in pools:
        nominal = sum(t.quotas.gpus[pool.name].nominal for t in teams if pool.name in t.quotas.gpus)
        # A model that alone outgrows the pool is already reported against its maxReplicas.
        served = sum(m.serving.max_replicas for m in models
                     if m.serving.gpu_pool == pool.name and m.serving.max_replicas <= pool.max_units)
        if served and nominal <= pool.max_units < nominal + served:
            top.problems.add(top.key("models"),
                             f"GPU pool {pool.name!r}: the teams' nominal quotas ({nominal:g}) plus GPU serving at "
                             f"maxReplicas ({served}) need {nominal + served:g} units, more than the pool has "
                             f"({pool.max_units}); serving bypasses the queues, so Kueue would admit jobs with no "
                             "room left to run")
