"""MLflow pyfunc entry point (models-from-code): what `mlflow models serve` and mlflow.pyfunc.load_model run.

Self-contained on purpose: it needs torch, pandas and ``common`` (shipped in the model's code_paths), not the
training package, so any MLflow client can load the registered model.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from common.schema import encode_features


class FraudScorer(PythonModel):
    def load_context(self, context):
        with open(context.artifacts["config"]) as fh:
            self.threshold = float(json.load(fh)["threshold"])
        self.program = torch.export.load(context.artifacts["program"]).module()

    def predict(self, context, model_input, params=None):
        features = encode_features(model_input)
        with torch.inference_mode():
            scores = torch.sigmoid(self.program(torch.from_numpy(features))).numpy().astype(np.float64)
        return pd.DataFrame({"score": scores, "is_fraud": scores >= self.threshold})


mlflow.models.set_model(FraudScorer())
