"""MLflow tracking server and model registry: PostgreSQL backend, artifacts in the lake, no static AWS keys.

Clients never touch S3 for artifacts: the server runs with `--serve-artifacts` and proxies uploads and downloads to
the artifacts bucket under its own workload identity, so training and inference pods need no bucket access of their
own for models.

Who may change what is MLflow's own basic-auth app (`mlflow server --app-name basic-auth`): one user per team,
`team-<team>`, MANAGE on its models and their experiments, READ (the default permission) on everyone else's, and
401 for a request without valid credentials. Per-resource grants rather than MLflow 3.17's workspaces: a workspace
per team would hide the teams' models from each other (they are meant to read them) and every client would have to
name its workspace; with grants a workload needs only its user. Users and grants live in the backend database
(their own tables and migration history, `alembic_version_auth`), so one backup and one restore cover the registry
and who may change it. The admin's and the teams' passwords are generated here and exist only in Secrets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.iam import Statement
from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, http_probe, labels,
                                 pod_security, resources, secret_volume, selector, tmp_volume)
from components.workload_base import lake_key_statement
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config.services_model import MlflowConfig
from platform_config.teams_model import ModelConfig, TeamConfig

APP = "mlflow"
# The migration Job's pods get their own name: a PodDisruptionBudget selecting the server must never select a Job's
# pod (a Job has no scale subresource, and the budget would then allow no eviction at all).
MIGRATION_APP = "mlflow-migration"
PORT = 5000
BACKEND_DIR = "/etc/mlflow-backend"
# The backend URI (with the database password) is read from the mounted Secret when the process starts.
FROM_BACKEND_FILE = f'MLFLOW_BACKEND_STORE_URI="$(cat {BACKEND_DIR}/uri)"; export MLFLOW_BACKEND_STORE_URI; '
SYNC_APP = "mlflow-auth-sync"
AUTH_DIR = "/etc/mlflow-auth"
AUTH_CONFIG = "basic_auth.ini"
# The CSRF key must be the same in every worker and replica; like the backend URI it is read from a file at start.
FROM_AUTH_FILES = (f'MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat {AUTH_DIR}/flask-secret-key)"; '
                   "export MLFLOW_FLASK_SERVER_SECRET_KEY; ")
SYNC_DIR = "/etc/mlflow-auth-sync"
SYNC_SCRIPT = "/opt/mlflow/auth_sync.py"  # workloads/mlflow-server/Dockerfile puts it there
FROM_SYNC_FILES = (f'MLFLOW_TRACKING_PASSWORD="$(cat {SYNC_DIR}/admin-password)"; '
                   "export MLFLOW_TRACKING_PASSWORD; ")
ADMIN_USER = "admin"
DEFAULT_PERMISSION = "READ"
CREDENTIALS_SECRET = "mlflow-credentials"
# HOME in the workload images that call MLflow (workloads/{training,inference}/Dockerfile).
CLIENT_HOME = "/tmp"
# Each basic-auth check hashes the password (scrypt); a worker remembers a good one this long. A changed or deleted
# password is honoured at once by the worker that made the change, by the others within this many seconds.
AUTH_CACHE_SECONDS = 30
# Alphanumeric: the admin's password sits in an ini file, the teams' in JSON and HTTP basic auth.
PASSWORD_LENGTH = 40

ARTIFACT_PREFIX = "mlflow"
# Besides the team namespaces, whose pods may call MLflow: Prometheus's.
MONITORING_NAMESPACE = "monitoring"


def render_auth_config(database_uri: str, admin_password: str) -> str:
    """The basic-auth app's ini. configparser interpolates `%` (a URI may carry `%`-escapes), so it is doubled."""
    values = {"default_permission": DEFAULT_PERMISSION, "database_uri": database_uri, "admin_username": ADMIN_USER,
              "admin_password": admin_password,
              "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
              "auth_cache_ttl_seconds": str(AUTH_CACHE_SECONDS)}
    return "[mlflow]\n" + "".join(f"{k} = {v.replace('%', '%%')}\n" for k, v in values.items())


def sync_plan(teams: Sequence[TeamConfig], models: Sequence[ModelConfig]) -> dict[str, Any]:
    """What the sync Job makes MLflow hold (no secrets): AUTH_SYNC_PLAN of workloads/mlflow-server/auth_sync.py."""
    return {"teams": [t.name for t in teams], "models": {m.name: m.team for m in models}}


