"""Model training as a Kubernetes CronJob whose job template is the training Job.

Without `training.schedule` the CronJob is suspended and serves as the job template, started on demand with
`kubectl create job --from=cronjob/<name> <run name>`; with it, retraining runs periodically. Declaring a bare Job
instead would make `pulumi up` start (and wait on) a GPU job on every template change.

Several workers run distributed data-parallel training with torchrun: an Indexed Job gives each pod a stable
`<job>-<index>` hostname under a headless Service, and worker 0's agent hosts the c10d rendezvous. Checkpoints go to
the lake under the job's name. When a spot reclaim takes a pod, its index is replaced without counting against the
retry limit (`DisruptionTarget`), and the survivors' agents restart their workers into a new rendezvous that the
replacement joins, so they do not fail either (`--max-restarts`); only the loss of worker 0, whose agent holds the
rendezvous store, makes the others exit and costs one retry. Configuration errors (exit code 2) are not retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, gpu_placement, labels,
                                 pod_security, resources, selector, tmp_volume)
from components.gpu_pool import POOL_LABEL
from components.workload_base import (MONITORING_NAMESPACE, WorkloadBase, WorkloadContext, from_namespaces, lake_uri,
                                      mlflow_volumes, s3_statements, tcp, team_prefix)
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.instance_catalog import allocatable
from platform_config.model import GpuPoolConfig
from platform_config.services_model import TrainingConfig

# torchrun's c10d rendezvous port (its default); workers also open ports of their own (the process-group store,
# NCCL), so peers of one job are admitted on every port.
RENDEZVOUS_PORT = 29400
# A replacement pod may need a new spot node and a multi-GB image pull before it joins the rendezvous.
JOIN_TIMEOUT_SECONDS = 1800
# Survivors restart their workers this many times per run when a peer is replaced.
AGENT_RESTARTS = 3
METRICS_PORT = 9100
# Left on every GPU node for what runs there besides the training pod: the device plugin, DCGM and node exporters,
# aws-node, kube-proxy, the Pod Identity agent and the EBS CSI node (their requests are a few hundred millicores).
NODE_DAEMONS_CPU_M = 500
NODE_DAEMONS_MEMORY_MIB = 1024
# Training's exits that a retry cannot fix (workloads/training/main.py): bad configuration, refused by MLflow.
CONFIG_ERROR_EXIT_CODE, REFUSED_EXIT_CODE = 2, 4
CHECKPOINT_PREFIX = "checkpoints/"
CURATED_PREFIX = "transactions/"
# Kueue's labels on a Job: which LocalQueue admits it, and at what WorkloadPriorityClass.
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
LOCAL_QUEUE = "default"


@dataclass(frozen=True, kw_only=True)
class TrainingJobArgs:
    context: WorkloadContext
    config: TrainingConfig
    image: str
    model_name: str
    pool: GpuPoolConfig | None = None
    """The GPU pool `config.gpu_pool` names; its smallest instance type sizes the pods."""
    experiment: str
    queue: Sequence[pulumi.Resource] = ()
    """Kueue's webhook and the team's LocalQueue: a Job created before Kueue could admit it would run unqueued."""


def launch_command(name: str, namespace: str, cfg: TrainingConfig) -> list[str]:
    if cfg.workers == 1 and (not cfg.gpu_pool or cfg.gpus_per_worker == 1):
        return ["python", "-m", "training"]
    per_node = cfg.gpus_per_worker if cfg.gpu_pool else 1
    if cfg.workers == 1:
        return ["torchrun", "--standalone", f"--nproc-per-node={per_node}", "-m", "training"]
    # $(VAR) is expanded by the kubelet from the container's env, so each run's own job name is used. The endpoint
    # is worker 0's full DNS name, which its own agent recognises as itself and so hosts the store.
    host = f"$(JOB_NAME)-0.{name}.{namespace}.svc.cluster.local"
    return ["torchrun", f"--nnodes={cfg.workers}", f"--nproc-per-node={per_node}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{RENDEZVOUS_PORT}", "--rdzv-id=$(JOB_NAME)",
            f"--rdzv-conf=join_timeout={JOIN_TIMEOUT_SECONDS}", f"--max-restarts={AGENT_RESTARTS}",
            "-m", "training"]


def worker_resources(cfg: TrainingConfig, pool: GpuPoolConfig | None) -> dict:
    """A GPU worker's CPU and memory: its share of the smallest node in the pool that can hold its GPUs, after the
    node's own reservations and daemons, so every instance type the pool offers can take it (a request sized for a
    bigger node would leave Karpenter only that one type to launch)."""
    if not cfg.gpu_pool or pool is None:
        return resources("2", "4Gi")
    shares = []
    for t in pool.instance_types:
        node_gpus = GPU_INSTANCE_TYPES[t].gpus
        if node_gpus >= cfg.gpus_per_worker:
            cpu_m, memory_mib = allocatable(t)
            fraction = cfg.gpus_per_worker / node_gpus
            shares.append(((cpu_m - NODE_DAEMONS_CPU_M) * fraction, (memory_mib - NODE_DAEMONS_MEMORY_MIB) * fraction))
    if not shares:
        raise ValueError(f"no instance type of GPU pool {pool.name!r} has {cfg.gpus_per_worker} GPUs")
    cpu_m = min(c for c, _ in shares) // 100 * 100
    memory_mib = min(m for _, m in shares) // 256 * 256
    return resources(f"{int(cpu_m)}m", f"{int(memory_mib)}Mi", cfg.gpus_per_worker)


def queue_labels(cfg: TrainingConfig) -> dict[str, str]:
    """Every training Job goes through its team's queue: Kueue holds it (suspended) until the team's quota admits
    all of its pods at once."""
    return {QUEUE_NAME_LABEL: LOCAL_QUEUE, PRIORITY_CLASS_LABEL: cfg.priority_class}


def cpu_placement() -> dict:
    """CPU training stays off GPU nodes: Kueue gives a pod only flavors whose node labels its affinity admits, so
    this keeps a CPU job from being admitted onto a GPU pool's quota when the general pool's is used up."""
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": POOL_LABEL, "operator": "DoesNotExist"}]}]}}}}


def job_spec(name: str, args: TrainingJobArgs, env_vars: list[dict]) -> dict:
    cfg = args.config
    tmp, tmp_mount = tmp_volume()
    mlflow_vols, mlflow_mounts = mlflow_volumes(args.context)
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    pod_spec = {
        "serviceAccountName": name, "securityContext": pod_security(), "restartPolicy": "Never", **NO_API_TOKEN,
        "containers": [{
            "name": "train", "image": args.image, **ALWAYS_PULL,
            "command": launch_command(name, args.context.namespace, cfg), "env": env_vars,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
            "resources": worker_resources(cfg, args.pool),
            "securityContext": container_security(),
            # NCCL and DataLoader workers share tensors through /dev/shm, which is tiny by default.
            "volumeMounts": [tmp_mount, {"name": "dshm", "mountPath": "/dev/shm"}, *mlflow_mounts],
        }],
        "volumes": [tmp, shm, *mlflow_vols], **(gpu_placement(cfg.gpu_pool) if cfg.gpu_pool else cpu_placement()),
    }
    if cfg.workers > 1:
        pod_spec["subdomain"] = name
    return {
        "completionMode": "Indexed", "completions": cfg.workers, "parallelism": cfg.workers,
        "backoffLimit": cfg.backoff_limit, "activeDeadlineSeconds": cfg.deadline_hours * 3600,
        "ttlSecondsAfterFinished": cfg.keep_finished_hours * 3600,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In",
                                                  "values": [CONFIG_ERROR_EXIT_CODE, REFUSED_EXIT_CODE]}},
        ]},
        "template": {
            # Consolidation must not move a running training pod; spot reclaims still can, and resume from
            # the last checkpoint.
            "metadata": {"labels": labels(name, "training"), "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
            "spec": pod_spec,
        },
    }


class TrainingJob(WorkloadBase):
    def __init__(self, name: str, args: TrainingJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:workloads:TrainingJob", name, None, opts)
        ctx, cfg = args.context, args.config
        checkpoints = team_prefix(ctx, f"{CHECKPOINT_PREFIX}{name}/")
        curated = team_prefix(ctx, CURATED_PREFIX)
        identity = self._identity(name, ctx, s3_statements(
            ctx, read=[("curated", curated)], write=[("artifacts", checkpoints)]), kafka=None)
        opts_k8s = self._k8s_opts(ctx, identity, *args.queue)
        meta = {"name": name, "namespace": ctx.namespace, "labels": labels(name, "training")}
        env_vars = [
            {"name": "JOB_NAME", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}},
            {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            *env({"MLFLOW_TRACKING_URI": ctx.mlflow_tracking_uri, "MLFLOW_EXPERIMENT": args.experiment,
                  "MODEL_NAME": args.model_name, "EPOCHS": str(cfg.epochs), "AWS_REGION": ctx.region,
                  "METRICS_PORT": str(METRICS_PORT), "LAKE_CURATED_URI": lake_uri(ctx, "curated", curated),
                  # One checkpoint folder per run: a retry resumes its own run, the next schedule starts fresh.
                  "CHECKPOINT_URI": lake_uri(ctx, "artifacts", checkpoints).apply(lambda u: f"{u}$(JOB_NAME)/")}),
        ]
        if cfg.workers > 1:
            # Not-ready addresses too: workers must find each other before any of them is ready.
            k8s.core.v1.Service(f"{name}-workers", metadata=meta, spec={
                "clusterIP": "None", "selector": selector(name), "publishNotReadyAddresses": True,
                "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}, opts=opts_k8s)
        self._ingress_policy(name, ctx, opts_k8s, [
            {"from": [{"podSelector": {"matchLabels": selector(name)}}]},
            {"from": from_namespaces(MONITORING_NAMESPACE), "ports": tcp(METRICS_PORT)}])
        k8s.batch.v1.CronJob(f"{name}-cronjob", metadata=meta, spec={
            # Without a schedule the CronJob only holds the job template; @yearly is never reached while suspended.
            "schedule": cfg.schedule or "@yearly", "suspend": not cfg.schedule, "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": {**labels(name, "training"), **queue_labels(cfg)}},
                            "spec": job_spec(name, args, env_vars)},
        }, opts=opts_k8s)
        # Only global rank 0 (in pod 0) serves training metrics; other pods' targets would be down for the whole run.
        self._pod_monitor(name, ctx, "metrics", only_labels={"batch.kubernetes.io/job-completion-index": "0"})
        self.register_outputs({"run_command": f"kubectl -n {ctx.namespace} create job --from=cronjob/{name} "
                                              f"{name}-manual-1"})
