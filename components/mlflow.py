"""MLflow tracking server and model registry: PostgreSQL backend, artifacts in the lake, no static AWS keys.

Clients never touch S3 for artifacts: the server runs with `--serve-artifacts` and proxies uploads and downloads to
the artifacts bucket under its own workload identity, so training and inference pods need no bucket access of their
own for models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.iam import Statement
from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, http_probe, labels,
                                 pod_security, resources, secret_volume, selector, tmp_volume)
from components.workload_base import lake_key_statement
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config.services_model import MlflowConfig

APP = "mlflow"
# The migration Job's pods get their own name: a PodDisruptionBudget selecting the server must never select a Job's
# pod (a Job has no scale subresource, and the budget would then allow no eviction at all).
MIGRATION_APP = "mlflow-migration"
PORT = 5000
BACKEND_DIR = "/etc/mlflow-backend"
# The backend URI (with the database password) is read from the mounted Secret when the process starts.
FROM_BACKEND_FILE = f'MLFLOW_BACKEND_STORE_URI="$(cat {BACKEND_DIR}/uri)"; export MLFLOW_BACKEND_STORE_URI; '

ARTIFACT_PREFIX = "mlflow"
# Namespaces whose pods may call MLflow: the workloads, and Prometheus.
CLIENT_NAMESPACES = ("ml-workloads", "monitoring")


@dataclass(frozen=True, kw_only=True)
class MlflowArgs:
    config: MlflowConfig
    namespace: str
    image: str
    region: str
    backend_uri: pulumi.Output[str]
    """A secret Output: the SQLAlchemy URI of the backend store, password included."""
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    lake_kms_key_arn: pulumi.Input[str]
    k8s_provider: k8s.Provider
    identity: dict[str, Any] = field(default_factory=dict)
    """mode / oidc_provider_arn / oidc_issuer / account_id, as for every WorkloadIdentity."""
    cluster_name: pulumi.Input[str] = ""
    vpc_cidr: str = "10.0.0.0/16"
    """With `vpc` exposure, only the VPC (plus `mlflow.clientCidrs`) may reach the load balancer."""
    depends_on: Sequence[pulumi.Resource] = ()


def artifact_statements(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str], region: str) -> list[Statement]:
    objects = pulumi.Output.concat(bucket_arn, f"/{ARTIFACT_PREFIX}/*")
    return [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [objects]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{ARTIFACT_PREFIX}/*"]}}},
        lake_key_statement(key_arn, region),
    ]


def allowed_hosts(cfg: MlflowConfig, namespace: str, region: str) -> str:
    """Host headers MLflow accepts (its DNS-rebinding protection); probes use /health, which is exempt."""
    hosts = ["localhost:*", "127.0.0.1:*"]  # kubectl port-forward
    for name in (APP, f"{APP}.{namespace}", f"{APP}.{namespace}.svc", f"{APP}.{namespace}.svc.cluster.local"):
        hosts += [name, f"{name}:*"]
    if cfg.exposure == "vpc":
        hosts.append(f"*.elb.{region}.amazonaws.com:*")
    return ",".join([*hosts, *cfg.allowed_hosts])


class Mlflow(pulumi.ComponentResource):
    tracking_uri: str

    def __init__(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:mlflow:Mlflow", name, None, opts)
        cfg = args.config
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        identity = WorkloadIdentity(name, WorkloadIdentityArgs(
            cluster_name=args.cluster_name, namespace=args.namespace, service_account=APP,
            statements=artifact_statements(args.artifacts_bucket_arn, args.lake_kms_key_arn, args.region),
            create_service_account=True, k8s_provider=args.k8s_provider, depends_on=args.depends_on,
            **args.identity), opts=pulumi.ResourceOptions(parent=self))
        meta = {"name": APP, "namespace": args.namespace, "labels": labels(APP, "tracking")}
        secret = k8s.core.v1.Secret(f"{name}-backend", metadata={**meta, "name": f"{APP}-backend"},
                                    string_data={"uri": args.backend_uri}, opts=k8s_opts)
        volume, mount = tmp_volume()
        backend, backend_mount = secret_volume("backend", secret.metadata.name, BACKEND_DIR)
        server_env = env({
            "MLFLOW_HOST": "0.0.0.0", "MLFLOW_PORT": str(PORT), "MLFLOW_WORKERS": "2",
            "MLFLOW_SERVE_ARTIFACTS": "true",
            # Job execution starts a pool of Huey worker processes (~240 MB each) for GenAI jobs this platform does
            # not run; with it on, the pod would blow through its memory limit.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_ARTIFACTS_DESTINATION": pulumi.Output.concat("s3://", args.artifacts_bucket, f"/{ARTIFACT_PREFIX}"),
            "MLFLOW_SERVER_ALLOWED_HOSTS": allowed_hosts(cfg, args.namespace, args.region),
            "AWS_REGION": args.region, "HOME": "/tmp",
        })
        container = {
            "name": "mlflow", "image": args.image, **ALWAYS_PULL, "ports": [{"name": "http", "containerPort": PORT}],
            "command": ["sh", "-c", FROM_BACKEND_FILE + "exec mlflow server"], "env": server_env,
            # Migrations can take a while on a large registry; the startup probe gives them 5 minutes.
            "startupProbe": http_probe("/health", "http", period=5, failures=60),
            "readinessProbe": http_probe("/health", "http", period=10, failures=3),
            "livenessProbe": http_probe("/health", "http", period=20, failures=3),
            "resources": resources("500m", "1Gi"), "securityContext": container_security(),
            "volumeMounts": [mount, backend_mount],
        }
        # Schema migrations run once per image, as a Job the Deployment waits for: init containers in several
        # replicas would race to migrate a fresh database. The name carries the image, so an upgrade migrates again.
        # It gets only what `mlflow db upgrade` reads, so a server-only setting never replaces the (immutable) Job.
        migrate = {"name": "db-upgrade", "image": args.image, **ALWAYS_PULL,
                   "command": ["sh", "-c", FROM_BACKEND_FILE + 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"'],
                   "env": env({"HOME": "/tmp"}), "securityContext": container_security(),
                   "volumeMounts": [mount, backend_mount], "resources": resources("250m", "512Mi")}
        image_id = hashlib.sha256(args.image.encode()).hexdigest()[:8]
        migration = k8s.batch.v1.Job(f"{name}-db-upgrade", metadata={
            "name": f"{APP}-db-upgrade-{image_id}", "namespace": args.namespace,
            "labels": labels(MIGRATION_APP, "migration")},
            spec={"backoffLimit": 6, "template": {"metadata": {"labels": labels(MIGRATION_APP, "migration")}, "spec": {
                "restartPolicy": "Never", "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [migrate], "volumes": [volume, backend]}}}, opts=k8s_opts)
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={
            "replicas": cfg.replicas, "selector": {"matchLabels": selector(APP)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels(APP, "tracking")}, "spec": {
                "serviceAccountName": APP, "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [container], "volumes": [volume, backend],
                "terminationGracePeriodSeconds": 30,
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": selector(APP)}}],
            }},
        }, opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[identity, migration])))
        service_spec: dict[str, Any] = {"selector": selector(APP),
                                        "ports": [{"name": "http", "port": PORT, "targetPort": "http"}]}
        annotations = {}
        if cfg.exposure == "vpc":
            # An internal NLB: reachable from the VPC (and peered networks / VPN), never from the internet.
            service_spec["type"] = "LoadBalancer"
            annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                           "service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
            service_spec["loadBalancerSourceRanges"] = [args.vpc_cidr, *cfg.client_cidrs]
        k8s.core.v1.Service(f"{name}-svc", metadata={**meta, "annotations": annotations}, spec=service_spec,
                            opts=k8s_opts)
        if cfg.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
                "maxUnavailable": 1, "selector": {"matchLabels": selector(APP)}}, opts=k8s_opts)
        self._network_policy(name, args, k8s_opts)
        self.tracking_uri = f"http://{APP}.{args.namespace}.svc.cluster.local:{PORT}"
        self.register_outputs({"tracking_uri": self.tracking_uri})

    def _network_policy(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions) -> None:
        """MLflow has no user accounts here, so the network decides who may reach it (and move the champion alias):
        the workloads, Prometheus and, with `vpc` exposure, the VPC and the configured client ranges."""
        peers: list[dict[str, Any]] = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
                                       for n in CLIENT_NAMESPACES]
        if args.config.exposure == "vpc":
            peers += [{"ipBlock": {"cidr": cidr}} for cidr in (args.vpc_cidr, *args.config.client_cidrs)]
        k8s.networking.v1.NetworkPolicy(f"{name}-ingress", metadata={"name": APP, "namespace": args.namespace}, spec={
            "podSelector": {"matchLabels": selector(APP)}, "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}]}, opts=opts)
        # The migration pod listens on nothing: no one may connect to it.
        k8s.networking.v1.NetworkPolicy(f"{name}-migration-ingress", metadata={
            "name": MIGRATION_APP, "namespace": args.namespace}, spec={
            "podSelector": {"matchLabels": selector(MIGRATION_APP)}, "policyTypes": ["Ingress"], "ingress": []},
            opts=opts)
