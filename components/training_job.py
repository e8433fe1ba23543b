"""Model training as a Kubernetes CronJob whose job template is the training Job.

Without `training.schedule` the CronJob is suspended and serves as the job template, started on demand with
`kubectl create job --from=cronjob/<name> <run name>`; with it, retraining runs periodically. Declaring a bare Job
instead would make `pulumi up` start (and wait on) a GPU job on every template change.

Several workers run distributed data-parallel training with torchrun: an Indexed Job gives each pod a stable
`<job>-<index>` hostname under a headless Service, and worker 0 is the rendezvous host. Checkpoints go to the lake
under the job's name, so a pod replaced after a spot interruption resumes from the last one; interruptions
(`DisruptionTarget`) do not count against the retry limit, and configuration errors (exit code 2) are not retried.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.pod_spec import (container_security, env, gpu_placement, labels, pod_security, resources, selector,
                                 tmp_volume)
from components.workload_base import WorkloadBase, WorkloadContext, lake_uri, s3_statements
from platform_config.services_model import TrainingConfig

RENDEZVOUS_PORT = 29500
METRICS_PORT = 9100
CONFIG_ERROR_EXIT_CODE = 2
CHECKPOINT_PREFIX = "checkpoints/"
CURATED_PREFIX = "transactions/"


@dataclass(frozen=True, kw_only=True)
class TrainingJobArgs:
    context: WorkloadContext
    config: TrainingConfig
    image: str
    model_name: str
    experiment: str = "fraud-detection"


def launch_command(name: str, cfg: TrainingConfig) -> list[str]:
    if cfg.workers == 1 and (not cfg.gpu_pool or cfg.gpus_per_worker == 1):
        return ["python", "-m", "training"]
    per_node = cfg.gpus_per_worker if cfg.gpu_pool else 1
    if cfg.workers == 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={per_node}", "-m", "training"]
    # $(VAR) is expanded by the kubelet from the container's env, so each run's own job name is used.
    return ["torchrun", f"--nnodes={cfg.workers}", f"--nproc_per_node={per_node}",
            "--node_rank=$(JOB_COMPLETION_INDEX)", f"--master_addr=$(JOB_NAME)-0.{name}",
            f"--master_port={RENDEZVOUS_PORT}", "-m", "training"]


def job_spec(name: str, args: TrainingJobArgs, env_vars: list[dict]) -> dict:
    cfg = args.config
    gpus = cfg.gpus_per_worker if cfg.gpu_pool else 0
    tmp, tmp_mount = tmp_volume()
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    pod_spec = {
        "serviceAccountName": name, "securityContext": pod_security(), "restartPolicy": "Never",
        "containers": [{
            "name": "train", "image": args.image, "command": launch_command(name, cfg), "env": env_vars,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
            "resources": resources("4", "16Gi", gpus) if gpus else resources("2", "4Gi"),
            "securityContext": container_security(),
            # NCCL and DataLoader workers share tensors through /dev/shm, which is tiny by default.
            "volumeMounts": [tmp_mount, {"name": "dshm", "mountPath": "/dev/shm"}],
        }],
        "volumes": [tmp, shm], **gpu_placement(cfg.gpu_pool),
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
                                                  "values": [CONFIG_ERROR_EXIT_CODE]}},
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
        checkpoints = f"{CHECKPOINT_PREFIX}{name}/"
        identity = self._identity(name, ctx, s3_statements(
            ctx, read=[("curated", CURATED_PREFIX)], write=[("artifacts", checkpoints)]), kafka=None)
        opts_k8s = self._k8s_opts(ctx, identity)
        meta = {"name": name, "namespace": ctx.namespace, "labels": labels(name, "training")}
        env_vars = [
            {"name": "JOB_NAME", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}},
            {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            *env({"MLFLOW_TRACKING_URI": ctx.mlflow_tracking_uri, "MLFLOW_EXPERIMENT": args.experiment,
                  "MODEL_NAME": args.model_name, "EPOCHS": str(cfg.epochs), "AWS_REGION": ctx.region,
                  "METRICS_PORT": str(METRICS_PORT), "LAKE_CURATED_URI": lake_uri(ctx, "curated", CURATED_PREFIX),
                  # One checkpoint folder per run: a retry resumes its own run, the next schedule starts fresh.
                  "CHECKPOINT_URI": lake_uri(ctx, "artifacts", checkpoints).apply(lambda u: f"{u}$(JOB_NAME)/")}),
        ]
        if cfg.workers > 1:
            k8s.core.v1.Service(f"{name}-workers", metadata=meta, spec={
                "clusterIP": "None", "selector": selector(name), "publishNotReadyAddresses": True,
                "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}, opts=opts_k8s)
        k8s.batch.v1.CronJob(f"{name}-cronjob", metadata=meta, spec={
            # Without a schedule the CronJob only holds the job template; @yearly is never reached while suspended.
            "schedule": cfg.schedule or "@yearly", "suspend": not cfg.schedule, "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": labels(name, "training")},
                            "spec": job_spec(name, args, env_vars)},
        }, opts=opts_k8s)
        self._pod_monitor(name, ctx, "metrics")
        self.register_outputs({"run_command": f"kubectl -n {ctx.namespace} create job --from=cronjob/{name} "
                                              f"{name}-manual-1"})
