"""MLflow's permissions on the cluster (components/mlflow.py) under the offline harness: the basic-auth app and its
config in a Secret, one user per team with its credentials in the team's namespace, the sync Job that applies them,
who may reach the server, and that no generated password is readable in the plan. Checks against MLflow itself
(its ini parser) and the sync script (its input parser) keep the component and what it feeds in step; each referee
is also shown failing on the defect it guards against.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import mlflow as mlflow_component
from components.mlflow import (AUTH_CONFIG, AUTH_DIR, CREDENTIALS_SECRET, SYNC_APP, SYNC_SCRIPT, Mlflow, MlflowArgs,
                               render_auth_config, render_client_credentials, sync_credentials_json, sync_plan)
from components.mlflow_database import MlflowDatabase, MlflowDatabaseArgs
from components.namespace import PlatformNamespace, PlatformNamespaceArgs
from components.team import TEAM_LABEL
from local_services import services as local_services
from local_services.services import load_auth_sync
from offline import netpol
from offline.harness import SECRET, Plan, stack_config
from platform_config.load import load_config
from platform_config.services_model import DatabaseConfig
from tests.helpers import run_component

REPO = Path(__file__).resolve().parents[1]
JOB, SECRET_TYPE, POLICY = "kubernetes:batch/v1:Job", "kubernetes:core/v1:Secret", netpol.NETWORK_POLICY
PASSWORD = "random:index/randomPassword:RandomPassword"
_values, _ = stack_config("staging")
CFG = load_config(_values, "ml-platform", "staging")  # two teams, fraud and payments, one model each
TEAMS, MODELS = CFG.teams, CFG.models


def declare(teams=TEAMS, models=MODELS, image="registry.example.com/ml/mlflow-server:1.0.0", extra=None,
            database=False, opts=None):
    provider = k8s.Provider("k8s")
    namespaces = {t.name: PlatformNamespace(t.namespace, PlatformNamespaceArgs(
        k8s_provider=provider, labels={TEAM_LABEL: t.name})).namespace for t in teams}
    for name in ("mlflow", "monitoring"):
        PlatformNamespace(name, PlatformNamespaceArgs(k8s_provider=provider))
    uri = pulumi.Output.secret("postgresql+psycopg2://mlflow:db-password@db:5432/mlflow")
    db = None
    if database:
        db = MlflowDatabase("mlflow-db", MlflowDatabaseArgs(config=DatabaseConfig(backend="in-cluster"),
                                                            name_prefix="ml-platform-unit", namespace="mlflow",
                                                            k8s_provider=provider))
        uri = db.uri
    server = Mlflow("mlflow", MlflowArgs(
        config=CFG.services.mlflow, namespace="mlflow", image=image, region="us-west-2", backend_uri=uri,
        artifacts_bucket="artifacts", artifacts_bucket_arn="arn:aws:s3:::artifacts", lake_kms_key_arn="arn:aws:kms:k",
        k8s_provider=provider, teams=teams, models=models, team_namespaces=namespaces), opts=opts)
    if extra:
        extra(server, provider, db)
    return server


def plan_of(**kwargs) -> Plan:
    return run_component(lambda: declare(**kwargs))


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_of()


def pod_spec(plan: Plan, type_: str, name: str) -> dict:
    return plan.one(type_, name)["inputs"]["spec"]["template"]["spec"]


def urn_of(plan: Plan, type_: str, name: str) -> str:
    return plan.one(type_, name)["urn"]


# ---- the server ------------------------------------------------------------------------------------------------

def test_the_server_runs_the_basic_auth_app_with_its_config_from_a_secret(plan):
    spec = pod_spec(plan, "kubernetes:apps/v1:Deployment", "mlflow-deployment")
    (container,) = spec["containers"]
    command = container["command"][-1]
    assert command.endswith("exec mlflow server --app-name basic-auth")
    # The CSRF key, like the backend URI, is read from a mounted file when the process starts.
    assert f'"$(cat {AUTH_DIR}/flask-secret-key)"' in command
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{AUTH_DIR}/{AUTH_CONFIG}"
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in env and all("value" in e for e in env.values())
    assert {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "auth", "secret": {"secretName": "mlflow-auth", "defaultMode": 0o440}} in spec["volumes"]
    assert plan.one(SECRET_TYPE, "mlflow-auth")["inputs"]["stringData"] == SECRET
    # Kubernetes probes carry no credentials: /health is one of the routes the basic-auth app leaves open.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    from mlflow.server import auth
    assert auth.is_unprotected_route("/health")


def test_the_migration_job_upgrades_the_registry_and_the_auth_schema(plan):
    job = plan.one(JOB, "mlflow-db-upgrade")["inputs"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command = container["command"][-1]
    assert 'mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI" && ' in command
    assert command.endswith('exec python -m mlflow.server.auth db upgrade --url "$MLFLOW_BACKEND_STORE_URI"')
    # tests/workloads/test_mlflow_auth.py runs this command for real.


def auth_config(text: str, tmp_path: Path, monkeypatch):
    """The ini as MLflow's own reader takes it."""
    from mlflow.server.auth.config import read_auth_config

    path = tmp_path / AUTH_CONFIG
    path.write_text(text)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    return read_auth_config()


