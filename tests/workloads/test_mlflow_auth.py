"""Who may move a champion: MLflow's basic-auth app, proven against the real server the local services start.

Two teams, a and b, each owning one model (and the experiment named as it), made by the same sync the cluster's
Job runs (workloads/mlflow-server/auth_sync.py). A team changes its own model; another team's it can read but not
change (the server answers 403); without credentials the server answers 401. Each denial is paired with the same
client doing the allowed thing, so a refusal for any other reason (bad credentials, a broken client) cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from local_services import LocalServices
from local_services.services import AUTH_SYNC, load_auth_sync

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "workloads"
TEAMS = {"a": ("a-model",), "b": ("b-model",)}

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with LocalServices(tmp_path_factory.mktemp("mlflow-auth"), services=("s3", "mlflow"), mlflow_teams=TEAMS) as s:
        yield s


def client_as(svc: LocalServices, monkeypatch, team: str | None = None, password: str | None = None):
    """An MlflowClient acting as `team` (MLflow clients read their credentials from the environment)."""
    from mlflow.tracking import MlflowClient

    if team is None:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    else:
        user, known = svc.mlflow_credentials(team)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or known)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", svc.mlflow_uri)
    return MlflowClient(svc.mlflow_uri)


def refused(call) -> "MlflowException":  # noqa: F821
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        call()
    return info.value


def new_version(client, model: str) -> str:
    """A run in the model's experiment with one artifact, registered as a new version of the model."""
    experiment = client.get_experiment_by_name(model)
    run = client.create_run(experiment.experiment_id)
    client.log_metric(run.info.run_id, "test_pr_auc", 0.5)
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    client.set_terminated(run.info.run_id)
    return client.create_model_version(model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version


def test_a_team_logs_registers_and_moves_its_own_champion(svc, monkeypatch):
    import mlflow

    a = client_as(svc, monkeypatch, "a")
    # The sync made the experiment (named as the model) and the registered model before the team ever ran.
    assert a.get_experiment_by_name("a-model") is not None and a.get_registered_model("a-model").name == "a-model"
    previous = mlflow.get_tracking_uri()  # the fluent API's server is process-wide; other tests set theirs
    mlflow.set_tracking_uri(svc.mlflow_uri)
    try:
        mlflow.set_experiment("a-model")
        with mlflow.start_run() as run:
            mlflow.log_metric("validation_pr_auc", 0.7)
            mlflow.log_text("hello", "notes.txt")
    finally:
        mlflow.set_tracking_uri(previous)
    version = a.create_model_version("a-model", source=f"runs:/{run.info.run_id}/notes.txt",
                                     run_id=run.info.run_id).version
    a.set_registered_model_alias("a-model", "champion", version)
    assert a.get_model_version_by_alias("a-model", "champion").version == version
    assert a.download_artifacts(run.info.run_id, "notes.txt") and a.get_run(run.info.run_id).data.metrics


def test_a_pod_authenticates_with_the_credentials_file_its_secret_mounts(svc, monkeypatch, tmp_path):
    """The cluster hands the team's user over as ~/.mlflow/credentials (components/mlflow.py), not as env vars."""
    from components.mlflow import render_client_credentials
    from mlflow.tracking import MlflowClient

    client_as(svc, monkeypatch, None)  # no credentials in the environment
    (tmp_path / ".mlflow").mkdir()
    credentials = tmp_path / ".mlflow" / "credentials"
    monkeypatch.setenv("HOME", str(tmp_path))
    credentials.write_text(render_client_credentials(*svc.mlflow_credentials("b")))
    b = MlflowClient(svc.mlflow_uri)
    b.set_registered_model_alias("b-model", "challenger", new_version(b, "b-model"))
    assert refused(lambda: b.set_registered_model_alias("a-model", "challenger", "1")).get_http_status_code() == 403
    credentials.write_text(render_client_credentials("team-b", "not-the-password"))
    assert refused(lambda: b.get_registered_model("b-model")).get_http_status_code() == 401


def test_another_teams_champion_is_readable_but_cannot_be_moved(svc, monkeypatch):
    a = client_as(svc, monkeypatch, "a")
    champion = new_version(a, "a-model")
    a.set_registered_model_alias("a-model", "champion", champion)

    b = client_as(svc, monkeypatch, "b")
    # The same client, credentials and calls succeed on b's own model: what follows is refused for ownership alone.
    own = new_version(b, "b-model")
    b.set_registered_model_alias("b-model", "champion", own)
    assert b.get_model_version_by_alias("b-model", "champion").version == own

    assert b.get_model_version_by_alias("a-model", "champion").version == champion  # READ for everyone
    for call in (lambda: b.set_registered_model_alias("a-model", "champion", "1"),
                 lambda: b.delete_registered_model_alias("a-model", "champion"),
                 lambda: b.create_model_version("a-model", source="runs:/x/model"),
                 lambda: b.create_run(b.get_experiment_by_name("a-model").experiment_id)):
        exc = refused(call)
        assert (exc.error_code, exc.get_http_status_code()) == ("PERMISSION_DENIED", 403), exc
    # And on the wire: the server's own 403, not a client-side decision.
    user, password = svc.mlflow_credentials("b")
    wire = requests.post(f"{svc.mlflow_uri}/api/2.0/mlflow/registered-models/alias", auth=(user, password),
                         json={"name": "a-model", "alias": "champion", "version": "1"}, timeout=30)
    assert wire.status_code == 403
    assert client_as(svc, monkeypatch, "a").get_model_version_by_alias("a-model", "champion").version == champion


def test_without_its_grant_even_the_owner_is_refused(svc, monkeypatch):
    """The MANAGE grant is what lets a team change its model; default_permission (READ) alone does not."""
    a = client_as(svc, monkeypatch, "a")
    version = new_version(a, "a-model")
    admin = requests.Session()
    admin.auth = svc.mlflow_admin
    revoke = admin.post(f"{svc.mlflow_uri}/api/3.0/mlflow/users/permissions/revoke", timeout=30,
                        json={"username": "team-a", "resource_type": "registered_model", "resource_id": "a-model"})
    assert revoke.ok, revoke.text
    try:
        exc = refused(lambda: a.set_registered_model_alias("a-model", "champion", version))
        assert exc.get_http_status_code() == 403
    finally:
        summary = svc.sync_mlflow()
    assert "team-a registered_model:a-model MANAGE" in summary.granted  # the sync puts it back
    a.set_registered_model_alias("a-model", "champion", version)


def test_requests_without_valid_credentials_get_401_and_health_stays_open(svc, monkeypatch):
    url = f"{svc.mlflow_uri}/api/2.0/mlflow/registered-models/get"
    anonymous = requests.get(url, params={"name": "a-model"}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    user, password = svc.mlflow_credentials("a")
    assert requests.get(url, params={"name": "a-model"}, auth=(user, password + "x"), timeout=30).status_code == 401
    assert requests.get(url, params={"name": "a-model"}, auth=(user, password), timeout=30).status_code == 200
    # Kubernetes probes carry no credentials.
    assert requests.get(f"{svc.mlflow_uri}/health", timeout=30).status_code == 200
    for client in (client_as(svc, monkeypatch), client_as(svc, monkeypatch, "a", password="not-the-password")):
        exc = refused(lambda: client.get_registered_model("a-model"))
        assert (exc.error_code, exc.get_http_status_code()) == ("UNAUTHENTICATED", 401)


def run_sync(svc: LocalServices, tmp_path: Path, passwords: dict[str, str], models: dict[str, str],
             admin: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """The sync as its Job runs it: a process, the admin in MLFLOW_TRACKING_*, passwords in a mounted file."""
    credentials = tmp_path / f"credentials-{uuid.uuid4().hex[:6]}.json"
    credentials.write_text(json.dumps({t: {"username": f"team-{t}", "password": p} for t, p in passwords.items()}))
    user, password = admin or svc.mlflow_admin
    env = {"PATH": os.environ["PATH"], "MLFLOW_TRACKING_URI": svc.mlflow_uri, "MLFLOW_TRACKING_USERNAME": user,
           "MLFLOW_TRACKING_PASSWORD": password, "AUTH_SYNC_WAIT_SECONDS": "5",
           "AUTH_SYNC_PLAN": json.dumps({"teams": sorted(passwords), "models": models}),
           "AUTH_SYNC_CREDENTIALS_FILE": str(credentials)}
    return subprocess.run([sys.executable, str(AUTH_SYNC)], env=env, capture_output=True, text=True, timeout=120)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def can_log_in(svc: LocalServices, team: str, password: str) -> bool:
    resp = requests.get(f"{svc.mlflow_uri}/api/2.0/mlflow/users/current", auth=(f"team-{team}", password), timeout=30)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


def test_the_sync_is_idempotent_and_a_new_password_takes_effect(svc, tmp_path, monkeypatch):
    passwords = {**svc.mlflow_passwords, "c": "c-first-password-0001"}
    models = {"a-model": "a", "b-model": "b", "c-model": "c"}
    first = summary_of(run_sync(svc, tmp_path, passwords, models))
    assert first["users_created"] == ["team-c"]
    assert first["created"] == ["registered_model:c-model", "experiment:c-model"]
    assert first["granted"] == ["team-c experiment:c-model MANAGE", "team-c registered_model:c-model MANAGE"]
    again = run_sync(svc, tmp_path, passwords, models)
    assert summary_of(again)["changes"] == 0
    assert not [p for p in passwords.values() if p in again.stdout + again.stderr]

    changed = {**passwords, "c": "c-second-password-0002"}
    assert summary_of(run_sync(svc, tmp_path, changed, models))["changes"] == 0  # only a password: no grant moves
    assert can_log_in(svc, "c", changed["c"]) and not can_log_in(svc, "c", passwords["c"])
    c_user = ("team-c", changed["c"])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", c_user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", c_user[1])
    from mlflow.tracking import MlflowClient

    c = MlflowClient(svc.mlflow_uri)
    c.set_registered_model_alias("c-model", "champion", new_version(c, "c-model"))


def test_the_sync_hands_a_moved_model_over_and_removes_a_gone_team(svc, tmp_path, monkeypatch):
    passwords = {**svc.mlflow_passwords, "d": "d-first-password-0001"}
    summary_of(run_sync(svc, tmp_path, passwords, {"a-model": "a", "b-model": "b", "d-model": "d"}))
    d = client_as(svc, monkeypatch, "a")  # a, for now, can only read d-model
    assert refused(lambda: new_version(d, "d-model")).get_http_status_code() == 403

    # d-model moves to team a and team d goes away.
    moved = summary_of(run_sync(svc, tmp_path, dict(svc.mlflow_passwords),
                                {"a-model": "a", "b-model": "b", "d-model": "a"}))
    assert "team-d" in moved["users_deleted"]
    assert moved["granted"] == ["team-a experiment:d-model MANAGE", "team-a registered_model:d-model MANAGE"]
    assert not can_log_in(svc, "d", passwords["d"])
    a = client_as(svc, monkeypatch, "a")
    a.set_registered_model_alias("d-model", "champion", new_version(a, "d-model"))


def test_the_sync_refuses_bad_inputs_and_a_non_admin(svc, tmp_path):
    bad = run_sync(svc, tmp_path, {"a": "short"}, {"a-model": "a", "x-model": "x"})
    assert bad.returncode == 2
    assert "at least 12 characters" in bad.stderr and "'x-model' belongs to 'x'" in bad.stderr
    not_admin = run_sync(svc, tmp_path, dict(svc.mlflow_passwords), {"a-model": "a", "b-model": "b"},
                         admin=svc.mlflow_credentials("a"))
    assert not_admin.returncode == 1 and "team-a is not an MLflow admin" in not_admin.stderr


def test_plan_parsing_reports_every_problem():
    sync = load_auth_sync()
    with pytest.raises(sync.ConfigError) as info:
        sync.Plan.parse({"teams": ["a", "b"], "models": {"m": "a", "n": "z"}},
                        {"a": {"username": "alice", "password": "x" * 20}})
    message = str(info.value)
    assert "team 'a' must use the user 'team-a'" in message and "no password for team 'b'" in message
    assert "'n' belongs to 'z'" in message


def test_the_migration_jobs_command_creates_both_schemas_in_one_database(tmp_path):
    """The cluster's db-upgrade Job, its exact command, on a fresh database: the registry's schema and the auth
    app's (users and grants, their own migration history) side by side, each at its head."""
    import sqlite3

    from components.mlflow import BACKEND_DIR
    from tests.helpers import run_component
    from tests.test_mlflow_auth_component import declare

    plan = run_component(declare)
    (container,) = plan.one("kubernetes:batch/v1:Job", "mlflow-db-upgrade")["inputs"]["spec"]["template"]["spec"][
        "containers"]
    (tmp_path / "uri").write_text(f"sqlite:///{tmp_path / 'mlflow.db'}")
    command = container["command"][-1].replace(f"{BACKEND_DIR}/uri", str(tmp_path / "uri"))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])  # `mlflow`, `python`: the venv's
    result = subprocess.run(["sh", "-c", command], env={**os.environ, "PATH": path}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "mlflow.db")
    tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert {"registered_models", "experiments", "users", "role_permissions", "alembic_version",
            "alembic_version_auth"} <= tables
    assert db.execute("select count(*) from alembic_version_auth").fetchone() == (1,)


