"""Brings MLflow's users and permissions in line with the platform's teams and models; runs as the MLflow admin.

    python auth_sync.py
      MLFLOW_TRACKING_URI                                   the server
      MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   the admin
      AUTH_SYNC_PLAN               {"teams": ["fraud", ...], "models": {"fraud-detector": "fraud", ...}}
      AUTH_SYNC_CREDENTIALS_FILE   {"fraud": {"username": "team-fraud", "password": "..."}, ...}

Per team one user, `team-<team>`, with the password from the credentials file (set on every run, so a rotated
password takes effect). Per model its registered model and its experiment (named as the model) exist, and the owning
team holds MANAGE on both; any other team's explicit grant on them is revoked, so a model moved to another team
changes hands. Everyone else gets the server's default_permission (READ). `team-*` users whose team is gone are
deleted. What a team created itself (and so manages) is left alone. A second run changes nothing.

Plain REST calls with the admin's credentials passed explicitly: nothing here reads or changes the process's MLflow
environment, so the local services can run it in-process next to clients acting as a team.

Exit codes: 0 in sync, 1 the server refused or could not be reached, 2 the inputs are wrong.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger("auth_sync")

USER_PREFIX = "team-"
OWNER_PERMISSION = "MANAGE"
MIN_PASSWORD_LENGTH = 12  # MLflow's own rule for user passwords
EXIT_FAILED, EXIT_CONFIG = 1, 2
# Only grants on a user's own (synthetic) role are the sync's business; roles assigned by hand are not touched.
DIRECT_ROLE_PREFIX = "__user_"


class ConfigError(ValueError):
    pass


class SyncError(RuntimeError):
    def __init__(self, message: str, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status, self.error_code = status, error_code


def user_of(team: str) -> str:
    return f"{USER_PREFIX}{team}"


@dataclass(frozen=True)
class Plan:
    passwords: dict[str, str]
    """team -> password"""
    models: dict[str, str]
    """model -> owning team"""

    @staticmethod
    def parse(plan: Mapping[str, Any], credentials: Mapping[str, Any]) -> "Plan":
        """Raises ConfigError listing every problem at once."""
        teams, models = plan.get("teams"), plan.get("models")
        problems = []
        if not isinstance(teams, list) or not all(isinstance(t, str) and t for t in teams):
            problems.append("AUTH_SYNC_PLAN.teams must be a list of team names")
            teams = []
        if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
            problems.append("AUTH_SYNC_PLAN.models must map each model name to its team")
            models = {}
        passwords = {}
        for team in teams:
            entry = credentials.get(team)
            if not isinstance(entry, Mapping) or not isinstance(entry.get("password"), str):
                problems.append(f"credentials: no password for team {team!r}")
            elif entry.get("username", user_of(team)) != user_of(team):
                problems.append(f"credentials: team {team!r} must use the user {user_of(team)!r}")
            elif len(entry["password"]) < MIN_PASSWORD_LENGTH:
                problems.append(f"credentials: team {team!r}: MLflow needs a password of at least "
                                f"{MIN_PASSWORD_LENGTH} characters")
            else:
                passwords[team] = entry["password"]
        problems += [f"AUTH_SYNC_PLAN.models: {m!r} belongs to {t!r}, which is not in teams"
                     for m, t in models.items() if t not in teams]
        if problems:
            raise ConfigError("; ".join(problems))
        return Plan(passwords, dict(models))


@dataclass
class Summary:
    users_created: list[str] = field(default_factory=list)
    passwords_set: list[str] = field(default_factory=list)
    users_deleted: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    """`registered_model:<name>` / `experiment:<name>` created (or restored) by this run"""
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """What this run changed besides (re)setting passwords, which every run does."""
        return sum(map(len, (self.users_created, self.users_deleted, self.created, self.granted, self.revoked)))

    def as_dict(self) -> dict[str, Any]:
        return {"in_sync": True, "changes": self.changes, **vars(self)}


class Sync:
    def __init__(self, tracking_uri: str, admin: tuple[str, str], timeout_s: float = 30):
        self.uri = tracking_uri.rstrip("/")
        self.http = requests.Session()
        self.http.auth = admin
        self.admin_name = admin[0]
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ REST
    def call(self, method: str, path: str, *, missing_ok: bool = False, exists_ok: bool = False,
             **kwargs: Any) -> dict[str, Any] | None:
        """One REST call; None when the object is missing (missing_ok) or already there (exists_ok)."""
        resp = self.http.request(method, self.uri + path, timeout=self.timeout_s, **kwargs)
        if resp.ok:
            return resp.json() if resp.content else {}
        try:
            body = resp.json()
        except ValueError:
            body = {"message": resp.text[:300]}
        code = body.get("error_code")
        if (missing_ok and code == "RESOURCE_DOES_NOT_EXIST") or (exists_ok and code == "RESOURCE_ALREADY_EXISTS"):
            return None
        raise SyncError(f"{method} {path}: HTTP {resp.status_code} {code or ''} {body.get('message', '')}".strip(),
                        resp.status_code, code)

    def wait_until_up(self, timeout_s: float) -> None:
        """/health answers (it needs no credentials) and the credentials are an admin's."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if requests.get(f"{self.uri}/health", timeout=5).ok:
                    break
            except requests.RequestException as exc:
                log.info("waiting for %s: %s", self.uri, exc)
            if time.monotonic() > deadline:
                raise SyncError(f"{self.uri} did not become healthy within {timeout_s:.0f} s")
            time.sleep(2)
        who = self.call("GET", "/api/2.0/mlflow/users/current")
        if not who["user"]["is_admin"]:
            raise SyncError(f"{self.admin_name} is not an MLflow admin")

    # ------------------------------------------------------------------ steps
    def ensure_users(self, plan: Plan, summary: Summary) -> None:
        for team, password in sorted(plan.passwords.items()):
            username = user_of(team)
            if self.call("GET", "/api/2.0/mlflow/users/get", params={"username": username}, missing_ok=True) is None:
                self.call("POST", "/api/2.0/mlflow/users/create", json={"username": username, "password": password})
                summary.users_created.append(username)
            else:
                # Set on every run: the credentials file is the truth, and a rotated password must take effect.
                self.call("PATCH", "/api/2.0/mlflow/users/update-password",
                          json={"username": username, "password": password})
                summary.passwords_set.append(username)
        wanted = {user_of(t) for t in plan.passwords}
        listed = self.call("GET", "/api/2.0/mlflow/users/list")["users"]
        for user in sorted(u["username"] for u in listed if u["username"].startswith(USER_PREFIX)):
            if user not in wanted:
                self.call("DELETE", "/api/2.0/mlflow/users/delete", json={"username": user})
                summary.users_deleted.append(user)

    def ensure_model(self, name: str, summary: Summary) -> str:
        """The registered model and its experiment exist (an existing one is kept as it is); the experiment id."""
        if self.call("POST", "/api/2.0/mlflow/registered-models/create", exists_ok=True,
                     json={"name": name, "description": "Managed by the platform (auth_sync)."}) is not None:
            summary.created.append(f"registered_model:{name}")
        found = self.call("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name},
                          missing_ok=True)
        if found is None:
            experiment_id = self.call("POST", "/api/2.0/mlflow/experiments/create", json={"name": name})[
                "experiment_id"]
            summary.created.append(f"experiment:{name}")
            return experiment_id
        experiment = found["experiment"]
        if experiment.get("lifecycle_stage") == "deleted":
            # A deleted experiment still holds its name; the team's runs need it back.
            self.call("POST", "/api/2.0/mlflow/experiments/restore",
                      json={"experiment_id": experiment["experiment_id"]})
            summary.created.append(f"experiment:{name}")
        return experiment["experiment_id"]

    def direct_grants(self, username: str) -> dict[tuple[str, str], str]:
        listed = self.call("GET", "/api/3.0/mlflow/users/permissions/list", params={"username": username})
        return {(p["resource_type"], p["resource_pattern"]): p["permission"]
                for p in listed.get("permissions", []) if p["role_name"].startswith(DIRECT_ROLE_PREFIX)}

    def ensure_grants(self, plan: Plan, experiments: Mapping[str, str], summary: Summary) -> None:
        owner: dict[tuple[str, str], str] = {}
        label: dict[tuple[str, str], str] = {}
        for model, team in plan.models.items():
            for resource in (("registered_model", model), ("experiment", experiments[model])):
                owner[resource], label[resource] = team, f"{resource[0]}:{model}"
        for team in sorted(plan.passwords):
            username = user_of(team)
            current = self.direct_grants(username)
            for resource in sorted(owner):
                want = OWNER_PERMISSION if owner[resource] == team else None
                have = current.get(resource)
                if have == want:
                    continue
                body = {"username": username, "resource_type": resource[0], "resource_id": resource[1]}
                if have is not None:
                    self.call("POST", "/api/3.0/mlflow/users/permissions/revoke", json=body)
                    summary.revoked.append(f"{username} {label[resource]} {have}")
                if want is not None:
                    self.call("POST", "/api/3.0/mlflow/users/permissions/grant", json={**body, "permission": want})
                    summary.granted.append(f"{username} {label[resource]} {want}")

    def run(self, plan: Plan) -> Summary:
        summary = Summary()
        self.ensure_users(plan, summary)
        experiments = {model: self.ensure_model(model, summary) for model in sorted(plan.models)}
        self.ensure_grants(plan, experiments, summary)
        return summary


