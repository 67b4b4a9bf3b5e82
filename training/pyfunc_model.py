"""The MLflow pyfunc wrapper of a model bundle: predicts probabilities at the task's horizons."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from risk_model.bundle import ModelBundle


class RelapseRiskModel(mlflow.pyfunc.PythonModel):
    """Input: one row per patient with the schema's predictor columns. Output: one column per endpoint and
    horizon, `<endpoint>_<h>m`, the endpoint's probability (incidence, or probability of staying event-free)."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"], upgrade=True)  # may predate this format

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        months = np.array(self.bundle.horizons_months, dtype=float)
        probabilities = self.bundle.endpoint_probabilities(model_input, months)
        columns = {f"{endpoint}_{h}m": values[:, i] for endpoint, values in probabilities.items()
                   for i, h in enumerate(self.bundle.horizons_months)}
        return pd.DataFrame(columns, index=model_input.index)