def test_the_auth_config_reads_back_in_mlflow_as_written(tmp_path, monkeypatch):
    # An RDS URI's query string, and a `%`-escape a URI may carry, survive configparser's interpolation.
    uri = "postgresql+psycopg2://mlflow:pw@db:5432/mlflow?sslmode=verify-full&sslrootcert=/etc/ca.pem&x=%2F"
    cfg = auth_config(render_auth_config(uri, "admin-password-0123456789"), tmp_path, monkeypatch)
    assert (cfg.database_uri, cfg.admin_username, cfg.admin_password) == (uri, "admin", "admin-password-0123456789")
    assert cfg.default_permission == "READ" and cfg.auth_cache_ttl_seconds == mlflow_component.AUTH_CACHE_SECONDS
    assert cfg.authorization_function == "mlflow.server.auth:authenticate_request_basic_auth"
    # The local services run the same settings (only the database and the password differ).
    local = configparser.ConfigParser()
    local.read_string(local_services.render_auth_config(uri, "admin", "x", cache_seconds=cfg.auth_cache_ttl_seconds))
    cluster = configparser.ConfigParser()
    cluster.read_string(render_auth_config(uri, "x"))
    assert dict(local["mlflow"]) == dict(cluster["mlflow"])


def test_the_config_check_would_catch_an_unescaped_percent(tmp_path, monkeypatch):
    raw = render_auth_config("sqlite:///db", "pw").replace("sqlite:///db", "postgresql://u:p@h/d?x=%2F")
    with pytest.raises(configparser.InterpolationSyntaxError):
        auth_config(raw, tmp_path, monkeypatch)


def test_the_database_uri_names_the_driver_the_image_installs():
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the MLflow image has psycopg2 only."""
    from sqlalchemy.engine import make_url

    uris = []
    run_component(lambda: declare(database=True, extra=lambda s, p, db: db.uri.apply(uris.append)))
    (uri,) = uris
    pins = (REPO / "workloads" / "mlflow-server" / "requirements.txt").read_text()
    assert make_url(uri).get_dialect().driver == "psycopg2" and "psycopg2-binary==" in pins
    assert make_url(uri.replace("postgresql+psycopg2://", "postgresql://")).get_dialect().driver == "psycopg"


# ---- the teams' users ------------------------------------------------------------------------------------------

def test_each_team_gets_its_credentials_in_its_own_namespace_once_the_namespace_exists(plan):
    for team in TEAMS:
        secret = plan.one(SECRET_TYPE, f"mlflow-credentials-{team.name}")
        meta = secret["inputs"]["metadata"]
        assert (meta["name"], meta["namespace"]) == (CREDENTIALS_SECRET, team.namespace)
        assert secret["inputs"]["stringData"] == SECRET
        assert urn_of(plan, netpol.NAMESPACE, team.namespace) in secret["dependsOn"]


def test_workloads_get_the_credentials_by_reference_and_can_depend_on_them():
    captured = {}

    def extra(server: Mlflow, provider, db):
        captured["files"] = {t.name: server.credentials_files(t.name) for t in TEAMS}
        captured["secrets"] = server.credentials_secrets
        with pytest.raises(KeyError, match="no MLflow user for team 'nobody'"):
            server.credentials_files("nobody")

    run_component(lambda: declare(extra=extra))
    assert set(captured["secrets"]) == {t.name for t in TEAMS}
    assert all(isinstance(s, k8s.core.v1.Secret) for s in captured["secrets"].values())
    for volume, mount in captured["files"].values():
        # One key of the Secret, as a file the pod's group can read, where the MLflow client looks for it.
        assert volume["secret"] == {"secretName": CREDENTIALS_SECRET, "defaultMode": 0o440,
                                    "items": [{"key": "credentials", "path": "credentials"}]}
        assert mount == {"name": volume["name"], "mountPath": "/tmp/.mlflow", "readOnly": True}


def test_the_credentials_file_lands_in_the_home_of_every_image_that_calls_mlflow():
    for image in ("training", "inference"):
        dockerfile = (REPO / "workloads" / image / "Dockerfile").read_text()
        assert re.search(r"^\s+HOME=/tmp\b", dockerfile, re.M), f"{image}: HOME is not /tmp"


def test_the_credentials_file_is_the_one_the_mlflow_client_reads(tmp_path, monkeypatch):
    from mlflow.utils.credentials import read_mlflow_creds
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(render_client_credentials("team-fraud", "s3cret"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert tuple(read_mlflow_creds()) == ("team-fraud", "s3cret")


def test_args_name_every_teams_namespace_and_every_models_team():
    with pytest.raises(ValueError, match="no namespace for team"):
        MlflowArgs(config=CFG.services.mlflow, namespace="mlflow", image="i", region="r", backend_uri=None,
                   artifacts_bucket="b", artifacts_bucket_arn="a", lake_kms_key_arn="k", k8s_provider=None,
                   teams=TEAMS, models=MODELS, team_namespaces={})
    with pytest.raises(ValueError, match="owned by no known team: chargeback-risk"):
        MlflowArgs(config=CFG.services.mlflow, namespace="mlflow", image="i", region="r", backend_uri=None,
                   artifacts_bucket="b", artifacts_bucket_arn="a", lake_kms_key_arn="k", k8s_provider=None,
                   teams=TEAMS[:1], models=MODELS, team_namespaces={TEAMS[0].name: None})


# ---- no password in plain text -----------------------------------------------------------------------------------

def readable_passwords(plan: Plan) -> list[str]:
    """Where the mock's generated passwords (offline-<digest>) appear in the clear."""
    found = [r["urn"] for r in plan.resources if re.search(r"offline-[0-9a-f]{24}", json.dumps(r["inputs"]))]
    return found + [k for k, v in plan.outputs.items() if re.search(r"offline-[0-9a-f]{24}", json.dumps(v))]


