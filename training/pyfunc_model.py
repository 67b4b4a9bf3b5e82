"""The MLflow pyfunc wrapper of a model bundle: predicts probabilities at the task's horizons."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

from risk_model.bundle import ModelBundle


class RelapseRiskModel(mlflow.pyfunc.PythonModel):
    """Input: one row per patient with the schema's predictor columns. Output: one column per endpoint and
    horizon, `<endpoint>_<h>m`, the endpoint's probability (incidence, or probability of staying event-free)."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"], upgrade=True)  # may predate this format

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.probabilities(self.bundle, model_input)

    @staticmethod
    def probabilities(bundle: ModelBundle, model_input: pd.DataFrame) -> pd.DataFrame:
        months = np.array(bundle.horizons_months, dtype=float)
        probabilities = bundle.endpoint_probabilities(model_input, months)
        columns = {
            f"{endpoint}_{h}m": values[:, i]
            for endpoint, values in probabilities.items()
            for i, h in enumerate(bundle.horizons_months)
        }
        return pd.DataFrame(columns, index=model_input.index)


def pyfunc_signature(bundle: ModelBundle, example: pd.DataFrame) -> ModelSignature:
    """The input and output schema the registry keeps, inferred from the example rows, except that an optional
    flag is typed `Any`: MLflow casts a boolean column with `astype(bool)` when it parses a request, so a null
    (unknown) flag reached the model as False and `mlflow models serve` answered as if the flag were "no" (all_hsct's
    example patient: 1.7e-02 from the service's answer). Untyped, the null arrives as missing, as in the service."""
    inferred = infer_signature(example, RelapseRiskModel.probabilities(bundle, example))
    optional_flags = {p["name"] for p in bundle.schema["predictors"] if p["kind"] == "boolean" and not p["required"]}
    inputs = [
        ColSpec(AnyType(), column.name, required=False) if column.name in optional_flags else column
        for column in inferred.inputs.inputs
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)
