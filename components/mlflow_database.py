"""MLflow's backend store: Amazon RDS PostgreSQL, or (for dev) a single PostgreSQL pod on an encrypted volume.

The password is generated here and only ever travels as a Pulumi secret: into RDS, and into one Kubernetes Secret
holding the SQLAlchemy URI that the MLflow pods read. It never appears in config, outputs or the offline plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, labels, resources, secret_volume,
                                 selector)
from components.mlflow import APP as MLFLOW_APP
from components.mlflow import MIGRATION_APP
from components.service_access import cluster_only_port, service_key
from platform_config.services_model import DatabaseConfig
from platform_config.versions import POSTGRES_IMAGE, RDS_POSTGRES_FAMILY, RDS_POSTGRES_MAJOR

DB_NAME = "mlflow"
DB_USER = "mlflow"
PORT = 5432
# The official postgres image's `postgres` user; the in-cluster database runs as it, never as root.
POSTGRES_UID = 999
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"


@dataclass(frozen=True, kw_only=True)
class MlflowDatabaseArgs:
    config: DatabaseConfig
    name_prefix: str
    """`<project>-<stack>`: RDS identifiers and snapshot names."""
    namespace: str
    k8s_provider: k8s.Provider
    vpc_id: pulumi.Input[str] = ""
    subnet_ids: Sequence[pulumi.Input[str]] = ()
    cluster_security_group_id: pulumi.Input[str] = ""
    """Nodes (managed and Karpenter) carry this group; only it may reach the database port."""
    protect: bool = False
    disposable: bool = False
    """The data may go with the stack (`dataLake.forceDestroy`, dev): the in-cluster volume is deleted with it."""
    log_retention_days: int = 30
    """RDS log exports go to groups declared here with this retention (RDS would create them unbounded)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The namespace the Kubernetes objects go in; the RDS instance itself waits for nothing in the cluster."""


class MlflowDatabase(pulumi.ComponentResource):
    uri: pulumi.Output[str]
    """postgresql+psycopg2://... with the password: a secret Output. The driver is named: SQLAlchemy 2.1 takes a
    bare `postgresql://` to mean psycopg 3, and the MLflow image installs psycopg2."""
    host: pulumi.Output[str]

    def __init__(self, name: str, args: MlflowDatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:mlflow:Database", name, None, opts)
        # Alphanumeric only: the password is embedded in a URI, where `@`, `/` or `%` would need escaping.
        password = random.RandomPassword(f"{name}-password", length=40, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        if args.config.backend == "rds":
            self.host, port, sslmode = self._rds(name, args, password)
        else:
            self.host, port, sslmode = self._in_cluster(name, args, password)
        self.uri = pulumi.Output.secret(pulumi.Output.all(password.result, self.host, port).apply(
            lambda a: f"postgresql+psycopg2://{DB_USER}:{a[0]}@{a[1]}:{int(a[2])}/{DB_NAME}{sslmode}"))
        self.register_outputs({"host": self.host})

    def _rds(self, name: str, args: MlflowDatabaseArgs, password: random.RandomPassword):
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        # The final snapshot is always kept, and a snapshot can only be restored with the key that encrypted it, so
        # the key is retained on destroy whatever `protect` says (it is deleted only by hand, with the snapshots).
        key = service_key(name, f"{args.name_prefix} MLflow database", args.protect, self, retain=True)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=list(args.subnet_ids),
                                      description="private subnets only", opts=child)
        group = cluster_only_port(name, vpc_id=args.vpc_id, port=PORT,
                                  cluster_security_group_id=args.cluster_security_group_id, what="PostgreSQL",
                                  parent=self)
        identifier = f"{args.name_prefix}-mlflow"
        # A new suffix whenever a change replaces the instance (these inputs force a new DB), so a replacement's
        # own final snapshot never collides with the one its predecessor left.
        suffix = random.RandomString(f"{name}-snapshot-suffix", length=8, special=False, upper=False,
                                     keepers={"identifier": identifier, "kmsKeyId": key.arn, "dbName": DB_NAME,
                                              "username": DB_USER, "engine": "postgres"},
                                     opts=pulumi.ResourceOptions(parent=self))
        params = aws.rds.ParameterGroup(f"{name}-params", family=RDS_POSTGRES_FAMILY,
                                        description="TLS required; slow statements logged", parameters=[
                                            {"name": "rds.force_ssl", "value": "1"},
                                            {"name": "log_min_duration_statement", "value": "1000"},
                                        ], opts=child)
        exports = ["postgresql", "upgrade"]
        # RDS creates /aws/rds/instance/<id>/<log> itself, with no retention and outside the stack; declared first,
        # the groups it writes to are bounded and go with the stack.
        log_groups = [aws.cloudwatch.LogGroup(f"{name}-log-{log}", name=f"/aws/rds/instance/{identifier}/{log}",
                                              retention_in_days=args.log_retention_days, opts=child)
                      for log in exports]
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=identifier,
            engine="postgres", engine_version=RDS_POSTGRES_MAJOR, instance_class=cfg.instance_class,
            allocated_storage=cfg.storage_gib, max_allocated_storage=cfg.max_storage_gib, storage_type="gp3",
            storage_encrypted=True, kms_key_id=key.arn,
            db_name=DB_NAME, username=DB_USER, password=password.result,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[group.id], publicly_accessible=False,
            parameter_group_name=params.name, ca_cert_identifier="rds-ca-rsa2048-g1",
            multi_az=cfg.multi_az, backup_retention_period=cfg.backup_retention_days, copy_tags_to_snapshot=True,
            deletion_protection=cfg.deletion_protection,
            # Always keep a last snapshot: experiment history is not reproducible from anything else.
            skip_final_snapshot=False,
            final_snapshot_identifier=pulumi.Output.concat(f"{identifier}-final-", suffix.result),
            auto_minor_version_upgrade=True, performance_insights_enabled=True,
            performance_insights_kms_key_id=key.arn, enabled_cloudwatch_logs_exports=exports,
            # The identifier is fixed, so a replacement must delete the old instance (taking its final snapshot)
            # before creating the new one under the same name.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect,
                                        depends_on=log_groups, delete_before_replace=True))
        # verify-full: encrypted and the server's certificate checked against the RDS CA bundle the MLflow image
        # carries (workloads/mlflow-server/Dockerfile), so a spoofed endpoint cannot collect the password.
        return instance.address, instance.port, f"?sslmode=verify-full&sslrootcert={RDS_CA_BUNDLE}"

    def _in_cluster(self, name: str, args: MlflowDatabaseArgs, password: random.RandomPassword):
        opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        app = f"{name}"
        meta = {"name": app, "namespace": args.namespace, "labels": labels(app, "database")}
        secret = k8s.core.v1.Secret(f"{name}-password", metadata={**meta, "name": f"{app}-password"},
                                    string_data={"password": password.result}, opts=opts)
        ports = [{"name": "postgres", "port": PORT, "targetPort": "postgres"}]
        k8s.core.v1.Service(f"{name}-svc", metadata=meta, spec={"selector": selector(app), "ports": ports}, opts=opts)
        # The StatefulSet's governing Service is headless (stable per-pod DNS); clients use the ClusterIP one above.
        headless = f"{app}-headless"
        k8s.core.v1.Service(f"{name}-headless", metadata={**meta, "name": headless}, spec={
            "clusterIP": "None", "selector": selector(app), "ports": ports}, opts=opts)
        pg_ready = {"exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME, "-h", "127.0.0.1"]},
                    "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6}
        password_file, password_mount = secret_volume("password", secret.metadata.name, "/etc/postgres-password")
        # The volume outlives a deleted StatefulSet unless the data is disposable (dataLake.forceDestroy, dev); a
        # stack destroy deletes the namespace, and the claim with it, either way.
        retention = "Delete" if args.disposable else "Retain"
        k8s.apps.v1.StatefulSet(f"{name}-statefulset", metadata=meta, spec={
            "serviceName": headless, "replicas": 1, "selector": {"matchLabels": selector(app)},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": "Retain"},
            "template": {"metadata": {"labels": labels(app, "database")}, "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID,
                                    "fsGroup": POSTGRES_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                **NO_API_TOKEN,
                "containers": [{
                    "name": "postgres", "image": POSTGRES_IMAGE, **ALWAYS_PULL,
                    "ports": [{"name": "postgres", "containerPort": PORT}],
                    # The official image reads the password from a file when POSTGRES_PASSWORD_FILE is set.
                    "env": [{"name": "POSTGRES_USER", "value": DB_USER}, {"name": "POSTGRES_DB", "value": DB_NAME},
                            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                            {"name": "POSTGRES_PASSWORD_FILE", "value": "/etc/postgres-password/password"}],
                    "readinessProbe": pg_ready, "livenessProbe": {**pg_ready, "initialDelaySeconds": 30},
                    "resources": resources("250m", "512Mi"),
                    "securityContext": container_security(),
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                     {"name": "run", "mountPath": "/var/run/postgresql"},
                                     {"name": "tmp", "mountPath": "/tmp"}, password_mount],
                }],
                "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                            password_file],
            }},
            # The default StorageClass is the platform's encrypted gp3 class (ClusterAddons).
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{args.config.storage_gib}Gi"}}}}],
        }, opts=opts)
        # Only MLflow's own pods (server and migration job) may open the database port.
        k8s.networking.v1.NetworkPolicy(f"{name}-ingress", metadata=meta, spec={
            "podSelector": {"matchLabels": selector(app)}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{
                "key": "app.kubernetes.io/name", "operator": "In", "values": [MLFLOW_APP, MIGRATION_APP]}]}}],
                "ports": [{"protocol": "TCP", "port": PORT}]}]}, opts=opts)
        host = f"{app}.{args.namespace}.svc.cluster.local"
        # Traffic stays inside the cluster's pod network; the README says so, and prod uses RDS with TLS.
        return pulumi.Output.from_input(host), pulumi.Output.from_input(PORT), ""