def sync_credentials_json(passwords: Mapping[str, str]) -> str:
    """AUTH_SYNC_CREDENTIALS_FILE's content: team -> its user and password (the same pair as its Secret)."""
    return json.dumps({t: {"username": f"team-{t}", "password": pw} for t, pw in sorted(passwords.items())},
                      sort_keys=True)


def render_client_credentials(username: str, password: str) -> str:
    """The MLflow client's own credentials file (`~/.mlflow/credentials`, read by mlflow.utils.credentials)."""
    return f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {password}\n"


def credentials_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume and mount that put a team's MLflow credentials where its pods' MLflow client looks for them.

    A file, not env vars: a variable is inherited by every child process and shows in crash reports. The
    workload images set HOME to /tmp (workloads/*/Dockerfile), so the client reads /tmp/.mlflow/credentials."""
    volume = {"name": "mlflow-credentials", "secret": {
        "secretName": CREDENTIALS_SECRET, "items": [{"key": "credentials", "path": "credentials"}],
        # Readable by the pod's fsGroup (pod_security), not by everyone.
        "defaultMode": 0o440}}
    return volume, {"name": "mlflow-credentials", "mountPath": f"{CLIENT_HOME}/.mlflow", "readOnly": True}


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
    teams: Sequence[TeamConfig] = ()
    """One MLflow user per team (`team-<team>`), its password in the team namespace's `mlflow-credentials`."""
    models: Sequence[ModelConfig] = ()
    """Each model's registered model and experiment (named as the model), managed by the model's team."""
    team_namespaces: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    """team -> the resource that creates its namespace; the team's credentials Secret waits for it."""
    depends_on: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        names = {t.name for t in self.teams}
        missing = sorted(names - set(self.team_namespaces))
        if missing:
            raise ValueError(f"MlflowArgs.team_namespaces: no namespace for team(s) {', '.join(missing)}")
        orphans = sorted(f"{m.name} (team {m.team})" for m in self.models if m.team not in names)
        if orphans:
            raise ValueError(f"MlflowArgs.models: owned by no known team: {', '.join(orphans)}")


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
    credentials_secrets: dict[str, k8s.core.v1.Secret]
    """team -> its `mlflow-credentials` Secret: a workload mounting `credentials_files(team)` depends on it."""

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
        child = pulumi.ResourceOptions(parent=self)
        self._admin_password = random.RandomPassword(f"{name}-admin-password", length=PASSWORD_LENGTH, special=False,
                                                     opts=child)
        flask_key = random.RandomPassword(f"{name}-flask-secret-key", length=64, special=False, opts=child)
        # The admin is created from this file the first time the server starts on an empty user table; later the
        # password in it is ignored (MLflow's rule), so it is generated once and never rotated by a change here.
        auth_config = pulumi.Output.all(args.backend_uri, self._admin_password.result).apply(
            lambda a: render_auth_config(a[0], a[1]))
        auth = k8s.core.v1.Secret(f"{name}-auth", metadata={**meta, "name": f"{APP}-auth"}, string_data={
            AUTH_CONFIG: pulumi.Output.secret(auth_config), "flask-secret-key": flask_key.result}, opts=k8s_opts)
        volume, mount = tmp_volume()
        backend, backend_mount = secret_volume("backend", secret.metadata.name, BACKEND_DIR)
        auth_volume, auth_mount = secret_volume("auth", auth.metadata.name, AUTH_DIR)
        server_env = env({
            "MLFLOW_HOST": "0.0.0.0", "MLFLOW_PORT": str(PORT), "MLFLOW_WORKERS": "2",
            "MLFLOW_SERVE_ARTIFACTS": "true",
            # Job execution starts a pool of Huey worker processes (~240 MB each) for GenAI jobs this platform does
            # not run; with it on, the pod would blow through its memory limit.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_ARTIFACTS_DESTINATION": pulumi.Output.concat("s3://", args.artifacts_bucket, f"/{ARTIFACT_PREFIX}"),
            "MLFLOW_SERVER_ALLOWED_HOSTS": allowed_hosts(cfg, args.namespace, args.region),
            "MLFLOW_AUTH_CONFIG_PATH": f"{AUTH_DIR}/{AUTH_CONFIG}",
            "AWS_REGION": args.region, "HOME": "/tmp",
        })
        container = {
            "name": "mlflow", "image": args.image, **ALWAYS_PULL, "ports": [{"name": "http", "containerPort": PORT}],
            "command": ["sh", "-c", FROM_BACKEND_FILE + FROM_AUTH_FILES + "exec mlflow server --app-name basic-auth"],
            "env": server_env,
            # Migrations can take a while on a large registry; the startup probe gives them 5 minutes. /health is
            # one of the few routes the basic-auth app leaves open, so the kubelet needs no credentials.
            "startupProbe": http_probe("/health", "http", period=5, failures=60),
            "readinessProbe": http_probe("/health", "http", period=10, failures=3),
            "livenessProbe": http_probe("/health", "http", period=20, failures=3),
            "resources": resources("500m", "1Gi"), "securityContext": container_security(),
            "volumeMounts": [mount, backend_mount, auth_mount],
        }
        # Schema migrations run once per image, as a Job the Deployment waits for: init containers in several
        # replicas would race to migrate a fresh database (the servers' own check then finds both schemas, the
        # registry's and the auth app's, at their heads). The name carries the image and the command, so an upgrade
        # migrates again. It gets only what the upgrades read, so a server-only setting never replaces the
        # (immutable) Job.
        upgrade = ('mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI" && '
                   'exec python -m mlflow.server.auth db upgrade --url "$MLFLOW_BACKEND_STORE_URI"')
        migrate = {"name": "db-upgrade", "image": args.image, **ALWAYS_PULL,
                   "command": ["sh", "-c", FROM_BACKEND_FILE + upgrade],
                   "env": env({"HOME": "/tmp"}), "securityContext": container_security(),
                   "volumeMounts": [mount, backend_mount], "resources": resources("250m", "512Mi")}
        image_id = hashlib.sha256(f"{args.image}\n{upgrade}".encode()).hexdigest()[:8]
        migration = k8s.batch.v1.Job(f"{name}-db-upgrade", metadata={
            "name": f"{APP}-db-upgrade-{image_id}", "namespace": args.namespace,
            "labels": labels(MIGRATION_APP, "migration")},
            spec={"backoffLimit": 6, "template": {"metadata": {"labels": labels(MIGRATION_APP, "migration")}, "spec": {
                "restartPolicy": "Never", "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [migrate], "volumes": [volume, backend]}}}, opts=k8s_opts)
        deployment = k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={
            "replicas": cfg.replicas, "selector": {"matchLabels": selector(APP)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels(APP, "tracking")}, "spec": {
                "serviceAccountName": APP, "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [container], "volumes": [volume, backend, auth_volume],
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
        service = k8s.core.v1.Service(f"{name}-svc", metadata={**meta, "annotations": annotations},
                                      spec=service_spec, opts=k8s_opts)
        if cfg.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
                "maxUnavailable": 1, "selector": {"matchLabels": selector(APP)}}, opts=k8s_opts)
        ingress = self._network_policy(name, args, k8s_opts)
        self.tracking_uri = f"http://{APP}.{args.namespace}.svc.cluster.local:{PORT}"
        self.credentials_secrets = {}
        passwords = {}
        for team in args.teams:
            password = random.RandomPassword(f"{name}-team-{team.name}-password", length=PASSWORD_LENGTH,
                                             special=False, opts=child)
            passwords[team.name] = password.result
            self.credentials_secrets[team.name] = k8s.core.v1.Secret(
                f"{name}-credentials-{team.name}",
                metadata={"name": CREDENTIALS_SECRET, "namespace": team.namespace,
                          "labels": labels(APP, "credentials")},
                string_data={"username": f"team-{team.name}", "password": password.result,
                             "credentials": password.result.apply(
                                 lambda pw, user=f"team-{team.name}": render_client_credentials(user, pw))},
                opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                            depends_on=[args.team_namespaces[team.name]]))
        self.sync_job = self._sync_job(name, args, passwords, k8s_opts, after=[deployment, service, ingress])
        self.register_outputs({"tracking_uri": self.tracking_uri})

    def credentials_files(self, team: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The volume and mount for a team's pods: its MLflow user, from its namespace's `mlflow-credentials`."""
        if team not in self.credentials_secrets:
            raise KeyError(f"no MLflow user for team {team!r}: it is not in MlflowArgs.teams")
        return credentials_files()

    def _sync_job(self, name: str, args: MlflowArgs, passwords: dict[str, pulumi.Output[str]],
                  opts: pulumi.ResourceOptions, after: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """Users, models, experiments and grants brought in line with the config (auth_sync.py, as the admin).

        Its name carries what it applies (teams, models, image), so a change there runs it again; a rotated
        password (a replaced RandomPassword) replaces it through its replacement trigger. It runs after the
        servers are up and the ingress policy admits it."""
        plan = sync_plan(args.teams, args.models)
        teams_json = pulumi.Output.all(**passwords).apply(sync_credentials_json)
        meta = {"name": SYNC_APP, "namespace": args.namespace, "labels": labels(SYNC_APP, "auth-sync")}
        inputs = k8s.core.v1.Secret(f"{name}-auth-sync", metadata=meta, string_data={
            "admin-password": self._admin_password.result, "teams.json": pulumi.Output.secret(teams_json)},
            opts=opts)
        volume, mount = tmp_volume()
        files, files_mount = secret_volume("inputs", inputs.metadata.name, SYNC_DIR)
        container = {
            "name": "auth-sync", "image": args.image, **ALWAYS_PULL,
            "command": ["sh", "-c", FROM_SYNC_FILES + f"exec python {SYNC_SCRIPT}"],
            "env": env({"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_TRACKING_USERNAME": ADMIN_USER,
                        "AUTH_SYNC_PLAN": json.dumps(plan, sort_keys=True),
                        "AUTH_SYNC_CREDENTIALS_FILE": f"{SYNC_DIR}/teams.json", "HOME": "/tmp"}),
            "securityContext": container_security(), "volumeMounts": [mount, files_mount],
            "resources": resources("100m", "256Mi"),
        }
        run_id = hashlib.sha256(json.dumps([args.image, plan], sort_keys=True).encode()).hexdigest()[:8]
        # A digest, never the passwords themselves, is what the engine compares (and stores, as a secret).
        trigger = pulumi.Output.secret(teams_json.apply(lambda t: hashlib.sha256(t.encode()).hexdigest()))
        return k8s.batch.v1.Job(f"{name}-auth-sync", metadata={**meta, "name": f"{SYNC_APP}-{run_id}"}, spec={
            "backoffLimit": 6, "activeDeadlineSeconds": 1800,
            "template": {"metadata": {"labels": labels(SYNC_APP, "auth-sync")}, "spec": {
                "restartPolicy": "Never", "securityContext": pod_security(), **NO_API_TOKEN,
                "containers": [container], "volumes": [volume, files]}}},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                depends_on=[*after, inputs], replacement_trigger=trigger, delete_before_replace=True)))

    def _network_policy(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """Who may reach MLflow at all: the team namespaces, Prometheus, the sync Job and, with `vpc` exposure, the
        VPC and the configured client ranges. What each caller may then change is MLflow's permissions' business."""
        peers: list[dict[str, Any]] = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
                                       for n in (*(t.namespace for t in args.teams), MONITORING_NAMESPACE)]
        peers.append({"podSelector": {"matchLabels": selector(SYNC_APP)}})
        if args.config.exposure == "vpc":
            peers += [{"ipBlock": {"cidr": cidr}} for cidr in (args.vpc_cidr, *args.config.client_cidrs)]
        ingress = k8s.networking.v1.NetworkPolicy(f"{name}-ingress", metadata={
            "name": APP, "namespace": args.namespace}, spec={
            "podSelector": {"matchLabels": selector(APP)}, "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}]}, opts=opts)
        # The migration and sync pods listen on nothing: no one may connect to them.
        for app in (MIGRATION_APP, SYNC_APP):
            suffix = "migration" if app == MIGRATION_APP else "auth-sync"
            k8s.networking.v1.NetworkPolicy(f"{name}-{suffix}-ingress", metadata={
                "name": app, "namespace": args.namespace}, spec={
                "podSelector": {"matchLabels": selector(app)}, "policyTypes": ["Ingress"], "ingress": []},
                opts=opts)
        return ingress
