"""Loading a registered model version and following an alias.

Reads the artifact files training writes (training/model.py: model.pt2 + model_config.json) straight from the
registry: no pyfunc code runs in the server, and scoring is one tensor call with no pandas.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    threshold: float
    program: torch.nn.Module

    def scores(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self.program(torch.from_numpy(features))).numpy()


def load_version(name: str, version: str) -> LoadedModel:
    with tempfile.TemporaryDirectory() as tmp:
        # Only artifacts/ (two files): the pyfunc wrapper, code and environment files are not needed here.
        artifacts = ModelsArtifactRepository(f"models:/{name}/{version}").download_artifacts("artifacts", tmp)
        with open(os.path.join(artifacts, "model_config.json")) as fh:
            config = json.load(fh)
        program = torch.export.load(os.path.join(artifacts, "model.pt2")).module()
    model = LoadedModel(name, str(version), float(config["threshold"]), program)
    # First call pays one-off costs (allocations, guards) before real traffic does.
    model.scores(np.zeros((1, len(config["feature_names"])), dtype=np.float32))
    return model


def resolve_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version the alias points at, or None while it does not exist (no model trained yet)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise
