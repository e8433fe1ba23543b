"""MLflow: logging the model, registering a version and deciding which alias it gets."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
from mlflow.tracking import MlflowClient

from . import evaluation
from .data import Split
from .model import Scorer

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# What the MLflow server answers when its basic-auth app refuses a request.
REFUSALS = {"PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401}
WORKLOADS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_SCRIPT = os.path.join(WORKLOADS_DIR, "training", "serving.py")
# What `mlflow models serve` needs to run serving.py; pinned like requirements-workloads.txt.
MODEL_PIP_REQUIREMENTS = [
    "mlflow==3.17.2",
    "torch==2.13.0",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "pyarrow==25.0.1",
]


@dataclass(frozen=True)
class Decision:
    version: str
    alias: str
    new_pr_auc: float
    champion_version: str | None
    champion_pr_auc: float | None


def is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, MlflowException) and exc.error_code in REFUSALS


def refusal_message(exc: MlflowException, model_name: str, experiment: str) -> str:
    """One paragraph saying who was refused what and where to look; the server's words stay at the end."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no user: MLFLOW_TRACKING_USERNAME is not set)"
    found = re.search(r"endpoint (\S+) failed", str(exc))
    where = f" at {found.group(1)}" if found else ""
    status = f"HTTP {REFUSALS[exc.error_code]} {exc.error_code}"
    if exc.error_code == "UNAUTHENTICATED":
        return (f"MLflow refused the credentials of {user} ({status}{where}): MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD must be the team's MLflow user (its mlflow-credentials Secret).")
    return (f"MLflow refused {user} ({status}{where}): this job may change only its own team's models and "
            f"experiments, and MODEL_NAME={model_name!r} / MLFLOW_EXPERIMENT={experiment!r} include one it does "
            "not own (every team can read all models, but registering versions and moving the champion alias "
            "need the owner's MANAGE grant). Point the job at its own team's model, or move the model to this team "
            "in ml-platform:models.")


def _encoder_package(directory: str) -> str:
    """A copy of just the parts of ``common`` the pyfunc imports (every file is one upload to the registry)."""
    package = os.path.join(directory, "common")
    os.makedirs(package, exist_ok=True)
    for name in ("__init__.py", "schema.py"):
        shutil.copyfile(os.path.join(WORKLOADS_DIR, "common", name), os.path.join(package, name))
    return package


def log_model(model_dir_files: dict[str, str], example_rows: list[dict], model_name: str) -> str:
    """Logs the pyfunc model in the active run, registers it, returns the new version number."""
    example = pd.DataFrame(example_rows)
    output = pd.DataFrame({"score": np.zeros(len(example)), "is_fraud": np.zeros(len(example), dtype=bool)})
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SERVING_SCRIPT,
            artifacts=model_dir_files,
            # The encoder ships with the model so any MLflow client can load it without this repository.
            code_paths=[_encoder_package(tmp)],
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=MODEL_PIP_REQUIREMENTS,
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    log.info("registered %s version %s", model_name, version)
    return version


def load_scorer(model_uri: str) -> Scorer:
    """Reads the artifact files straight from the registry: no pyfunc code runs, and no pandas on the path."""
    with tempfile.TemporaryDirectory() as tmp:
        # Only artifacts/ (two files), not the whole pyfunc directory.
        local = ModelsArtifactRepository(model_uri).download_artifacts("artifacts", dst_path=tmp)
        return Scorer(local)


def test_pr_auc(scorer: Scorer, test: Split) -> float:
    return evaluation.pr_auc(test.labels, scorer.scores(test.features))


def version_of_run(client: MlflowClient, model_name: str, run_id: str) -> str | None:
    """The version this run already registered, if any (the job is being resumed after registering)."""
    try:
        found = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(found[0].version) if found else None


def _champion_pr_auc(model_name: str, version: str, test: Split, attempts: int = 3) -> float | None:
    """The champion re-scored on today's test split; None when it cannot be loaded after retries."""
    for attempt in range(1, attempts + 1):
        try:
            return test_pr_auc(load_scorer(f"models:/{model_name}/{version}"), test)
        except Exception as exc:  # noqa: BLE001 - network, S3 and registry errors all look alike here
            log.warning("evaluating champion version %s failed (attempt %d/%d): %s", version, attempt, attempts, exc)
            if attempt < attempts:
                time.sleep(2 ** attempt)
    return None


def choose_alias(client: MlflowClient, model_name: str, version: str, new_pr_auc: float, test: Split) -> Decision:
    """Champion only if the new version beats the current champion on today's test split (PR AUC)."""
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        # Only "no such alias/model" means there is no champion; a server error must not crown this version.
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST" and "not found" not in str(exc).lower():
            raise
        current = None
    if current is None:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        return Decision(version, CHAMPION, new_pr_auc, None, None)
    # Re-scored now rather than read from its old run: the test split has grown since it was trained.
    champion_pr_auc = _champion_pr_auc(model_name, current.version, test)
    if champion_pr_auc is None:
        # Without a comparison the new version is never crowned: it waits as challenger for a person to decide.
        log.error("champion version %s could not be evaluated; version %s becomes challenger", current.version, version)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        return Decision(version, CHALLENGER, new_pr_auc, current.version, None)
    if new_pr_auc > champion_pr_auc:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        alias = CHAMPION
    else:
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        alias = CHALLENGER
    return Decision(version, alias, new_pr_auc, current.version, champion_pr_auc)