def load_inputs(environ: Mapping[str, str]) -> tuple[str, tuple[str, str], Plan]:
    missing = [name for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                 "AUTH_SYNC_PLAN", "AUTH_SYNC_CREDENTIALS_FILE") if not environ.get(name)]
    if missing:
        raise ConfigError(f"not set: {', '.join(missing)}")
    try:
        plan = json.loads(environ["AUTH_SYNC_PLAN"])
    except ValueError as exc:
        raise ConfigError(f"AUTH_SYNC_PLAN is not JSON: {exc}") from None
    path = environ["AUTH_SYNC_CREDENTIALS_FILE"]
    try:
        with open(path, encoding="utf-8") as fh:
            credentials = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"AUTH_SYNC_CREDENTIALS_FILE {path}: {exc}") from None
    if not isinstance(plan, dict) or not isinstance(credentials, dict):
        raise ConfigError("AUTH_SYNC_PLAN and the credentials file must each hold a JSON object")
    admin = (environ["MLFLOW_TRACKING_USERNAME"], environ["MLFLOW_TRACKING_PASSWORD"])
    return environ["MLFLOW_TRACKING_URI"], admin, Plan.parse(plan, credentials)


def main(environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    environ = os.environ if environ is None else environ
    try:
        uri, admin, plan = load_inputs(environ)
    except ConfigError as exc:
        print(f"auth_sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sync = Sync(uri, admin)
    try:
        sync.wait_until_up(float(environ.get("AUTH_SYNC_WAIT_SECONDS", "300")))
        summary = sync.run(plan)
    except (SyncError, requests.RequestException) as exc:
        print(f"auth_sync: {uri}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # Names and counts only: no password is ever printed.
    print(json.dumps(summary.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