def training(svc: LocalServices, team: str, **overrides: str) -> subprocess.CompletedProcess:
    p = "t" + uuid.uuid4().hex[:10]
    env = {**os.environ, **svc.env(team), "PYTHONPATH": os.pathsep.join([str(WORKLOADS), str(REPO)]),
           "LAKE_CURATED_URI": f"s3://{svc.buckets['curated']}/{p}/transactions/",
           "CHECKPOINT_URI": f"s3://{svc.buckets['artifacts']}/{p}/checkpoints/", "METRICS_PORT": "0", **overrides}
    return subprocess.run([sys.executable, "-m", "training"], env=env, cwd=WORKLOADS, capture_output=True, text=True,
                          timeout=180)


def test_training_reports_a_refusal_in_one_message_with_its_own_exit_code(svc):
    """Team b's training pointed at a's experiment: the server refuses the run; the job says so, no traceback."""
    result = training(svc, "b", MLFLOW_EXPERIMENT="a-model", MODEL_NAME="a-model")
    out = result.stdout + result.stderr
    assert result.returncode == 4, out[-3000:]
    assert "MLflow refused team-b (HTTP 403 PERMISSION_DENIED at /api/2.0/mlflow/runs/create)" in out
    assert "MODEL_NAME='a-model'" in out and "Traceback" not in out

    wrong = training(svc, "b", MLFLOW_TRACKING_PASSWORD="not-the-password")
    out = wrong.stdout + wrong.stderr
    assert wrong.returncode == 4, out[-3000:]
    assert "MLflow refused the credentials of team-b (HTTP 401 UNAUTHENTICATED" in out and "Traceback" not in out