def test_no_generated_password_is_readable_in_the_plan(plan):
    passwords = {r["name"] for r in plan.of_type(PASSWORD)}
    assert passwords == {"mlflow-admin-password", "mlflow-flask-secret-key",
                         *(f"mlflow-team-{t.name}-password" for t in TEAMS)}
    assert readable_passwords(plan) == []
    ours = [r for r in plan.of_type(SECRET_TYPE)]
    assert len(ours) == 3 + len(TEAMS) and all(r["inputs"]["stringData"] == SECRET for r in ours)


def test_the_password_check_finds_one_that_lost_its_secrecy():
    def leak(server: Mlflow, provider, db):
        k8s.core.v1.ConfigMap("leaked", metadata={"name": "leaked", "namespace": "mlflow"},
                              data={"admin": pulumi.Output.unsecret(server._admin_password.result)},
                              opts=pulumi.ResourceOptions(provider=provider))

    found = readable_passwords(plan_of(extra=leak))
    assert len(found) == 1 and found[0].endswith("::leaked")


# ---- the sync Job ---------------------------------------------------------------------------------------------

def test_the_sync_job_runs_the_script_as_the_admin_after_the_server_is_up(plan):
    job = plan.one(JOB, "mlflow-auth-sync")
    spec = job["inputs"]["spec"]["template"]["spec"]
    assert re.fullmatch(rf"{SYNC_APP}-[0-9a-f]{{8}}", job["inputs"]["metadata"]["name"])
    for dependency in (("kubernetes:apps/v1:Deployment", "mlflow-deployment"), ("kubernetes:core/v1:Service",
                       "mlflow-svc"), (POLICY, "mlflow-ingress"), (SECRET_TYPE, "mlflow-auth-sync")):
        assert urn_of(plan, *dependency) in job["dependsOn"], dependency
    (container,) = spec["containers"]
    assert container["command"][-1].endswith(f"exec python {SYNC_SCRIPT}")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc.cluster.local:5000"
    assert env["MLFLOW_TRACKING_USERNAME"] == "admin" and "MLFLOW_TRACKING_PASSWORD" not in env
    assert json.loads(env["AUTH_SYNC_PLAN"]) == {"teams": ["fraud", "payments"],
                                                 "models": {"fraud-detector": "fraud", "chargeback-risk": "payments"}}
    assert env["AUTH_SYNC_CREDENTIALS_FILE"].startswith("/etc/mlflow-auth-sync/")
    # Restricted pod security, like the migration Job; it never calls the Kubernetes API.
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]} and spec["restartPolicy"] == "Never"
    # The image puts the script where the Job runs it.
    dockerfile = (REPO / "workloads" / "mlflow-server" / "Dockerfile").read_text()
    assert re.search(rf"^COPY .*mlflow-server/auth_sync.py {re.escape(SYNC_SCRIPT)}$", dockerfile, re.M)


