"""Parse the services part of the stack config; problems go into the same `Problems` as the infrastructure's."""

from __future__ import annotations

import ipaddress
import re

from components.observability.metric_catalog import INFERENCE_LATENCY_BUCKETS
from platform_config.model import GpuPoolConfig
from platform_config.reader import Section
from platform_config.services_model import (PLATFORM_IMAGES, TOPIC_ROLES, DatabaseConfig, ImagesConfig,
                                            IngestionConfig, KafkaConfig, MlflowConfig, MonitoringConfig,
                                            ServicesConfig, ServingConfig, TopicConfig, TrainingConfig)
from platform_config.teams_model import DEFAULT_PRIORITY_CLASS, PRIORITY_CLASSES

_QUANTITY_CPU = r"[1-9][0-9]*m|[0-9]+(\.[0-9]+)?"
_QUANTITY_MEMORY = r"[1-9][0-9]*(Mi|Gi)"
_RETENTION = r"[1-9][0-9]*(h|d|w)"
_REGISTRY = r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*"
_DIGEST = r"sha256:[0-9a-f]{64}"
_TAG = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}|{_DIGEST}"
# A full image reference: a registry host (it has a '.' or a port, so it is never read as a Docker Hub user), a
# repository path, and a tag or a digest; an unpinned reference would pull whatever was pushed last.
IMAGE_REF = (r"(?P<registry>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]+)?)"
             r"(?P<path>(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
             r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})")
_CRON_FIELD = r"(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?)*"
_INSTANCE_CLASS = r"db\.[a-z0-9]+\.[a-z0-9]+"
_MSK_INSTANCE = r"kafka\.[a-z0-9]+\.[a-z0-9]+"


def load_services(top: Section, environment: str, zones: int, pools: list[GpuPoolConfig]) -> ServicesConfig:
    pool_names = {p.name: p for p in pools}
    mlflow = _mlflow(top.section("mlflow"))
    kafka = _kafka(top.section("kafka"), environment, zones)
    monitoring = _monitoring(top.section("monitoring"))
    images = _images(top.section("images"))
    for retired in ("serving", "training"):
        if retired in top.raw:
            top.known.add(retired)
            top.problems.add(top.key(retired), f"no longer a platform setting: each model has its own; move it to "
                                               f"{top.prefix}:models[i].{retired} (README: Configuration)")
    ingestion = _ingestion(top.section("ingestion"), kafka)
    return ServicesConfig(mlflow=mlflow, kafka=kafka, monitoring=monitoring, images=images, ingestion=ingestion)


def _mlflow(s: Section) -> MlflowConfig:
    db = s.section("database")
    database = DatabaseConfig(
        backend=db.string("backend", "rds", choices=("rds", "in-cluster")),
        instance_class=db.string("instanceClass", "db.t4g.medium", pattern=_INSTANCE_CLASS,
                                 hint=" (an RDS instance class such as db.t4g.medium)"),
        storage_gib=db.integer("storageGiB", 20, minimum=20, maximum=65536),
        max_storage_gib=db.integer("maxStorageGiB", 100, minimum=20, maximum=65536),
        multi_az=db.boolean("multiAz", False),
        backup_retention_days=db.integer("backupRetentionDays", 7, minimum=0, maximum=35),
        deletion_protection=db.boolean("deletionProtection", True),
    )
    if database.max_storage_gib < database.storage_gib:
        db.problems.add(db.key("maxStorageGiB"), f"{database.max_storage_gib} is below storageGiB "
                                                 f"({database.storage_gib})")
    if database.backend == "in-cluster":
        for key in ("instanceClass", "maxStorageGiB", "multiAz", "backupRetentionDays", "deletionProtection"):
            if key in db.raw:
                db.problems.add(db.key(key), "only applies to backend 'rds'; remove it or set backend: rds")
    db.finish()
    config = MlflowConfig(
        database=database,
        replicas=s.integer("replicas", 2, minimum=1, maximum=10),
        exposure=s.string("exposure", "cluster", choices=("cluster", "vpc")),
        allowed_hosts=s.string_list("allowedHosts", []),
        client_cidrs=s.string_list("clientCidrs", []),
    )
    for text in config.client_cidrs:
        try:
            if ipaddress.IPv4Network(text).prefixlen == 0:
                s.problems.add(s.key("clientCidrs"), "0.0.0.0/0 would open MLflow to every network; list ranges")
        except ValueError:
            s.problems.add(s.key("clientCidrs"), f"{text!r} is not an IPv4 CIDR block")
    if config.client_cidrs and config.exposure != "vpc":
        s.problems.add(s.key("clientCidrs"), "only applies with exposure: vpc; remove it or set exposure: vpc")
    s.finish()
    return config


