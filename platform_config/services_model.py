"""The typed config of the platform services on the cluster: MLflow, Kafka, monitoring and the workloads.

Every default is stated here; the stack files override them per environment. Key names are in backticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DatabaseBackend = Literal["rds", "in-cluster"]
KafkaFlavor = Literal["msk", "strimzi"]
Exposure = Literal["cluster", "vpc"]

# Topic roles -> the names the workloads use by default (workloads/CONTRACT.md).
TOPIC_ROLES = {"transactions": "transactions", "predictions": "predictions", "deadLetter": "transactions-dlq"}


@dataclass(frozen=True)
class DatabaseConfig:
    backend: DatabaseBackend = "rds"
    """`mlflow.database.backend`: `rds` (Amazon RDS PostgreSQL) or `in-cluster` (one PostgreSQL pod on an encrypted
    volume: cheap, no failover; meant for dev)."""
    instance_class: str = "db.t4g.medium"
    """`mlflow.database.instanceClass`, default db.t4g.medium (rds only)."""
    storage_gib: int = 20
    """`mlflow.database.storageGiB`, default 20: RDS allocated storage, or the in-cluster volume size."""
    max_storage_gib: int = 100
    """`mlflow.database.maxStorageGiB`, default 100: RDS storage autoscaling ceiling (rds only)."""
    multi_az: bool = False
    """`mlflow.database.multiAz`, default false: a synchronous standby in a second AZ (rds only)."""
    backup_retention_days: int = 7
    """`mlflow.database.backupRetentionDays`, default 7 (rds only; 0 turns automated backups off)."""
    deletion_protection: bool = True
    """`mlflow.database.deletionProtection`, default true: RDS refuses deletion; a final snapshot is always taken."""


@dataclass(frozen=True)
class MlflowConfig:
    database: DatabaseConfig
    replicas: int = 2
    """`mlflow.replicas`, default 2; with more than one, a PodDisruptionBudget keeps one serving during drains."""
    exposure: Exposure = "cluster"
    """`mlflow.exposure`: `cluster` (ClusterIP, reach it with port-forward) or `vpc` (an internal NLB)."""
    allowed_hosts: list[str] = field(default_factory=list)
    """`mlflow.allowedHosts`: extra Host headers MLflow accepts (e.g. your internal DNS name for the NLB)."""
    client_cidrs: list[str] = field(default_factory=list)
    """`mlflow.clientCidrs`: with `vpc` exposure, ranges beyond the VPC allowed to reach MLflow (VPN, peered VPCs)."""


@dataclass(frozen=True)
class TopicConfig:
    role: str
    """`transactions`, `predictions` or `deadLetter` (the key under `kafka.topics`)."""
    name: str
    partitions: int = 6
    """`kafka.topics.<role>.partitions`, default 6."""
    replication_factor: int = 3
    """`kafka.topics.<role>.replicationFactor`, default 3; at most `kafka.brokers`."""
    retention_hours: int = 168
    """`kafka.topics.<role>.retentionHours`, default 168 (7 days)."""


@dataclass(frozen=True)
class KafkaConfig:
    flavor: KafkaFlavor
    """`kafka.flavor`: `msk` (Amazon MSK) or `strimzi` (Kafka on the cluster). Default: `msk` in prod, else `strimzi`."""
    brokers: int = 3
    """`kafka.brokers`, default 3: MSK broker count (a multiple of the AZ count) or Strimzi broker+controller nodes."""
    broker_instance_type: str = "kafka.m7g.large"
    """`kafka.brokerInstanceType`, default kafka.m7g.large (msk only)."""
    volume_size_gib: int = 100
    """`kafka.volumeSizeGiB`, default 100: storage per broker."""
    topics: dict[str, TopicConfig] = field(default_factory=dict)
    """`kafka.topics.<role>` for each role in TOPIC_ROLES."""

    @property
    def min_insync_replicas(self) -> int:
        return min(2, self.brokers)


@dataclass(frozen=True)
class MonitoringConfig:
    retention: str = "15d"
    """`monitoring.retention`, default 15d: how long Prometheus keeps samples."""
    storage_gib: int = 50
    """`monitoring.storageGiB`, default 50: Prometheus volume."""
    latency_slo_seconds: float = 0.25
    """`monitoring.latencySloSeconds`, default 0.25: a prediction slower than this spends the latency error budget."""
    slo_objective: float = 0.99
    """`monitoring.sloObjective`, default 0.99: the share of predictions that must be fast and successful."""
    gpu_idle_minutes: int = 30
    """`monitoring.gpuIdleMinutes`, default 30: a GPU allocated but idle this long raises a cost alert."""
    drift_psi_threshold: float = 0.2
    """`monitoring.driftPsiThreshold`, default 0.2: PSI above this on any feature is drift."""
    consumer_lag_records: int = 10000
    """`monitoring.consumerLagRecords`, default 10000: ingestion this far behind for 10 minutes alerts."""
    queue_pending_minutes: int = 60
    """`monitoring.queuePendingMinutes`, default 60: a workload waiting in a team's Kueue queue this long alerts."""
    alert_webhook_url: str = ""
    """`monitoring.alertWebhookUrl`: where Alertmanager posts alerts (set it with `pulumi config set --secret`);
    empty keeps alerts in the Alertmanager and Grafana UIs only."""