def test_what_the_job_feeds_the_sync_is_what_the_sync_accepts():
    sync = load_auth_sync()
    parsed = sync.Plan.parse(sync_plan(TEAMS, MODELS), json.loads(sync_credentials_json(
        {t.name: "p" * 40 for t in TEAMS})))
    assert parsed.models == {m.name: m.team for m in MODELS} and set(parsed.passwords) == {t.name for t in TEAMS}


def job_name(**kwargs) -> str:
    return plan_of(**kwargs).one(JOB, "mlflow-auth-sync")["inputs"]["metadata"]["name"]


def test_the_sync_job_runs_again_when_teams_models_or_the_image_change(plan):
    same = plan.one(JOB, "mlflow-auth-sync")["inputs"]["metadata"]["name"]
    assert job_name() == same
    assert job_name(models=MODELS[:1]) != same
    assert job_name(teams=TEAMS[:1], models=[m for m in MODELS if m.team == TEAMS[0].name]) != same
    assert job_name(image="registry.example.com/ml/mlflow-server:1.0.1") != same


def test_a_rotated_password_replaces_the_sync_job():
    """The name stays; the replacement trigger (a digest of the credentials, secret) makes the engine re-run it."""
    seen = {}

    def capture(args: pulumi.ResourceTransformationArgs):
        if args.type_ == JOB and args.name == "mlflow-auth-sync":
            seen["opts"] = args.opts
        return None

    def declare_and_export():
        declare(opts=pulumi.ResourceOptions(transformations=[capture]))
        pulumi.export("trigger", seen["opts"].replacement_trigger)
        pulumi.export("triggerValue", pulumi.Output.unsecret(seen["opts"].replacement_trigger))

    plan = run_component(declare_and_export)
    assert seen["opts"].delete_before_replace is True
    assert plan.outputs["trigger"] == SECRET and re.fullmatch(r"[0-9a-f]{64}", plan.outputs["triggerValue"])


# ---- who may reach the server -----------------------------------------------------------------------------------

def with_callers(server: Mlflow, provider, db) -> None:
    """A pod in each team namespace, and one in a namespace that is no client."""
    for ns in [t.namespace for t in TEAMS] + ["default"]:
        k8s.apps.v1.Deployment(f"caller-{ns}", metadata={"name": "caller", "namespace": ns}, spec={
            "selector": {"matchLabels": {"app.kubernetes.io/name": "caller"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "caller"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            opts=pulumi.ResourceOptions(provider=provider))


def reach(plan: Plan) -> dict[tuple[str, str], bool]:
    cluster = netpol.model(plan)
    by_owner = {}
    for pod in cluster.pods:
        by_owner.setdefault(pod.owner.split()[1].split("[")[0], pod)
    server = next(p for p in cluster.pods if p.labels.get("app.kubernetes.io/name") == "mlflow")
    database = next(p for p in cluster.pods if p.labels.get("app.kubernetes.io/component") == "database")
    sync = next(p for p in cluster.pods if p.labels.get("app.kubernetes.io/name") == SYNC_APP)
    out = {(str(s.namespace), "server"): netpol.connection(cluster, s, server, 5000).allowed
           for s in cluster.pods if s.labels.get("app.kubernetes.io/name") == "caller"}
    out[("sync", "server")] = netpol.connection(cluster, sync, server, 5000).allowed
    out[("sync", "database")] = netpol.connection(cluster, sync, database, 5432).allowed
    return out


def test_the_teams_and_the_sync_reach_the_server_and_nothing_else_does():
    result = reach(plan_of(extra=with_callers, database=True))
    assert result == {**{(t.namespace, "server"): True for t in TEAMS}, ("default", "server"): False,
                      ("sync", "server"): True,
                      # The sync talks to MLflow's API only; the database admits the server and the migration.
                      ("sync", "database"): False}


def test_the_reach_check_fails_without_the_sync_peer(monkeypatch):
    original = k8s.networking.v1.NetworkPolicy.__init__

    def drop_sync_peer(self, resource_name, *args, **kwargs):
        spec = kwargs.get("spec")
        if resource_name == "mlflow-ingress" and spec:
            spec["ingress"][0]["from"] = [p for p in spec["ingress"][0]["from"] if "podSelector" not in p]
        original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(k8s.networking.v1.NetworkPolicy, "__init__", drop_sync_peer)
    assert reach(plan_of(extra=with_callers, database=True))[("sync", "server")] is False
