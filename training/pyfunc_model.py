"""The MLflow pyfunc wrapper of a model bundle: predicts probabilities at the task's horizons."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from training.bundle import ModelBundle


class RelapseRiskModel(mlflow.pyfunc.PythonModel):
    """Input: one row per patient with the schema's predictor columns. Output: one column per horizon,
    `event_probability_<h>m` = P(event by h months | x), and `event_free_probability_<h>m` = 1 - that."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        months = np.array(self.bundle.horizons_months, dtype=float)
        survival = self.bundle.relapse_free_probability(model_input, months)
        columns = {}
        for i, h in enumerate(self.bundle.horizons_months):
            columns[f"event_probability_{h}m"] = 1.0 - survival[:, i]
            columns[f"event_free_probability_{h}m"] = survival[:, i]
        return pd.DataFrame(columns, index=model_input.index)