# The images the platform builds and deploys: one per `workloads/<name>/Dockerfile` (the images workflow builds every
# such directory; tests/test_image_registry.py holds this list to them). These are the keys of `images.digests`.
PLATFORM_IMAGES = ("drift", "inference", "ingestion", "mlflow-server", "training")


def ecr_repository_name(name_prefix: str, image: str) -> str:
    """This stack's ECR repository for `image`: `<project>-<stack>/<image>`. ECR names are unique per account and
    region, and two stacks may share both (dev and staging do in the sample stacks)."""
    return f"{name_prefix}/{image}"


@dataclass(frozen=True)
class ImagesConfig:
    tag: str
    """`images.tag`, required: a version tag (never `latest`) or an `sha256:` digest."""
    registry: str = ""
    """`images.registry`: pull the images from `<registry>/ml-platform-<name>` instead; empty (the default): this
    stack's own ECR repositories, `<account>.dkr.ecr.<region>.amazonaws.com/<project>-<stack>/<name>`."""
    digests: dict[str, str] = field(default_factory=dict)
    """`images.digests`: image name (PLATFORM_IMAGES) -> `sha256:<64 hex>`; a digest pins that image
    (`<repository>@sha256:...`) whatever the tag says. The deploy sets them from the images workflow's output."""

    def ref(self, name: str, own_repository: str) -> str:
        """What pods pull for image `name`: `own_repository` (this stack's, `<host>/<path>`) unless `registry`
        points elsewhere; by its digest when one is pinned, else by the tag."""
        image = f"{self.registry}/ml-platform-{name}" if self.registry else own_repository
        digest = self.digests.get(name) or (self.tag if self.tag.startswith("sha256:") else "")
        return f"{image}@{digest}" if digest else f"{image}:{self.tag}"


@dataclass(frozen=True)
class ServingConfig:
    min_replicas: int = 2
    """`serving.minReplicas`, default 2."""
    max_replicas: int = 6
    """`serving.maxReplicas`, default 6."""
    target_cpu_percent: int = 70
    """`serving.targetCpuPercent`, default 70: the HorizontalPodAutoscaler's CPU target."""
    gpu_pool: str = ""
    """`serving.gpuPool`: run on this GPU pool (one `nvidia.com/gpu` per pod); empty runs on CPU."""
    cpu: str = "1"
    """`serving.cpu`, default 1: CPU request and limit per pod."""
    memory: str = "2Gi"
    """`serving.memory`, default 2Gi: memory request and limit per pod."""
    max_batch_size: int = 64
    """`serving.maxBatchSize`, default 64: rows per model call after micro-batching."""
    max_batch_delay_ms: int = 5
    """`serving.maxBatchDelayMs`, default 5: how long a request may wait for others to fill a batch."""
    latency_slo_seconds: float = 0.25
    """`serving.latencySloSeconds`, default `monitoring.latencySloSeconds`: a prediction slower than this spends the
    model's latency error budget; must be a bucket boundary of the latency histogram."""
    slo_objective: float = 0.99
    """`serving.sloObjective`, default `monitoring.sloObjective`: the share of predictions that must be fast and
    successful."""


@dataclass(frozen=True)
class TrainingConfig:
    gpu_pool: str = ""
    """`training.gpuPool`: the GPU pool training runs on; empty runs on CPU (system nodes)."""
    workers: int = 1
    """`training.workers`, default 1: more than one runs distributed data-parallel with torchrun."""
    gpus_per_worker: int = 1
    """`training.gpusPerWorker`, default 1 (ignored on CPU)."""
    epochs: int = 10
    """`training.epochs`, default 10."""
    schedule: str = ""
    """`training.schedule`: a cron expression for periodic retraining (a CronJob); empty trains once (a Job)."""
    backoff_limit: int = 3
    """`training.backoffLimit`, default 3: failed pods before the job fails; spot interruptions do not count."""
    deadline_hours: int = 12
    """`training.deadlineHours`, default 12: the job is stopped after this long."""
    keep_finished_hours: int = 24
    """`training.keepFinishedHours`, default 24: finished jobs and their pods are deleted after this."""
    priority_class: str = "batch"
    """`training.priorityClass`, default batch: the Kueue WorkloadPriorityClass (production, batch, experiment)."""


@dataclass(frozen=True)
class IngestionConfig:
    replicas: int = 2
    """`ingestion.replicas`, default 2: consumers in the group; at most the transactions topic's partitions."""
    batch_records: int = 20000
    """`ingestion.batchRecords`, default 20000: records per partition batch (its Parquet files and its commit). Each
    batch costs a marker, two files and two commits whatever its size, so small ones spend the consumer on requests."""


@dataclass(frozen=True)
class ServicesConfig:
    """The platform-wide services; serving and training are per model (`models[i].serving`/`.training`)."""
    mlflow: MlflowConfig
    kafka: KafkaConfig
    monitoring: MonitoringConfig
    images: ImagesConfig
    ingestion: IngestionConfig