def _kafka(s: Section, environment: str, zones: int) -> KafkaConfig:
    flavor = s.string("flavor", "msk" if environment == "prod" else "strimzi", choices=("msk", "strimzi"))
    brokers = s.integer("brokers", 3, minimum=1, maximum=30)
    instance_type = s.string("brokerInstanceType", "kafka.m7g.large", pattern=_MSK_INSTANCE,
                             hint=" (an MSK broker type such as kafka.m7g.large)")
    if "brokerInstanceType" in s.raw and flavor != "msk":
        s.problems.add(s.key("brokerInstanceType"), "only applies to flavor 'msk'; remove it or set flavor: msk")
    if flavor == "msk" and zones and brokers % zones:
        s.problems.add(s.key("brokers"), f"MSK needs a multiple of the AZ count ({zones}); got {brokers}")
    volume = s.integer("volumeSizeGiB", 100, minimum=1, maximum=16384)
    topics_section = s.section("topics")
    topics = {}
    for role, name in TOPIC_ROLES.items():
        t = topics_section.section(role)
        topic = TopicConfig(role=role, name=name,
                            partitions=t.integer("partitions", 6, minimum=1, maximum=1000),
                            replication_factor=t.integer("replicationFactor", min(3, brokers), minimum=1, maximum=30),
                            retention_hours=t.integer("retentionHours", 168, minimum=1, maximum=87600))
        if topic.replication_factor > brokers:
            t.problems.add(t.key("replicationFactor"), f"{topic.replication_factor} is more than kafka.brokers "
                                                       f"({brokers}); a topic cannot have more replicas than brokers")
        t.finish()
        topics[role] = topic
    topics_section.finish()
    s.finish()
    return KafkaConfig(flavor=flavor, brokers=brokers, broker_instance_type=instance_type, volume_size_gib=volume,
                       topics=topics)


def _monitoring(s: Section) -> MonitoringConfig:
    config = MonitoringConfig(
        retention=s.string("retention", "15d", pattern=_RETENTION, hint=" (e.g. 12h, 15d, 4w)"),
        storage_gib=s.integer("storageGiB", 50, minimum=5, maximum=16384),
        latency_slo_seconds=s.number("latencySloSeconds", 0.25, minimum=0.005, maximum=60),
        slo_objective=s.number("sloObjective", 0.99, minimum=0.5, maximum=0.9999),
        gpu_idle_minutes=s.integer("gpuIdleMinutes", 30, minimum=5, maximum=1440),
        drift_psi_threshold=s.number("driftPsiThreshold", 0.2, minimum=0.01, maximum=5),
        consumer_lag_records=s.integer("consumerLagRecords", 10000, minimum=1, maximum=1_000_000_000),
        # At least 10 minutes: launching a GPU node and pulling a CUDA image takes several, and every cold start
        # would page otherwise. At most a day: a job waiting longer has missed its schedule anyway.
        queue_pending_minutes=s.integer("queuePendingMinutes", 60, minimum=10, maximum=1440),
        alert_webhook_url=s.string("alertWebhookUrl", "", pattern=r"https://\S+",
                                   hint=" (an https:// URL; alerts would otherwise cross the network in clear)"),
    )
    _latency_bucket(s, config.latency_slo_seconds)
    s.finish()
    return config


def _latency_bucket(s: Section, seconds: float) -> None:
    if seconds not in INFERENCE_LATENCY_BUCKETS:
        s.problems.add(s.key("latencySloSeconds"), f"{seconds:g} is not a bucket boundary of the inference latency "
                       "histogram, so the SLO could not be measured; use one of "
                       + ", ".join(f"{b:g}" for b in INFERENCE_LATENCY_BUCKETS))


def _images(s: Section) -> ImagesConfig:
    registry = s.string("registry", "", pattern=_REGISTRY,
                        hint=" (e.g. registry.example.com/ml; leave it out to use this stack's own ECR repositories)")
    tag = s.string("tag", pattern=_TAG, hint=" (a version tag such as 1.4.2, or sha256:<64 hex digits>)")
    if tag == "latest":
        s.problems.add(s.key("tag"), "'latest' is not allowed: it makes rollouts unrepeatable; use a version tag "
                                     "or a digest")
    digests = s.string_map("digests")
    for name, digest in sorted(digests.items()):
        key = f"{s.key('digests')}.{name}"
        if name not in PLATFORM_IMAGES:
            s.problems.add(key, f"{name!r} is not an image of the platform; use one of: {', '.join(PLATFORM_IMAGES)}")
        elif not re.fullmatch(_DIGEST, digest):
            s.problems.add(key, f"{digest!r} is not an image digest; use sha256:<64 lower-case hex digits>, as the "
                                "images workflow records it")
    s.finish()
    return ImagesConfig(registry=registry, tag=tag, digests=digests)


def _pool(s: Section, pools: dict[str, GpuPoolConfig]) -> str:
    name = s.string("gpuPool", "")
    if name and name not in pools:
        known = ", ".join(sorted(pools)) or "none configured"
        s.problems.add(s.key("gpuPool"), f"{name!r} is not a GPU pool of this stack (gpuPools: {known})")
    return name


