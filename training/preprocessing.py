"""Turn schema-validated patient frames into model matrices; fitted inside the folds, saved as plain JSON.

xgboost takes missing values natively (`impute=False`); the Cox baseline gets median/mode imputation plus a
missing-indicator column per optional predictor (`impute=True`). Categories are one-hot encoded against the
schema's first category (drop-first, which the linear Cox model needs). Kept free of training libraries
because serving runs the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema


@dataclass
class Preprocessor:
    impute: bool
    columns: list[str] = field(default_factory=list)  # model matrix columns
    sources: list[str] = field(default_factory=list)  # predictor behind each column
    fill_values: dict[str, Any] = field(default_factory=dict)
    schema_predictors: list[dict[str, Any]] = field(default_factory=list)

    def fit(self, frame: pd.DataFrame, schema: TaskSchema) -> Preprocessor:
        self.schema_predictors = [
            {"name": p.name, "kind": p.kind, "categories": list(p.categories), "required": p.required}
            for p in schema.predictors
        ]
        self.columns, self.sources, self.fill_values = [], [], {}
        for p in self.schema_predictors:
            values = frame[p["name"]]
            if self.impute:
                self.fill_values[p["name"]] = _fill_value(values, p)
            for column in _encoded_columns(p, values if self.impute else None):
                self.columns.append(column)
                self.sources.append(p["name"])
            if self.impute and not p["required"]:
                self.columns.append(f"{p['name']}__missing")
                self.sources.append(p["name"])
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        encoded: dict[str, np.ndarray] = {}
        for p in self.schema_predictors:
            values = frame[p["name"]] if p["name"] in frame.columns else pd.Series(np.nan, index=frame.index)
            missing = values.isna().to_numpy()
            if self.impute:
                encoded[f"{p['name']}__missing"] = missing.astype(float)
                values = values.where(~missing, self.fill_values[p["name"]])
            if p["kind"] == "category":
                for category in p["categories"][1:]:
                    column = np.where(missing & (not self.impute), np.nan, (values == category).astype(float))
                    encoded[f"{p['name']}={category}"] = column
            else:
                encoded[p["name"]] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
        return np.column_stack([encoded[c] for c in self.columns]).astype(float)

    @property
    def feature_names(self) -> list[str]:
        """Predictors in schema order (what contributions are reported for)."""
        return [p["name"] for p in self.schema_predictors]

    def to_json(self) -> dict[str, Any]:
        return {"impute": self.impute, "columns": self.columns, "sources": self.sources,
                "fill_values": self.fill_values, "schema_predictors": self.schema_predictors}

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> Preprocessor:
        return cls(**spec)


def _fill_value(values: pd.Series, predictor: dict[str, Any]) -> Any:
    observed = values.dropna()
    if predictor["kind"] == "number":
        return float(observed.median()) if len(observed) else 0.0
    if predictor["kind"] == "boolean":
        return float(observed.mode().iloc[0]) if len(observed) else 0.0
    return str(observed.mode().iloc[0]) if len(observed) else predictor["categories"][0]


def _encoded_columns(predictor: dict[str, Any], training_values: pd.Series | None) -> list[str]:
    if predictor["kind"] != "category":
        return [predictor["name"]]
    categories = predictor["categories"][1:]
    if training_values is not None:
        # A category never seen in training gives an all-zero column, which makes the Cox model singular.
        categories = [c for c in categories if (training_values == c).any()]
    return [f"{predictor['name']}={c}" for c in categories]
