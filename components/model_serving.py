"""Serve a registered model over HTTP: Deployment, Service, autoscaling, disruption budget and scraping.

The pods load `models:/<name>@champion` from MLflow and follow the alias, so promoting a model is a registry
operation, not a deploy. Shutdown is ordered so no request is dropped: the preStop pause lets endpoints drop the pod
before SIGTERM, and the grace period covers the server's own drain of in-flight requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.kafka_access import KafkaGrant
from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, gpu_placement, http_probe, labels,
                                 pod_security, resources, selector, tmp_volume)
from components.workload_base import (MONITORING_NAMESPACE, WorkloadBase, WorkloadContext, from_namespaces,
                                      mlflow_volumes, tcp)
from platform_config.services_model import ServingConfig

PORT = 8080
# Shutdown: preStop pause while endpoints drop the pod, then SIGTERM; the server answers a little longer (readiness
# already failing), then closes its listener and finishes what is in flight within the rest of the grace period.
PRE_STOP_SECONDS = 10
SERVER_DRAIN_SECONDS = 5
IN_FLIGHT_SECONDS = 30


@dataclass(frozen=True, kw_only=True)
class ModelServingArgs:
    context: WorkloadContext
    config: ServingConfig
    image: str
    model_name: str
    alias: str = "champion"
    log_predictions: bool = True
    """Publish every prediction to the predictions topic (drift monitoring reads it)."""


def spread(name: str) -> list[dict]:
    match = {"matchLabels": selector(name)}
    return [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": match},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": match}]


class ModelServing(WorkloadBase):
    url: str

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:workloads:ModelServing", name, None, opts)
        ctx, cfg = args.context, args.config
        predictions = ctx.team.topic("predictions")
        grant = KafkaGrant(client=name, namespace=ctx.namespace, team=ctx.team.name,
                           write=[predictions]) if args.log_predictions else None
        identity = self._identity(name, ctx, statements=[], kafka=grant)
        opts_k8s = self._k8s_opts(ctx, identity)
        meta = {"name": name, "namespace": ctx.namespace, "labels": labels(name, "serving")}
        tmp, tmp_mount = tmp_volume()
        kafka_volumes, kafka_mounts = self._kafka_volumes()
        mlflow_vols, mlflow_mounts = mlflow_volumes(ctx)
        gpus = 1 if cfg.gpu_pool else 0
        container = {
            "name": "server", "image": args.image, **ALWAYS_PULL, "ports": [{"name": "http", "containerPort": PORT}],
            "env": env({
                "MODEL_NAME": args.model_name, "MODEL_URI": f"models:/{args.model_name}@{args.alias}",
                "MLFLOW_TRACKING_URI": ctx.mlflow_tracking_uri, "PORT": str(PORT), "MODEL_POLL_SECONDS": "30",
                "DRAIN_SECONDS": str(SERVER_DRAIN_SECONDS),
                "MAX_BATCH_SIZE": str(cfg.max_batch_size), "MAX_BATCH_DELAY_MS": str(cfg.max_batch_delay_ms),
                "PREDICTION_LOGGING": "true" if args.log_predictions else "false",
                "KAFKA_TOPIC_PREDICTIONS": predictions, "AWS_REGION": ctx.region,
                **self._kafka_env()}),
            # Startup waits for the process, not the model: on a new platform no champion exists until the first
            # training run, and the pod must wait for it (not ready) rather than be restarted in a loop.
            "startupProbe": http_probe("/healthz/live", "http", period=5, failures=24),
            "readinessProbe": http_probe("/healthz/ready", "http", period=5, failures=2),
            "livenessProbe": http_probe("/healthz/live", "http", period=10, failures=3),
            "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
            "resources": resources(cfg.cpu, cfg.memory, gpus), "securityContext": container_security(),
            "volumeMounts": [tmp_mount, *kafka_mounts, *mlflow_mounts],
        }
        # Pulumi does not wait for readiness: pods become ready only once a champion model is registered, which on
        # a new platform happens after the first training run, not during `pulumi up`.
        deploy_meta = {**meta, "annotations": {"pulumi.com/skipAwait": "true"}}
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=deploy_meta, spec={
            # No `replicas`: the HorizontalPodAutoscaler owns the count, and a deploy must not reset it.
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {"metadata": {"labels": labels(name, "serving"), "annotations": self._pod_annotations()},
                         "spec": {
                "serviceAccountName": name, "securityContext": pod_security(), **NO_API_TOKEN,
                "terminationGracePeriodSeconds": PRE_STOP_SECONDS + SERVER_DRAIN_SECONDS + IN_FLIGHT_SECONDS,
                "containers": [container], "volumes": [tmp, *kafka_volumes, *mlflow_vols],
                "topologySpreadConstraints": spread(name), **gpu_placement(cfg.gpu_pool),
            }},
        }, opts=opts_k8s)
        k8s.core.v1.Service(f"{name}-svc", metadata=meta, spec={
            "selector": selector(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}, opts=opts_k8s)
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=meta, spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": cfg.min_replicas, "maxReplicas": cfg.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": cfg.target_cpu_percent}}}],
            # Scale up at once, scale down slowly: traffic bursts are cheaper to absorb than cold starts.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        }, opts=opts_k8s)
        # maxUnavailable (not minAvailable = replicas) so a node drain can always evict one pod at a time.
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
            "maxUnavailable": 1, "selector": {"matchLabels": selector(name)}}, opts=opts_k8s)
        # Predictions are for the workloads' own namespace (and Prometheus scrapes /metrics on the same port);
        # callers elsewhere come through `kubectl port-forward` or get their namespace added here.
        callers = [{"podSelector": {}}, *from_namespaces(MONITORING_NAMESPACE)]
        self._ingress_policy(name, ctx, opts_k8s, [{"from": callers, "ports": tcp(PORT)}])
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=meta, spec={"selector": {"matchLabels": selector(name)},
                                 "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]},
            opts=self._monitor_opts(ctx))
        self.url = f"http://{name}.{ctx.namespace}.svc.cluster.local/invocations"
        self.register_outputs({"url": self.url})