def serving(s: Section, pools: dict[str, GpuPoolConfig], monitoring: MonitoringConfig) -> ServingConfig:
    """`models[i].serving`; the latency objective defaults to the platform's (`monitoring.*`)."""
    config = ServingConfig(
        min_replicas=s.integer("minReplicas", 2, minimum=1, maximum=100),
        max_replicas=s.integer("maxReplicas", 6, minimum=1, maximum=100),
        target_cpu_percent=s.integer("targetCpuPercent", 70, minimum=10, maximum=100),
        gpu_pool=_pool(s, pools),
        cpu=s.string("cpu", "1", pattern=_QUANTITY_CPU, hint=" (e.g. 500m or 2)"),
        memory=s.string("memory", "2Gi", pattern=_QUANTITY_MEMORY, hint=" (e.g. 512Mi or 4Gi)"),
        max_batch_size=s.integer("maxBatchSize", 64, minimum=1, maximum=4096),
        max_batch_delay_ms=s.integer("maxBatchDelayMs", 5, minimum=0, maximum=1000),
        latency_slo_seconds=s.number("latencySloSeconds", monitoring.latency_slo_seconds, minimum=0.005, maximum=60),
        slo_objective=s.number("sloObjective", monitoring.slo_objective, minimum=0.5, maximum=0.9999),
    )
    _latency_bucket(s, config.latency_slo_seconds)
    if config.min_replicas > config.max_replicas:
        s.problems.add(s.key("minReplicas"), f"{config.min_replicas} is above maxReplicas ({config.max_replicas})")
    pool = pools.get(config.gpu_pool)
    if pool and config.max_replicas > pool.max_units:
        s.problems.add(s.key("maxReplicas"), f"{config.max_replicas} GPU pods cannot fit pool {pool.name!r} "
                                             f"(at most {pool.max_units} GPU units)")
    s.finish()
    return config


def training(s: Section, pools: dict[str, GpuPoolConfig]) -> TrainingConfig:
    """`models[i].training`; the team's quota on the pool is checked by the caller, which knows the team."""
    schedule = s.string("schedule", "")
    if schedule and not _is_cron(schedule):
        s.problems.add(s.key("schedule"), f"{schedule!r} is not a 5-field cron expression (e.g. '0 3 * * 1')")
    config = TrainingConfig(
        gpu_pool=_pool(s, pools),
        workers=s.integer("workers", 1, minimum=1, maximum=64),
        gpus_per_worker=s.integer("gpusPerWorker", 1, minimum=1, maximum=16),
        epochs=s.integer("epochs", 10, minimum=1, maximum=10000),
        schedule=schedule,
        backoff_limit=s.integer("backoffLimit", 3, minimum=0, maximum=20),
        deadline_hours=s.integer("deadlineHours", 12, minimum=1, maximum=168),
        keep_finished_hours=s.integer("keepFinishedHours", 24, minimum=1, maximum=720),
        priority_class=s.string("priorityClass", DEFAULT_PRIORITY_CLASS, choices=PRIORITY_CLASSES),
    )
    pool = pools.get(config.gpu_pool)
    if pool and config.gpus_per_worker > pool.max_units_per_node:
        s.problems.add(s.key("gpusPerWorker"), f"{config.gpus_per_worker} is more than the largest instance of pool "
                                               f"{pool.name!r} has ({pool.max_units_per_node} GPU units)")
    if pool and config.workers * config.gpus_per_worker > pool.max_units:
        s.problems.add(s.key("workers"), f"{config.workers} workers x {config.gpus_per_worker} GPUs exceed pool "
                                         f"{pool.name!r}'s limit of {pool.max_units} GPU units")
    elif pool and pool.sharing.units_per_gpu > 1 and config.workers * config.gpus_per_worker > 1:
        # A time-sliced unit may be the same GPU as another rank's (NCCL refuses duplicate GPUs), and a process
        # sees one MIG instance at most; so a shared pool trains single-unit jobs only.
        s.problems.add(s.key("workers"), f"pool {pool.name!r} shares its GPUs, so a unit is a slice of one and "
                                         "torchrun's ranks would not get distinct whole GPUs; use workers: 1 and "
                                         "gpusPerWorker: 1 there, or train on a pool without sharing")
    s.finish()
    return config


def _ingestion(s: Section, kafka: KafkaConfig) -> IngestionConfig:
    config = IngestionConfig(replicas=s.integer("replicas", 2, minimum=1, maximum=100),
                             batch_records=s.integer("batchRecords", 20000, minimum=1, maximum=1_000_000))
    partitions = kafka.topics["transactions"].partitions
    if config.replicas > partitions:
        s.problems.add(s.key("replicas"), f"{config.replicas} consumers for {partitions} partitions of the "
                                          "transactions topic would leave some idle; lower it or add partitions")
    s.finish()
    return config


def _is_cron(text: str) -> bool:
    fields = text.split()
    return len(fields) == 5 and all(re.fullmatch(_CRON_FIELD, f) for f in fields)
