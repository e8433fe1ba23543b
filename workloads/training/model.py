"""The network, and the on-disk model artifact that training writes and both servers read.

Artifact layout (a directory, logged as the MLflow model's ``artifacts/``):
  model.pt2          torch.export program: float32 (batch, len(FEATURE_NAMES)) -> fraud logits (batch,)
  model_config.json  {"threshold": float, "feature_names": [...], "hidden_units": [...], ...}
An exported program carries its own graph and weights, so a server loads it without this module's classes.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

PROGRAM_FILE = "model.pt2"
CONFIG_FILE = "model_config.json"


class FraudMLP(nn.Module):
    def __init__(self, n_features: int, hidden_units: tuple[int, ...], dropout: float):
        super().__init__()
        # Standardisation lives in the model as buffers: it travels inside the exported program and the
        # checkpoint, so serving cannot drift from training.
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def set_standardisation(self, features: np.ndarray) -> None:
        mean = features.astype(np.float64).mean(axis=0)
        std = features.astype(np.float64).std(axis=0)
        # Constant columns (e.g. a category absent from training) would divide by zero.
        std[std < 1e-6] = 1.0
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.scale.copy_(torch.from_numpy(std.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.scale).squeeze(-1)


def export_artifacts(model: FraudMLP, directory: str, config: dict) -> dict[str, str]:
    """Writes the artifact files; returns {name: path} as mlflow.pyfunc.log_model's ``artifacts`` wants."""
    os.makedirs(directory, exist_ok=True)
    model = model.eval()
    n_features = model.mean.shape[0]
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    program = torch.export.export(model, (torch.zeros(4, n_features),), dynamic_shapes={"x": {0: batch}})
    program_path = os.path.join(directory, PROGRAM_FILE)
    torch.export.save(program, program_path)
    return {"program": program_path, "config": write_config(directory, config)}


def write_config(directory: str, config: dict) -> str:
    path = os.path.join(directory, CONFIG_FILE)
    with open(path, "w") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
    return path


class Scorer:
    """Fraud probabilities from encoded features, loaded from an artifact directory."""

    def __init__(self, directory: str):
        with open(os.path.join(directory, CONFIG_FILE)) as fh:
            self.config = json.load(fh)
        self.threshold = float(self.config["threshold"])
        self.program = torch.export.load(os.path.join(directory, PROGRAM_FILE)).module()

    def scores(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self.program(torch.from_numpy(features))).numpy()
