"""Turn schema-validated patient frames into model matrices; fitted inside the folds, saved as plain JSON.

xgboost takes missing values natively (`impute=False`); the Cox baseline gets median/mode imputation plus a
missing-indicator column per optional predictor (`impute=True`). Categories are one-hot encoded against the
schema's first category (drop-first, which the linear Cox model needs). Kept free of training libraries
because serving runs the same transform.

A number the task spec gives a form enters the Cox model through it: log2 of the value, restricted cubic spline
terms (Harrell's form, knots on the transformed scale), a step at each cut. Those columns are computed once in the
encoding (slots after the value), so the Cox margin stays linear in it; xgboost reads the value only.

Every preprocessor is linear in one `PatientEncoding` of the predictors (a number as its value and a missing flag, a
category as one indicator per schema category and a missing flag), with missing values of xgboost's columns put
back as NaN. So a request is encoded once, and a Cox margin of any bundle member is one dot product with it.
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

    def fit(self, frame: pd.DataFrame, schema: TaskSchema, knots: dict[str, list[float]] | None = None
            ) -> Preprocessor:
        """`knots`: spline knots to use instead of those placed on this frame (a bootstrap replicate takes the
        point model's, so that every member of a bundle reads the same encoding)."""
        self.schema_predictors = [
            {"name": p.name, "kind": p.kind, "categories": list(p.categories), "required": p.required,
             **_form(p, frame[p.name], (knots or {}).get(p.name))}
            for p in schema.predictors
        ]
        self.columns, self.sources, self.fill_values = [], [], {}
        for p in self.schema_predictors:
            values = frame[p["name"]]
            if self.impute:
                self.fill_values[p["name"]] = _fill_value(values, p)
            for column in _encoded_columns(p, values if self.impute else None, formed=self.impute):
                self.columns.append(column)
                self.sources.append(p["name"])
            if self.impute and not p["required"]:
                self.columns.append(f"{p['name']}__missing")
                self.sources.append(p["name"])
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        encoding = PatientEncoding.of(self.schema_predictors)
        return self.transform_encoded(encoding.frame(frame), encoding)

    def transform_encoded(self, encoded: np.ndarray, encoding: PatientEncoding) -> np.ndarray:
        """The model matrix from patients already encoded with `encoding`."""
        return encoded_to_matrix(encoded, *self.linear_map(encoding))

    def linear_map(self, encoding: PatientEncoding) -> tuple[np.ndarray, np.ndarray]:
        """(weights: columns x encoding width, nan_from: per column the missing slot that makes it NaN, or -1)."""
        weights = np.zeros((len(self.columns), encoding.width))
        nan_from = np.full(len(self.columns), -1)
        for j, (column, source) in enumerate(zip(self.columns, self.sources, strict=True)):
            start, missing = encoding.slots[source]
            if column == f"{source}__missing":
                weights[j, missing] = 1.0
                continue
            if "=" in column and column.startswith(f"{source}="):
                category = column[len(source) + 1:]
                weights[j, start + encoding.categories[source].index(category)] = 1.0
                fill = 1.0 if self.fill_values.get(source) == category else 0.0
            elif column.startswith(f"{source}@"):
                form = self._form(source)
                if encoding.forms.get(source) != form:
                    raise ValueError(f"{source}: the encoding's form {encoding.forms.get(source)} is not the model's "
                                     f"{form}")
                offset = basis_labels(form).index(column[len(source) + 1:])
                weights[j, start + 1 + offset] = 1.0
                fill = float(number_basis(form, np.array([self.fill_values.get(source, 0.0)]))[0, offset])
            else:
                weights[j, start] = 1.0
                fill = float(self.fill_values.get(source, 0.0))
            if self.impute:
                weights[j, missing] = fill
            else:
                nan_from[j] = missing
        return weights, nan_from

    def _form(self, name: str) -> dict[str, Any]:
        predictor = next(p for p in self.schema_predictors if p["name"] == name)
        return {key: predictor[key] for key in FORM_KEYS if key in predictor}

    def knots(self) -> dict[str, list[float]]:
        """The spline knots placed at fit, by predictor (to fit replicates on the same encoding)."""
        return {p["name"]: p["knots"] for p in self.schema_predictors if p.get("knots")}

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


FORM_KEYS = ("transform", "knots", "cuts")
# Harrell's knot quantiles (Regression Modeling Strategies, 2nd ed., table 2.3) by number of knots.
HARRELL_QUANTILES = {3: (0.10, 0.5, 0.90), 4: (0.05, 0.35, 0.65, 0.95), 5: (0.05, 0.275, 0.5, 0.725, 0.95),
                     6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
                     7: (0.025, 0.1833, 0.3417, 0.5, 0.6583, 0.8167, 0.975)}


def _form(predictor: Any, values: pd.Series, knots: list[float] | None) -> dict[str, Any]:
    """The form keys of a number the spec gives one (none otherwise): knots placed on the observed values
    (transformed) at Harrell's quantiles when the spec gives a count; fewer than 3 distinct ones make no spline."""
    form: dict[str, Any] = {}
    if predictor.kind != "number":
        return form
    if predictor.transform:
        form["transform"] = predictor.transform
    wanted = predictor.spline_knots
    if knots is None and isinstance(wanted, int):
        observed = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
        scaled = _transformed(form, observed)
        knots = sorted(set(np.quantile(scaled, HARRELL_QUANTILES[wanted]).round(6))) if len(scaled) else []
    elif knots is None and wanted:
        knots = list(wanted)
    if knots and len(knots) >= 3:
        form["knots"] = [float(k) for k in knots]
    if predictor.cuts:
        form["cuts"] = [float(c) for c in predictor.cuts]
    return form


def _transformed(form: dict[str, Any], x: np.ndarray) -> np.ndarray:
    if form.get("transform") == "log2":
        return np.log2(np.where(x > 0, x, 1.0))
    return x


def basis_labels(form: dict[str, Any]) -> list[str]:
    """The columns a form adds after the value, in slot order."""
    labels = ["log2"] if form.get("transform") == "log2" else []
    labels += [f"rcs{j}" for j in range(1, len(form.get("knots", [])) - 1)]
    return labels + [f"ge{c:g}" for c in form.get("cuts", [])]


def number_basis(form: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """(values x basis_labels) for present values: log2, Harrell's restricted cubic spline terms (linear beyond the
    outer knots, scaled by the squared knot range), and 1 from each cut on."""
    z = _transformed(form, x)
    columns = [z] if form.get("transform") else []
    knots = np.asarray(form.get("knots", []), dtype=float)
    if len(knots) >= 3:
        last, before = knots[-1], knots[-2]
        cube = lambda k: np.maximum(z - k, 0.0) ** 3  # noqa: E731
        for k in knots[:-2]:
            columns.append((cube(k) - cube(before) * (last - k) / (last - before)
                            + cube(last) * (before - k) / (last - before)) / (last - knots[0]) ** 2)
    columns += [(x >= c).astype(float) for c in form.get("cuts", [])]
    return np.column_stack(columns) if columns else np.zeros((len(x), 0))


def _encoded_columns(predictor: dict[str, Any], training_values: pd.Series | None, formed: bool = False
                     ) -> list[str]:
    if predictor["kind"] == "number" and formed and (labels := basis_labels(predictor)):
        name = predictor["name"]
        linear = [] if predictor.get("transform") else [name]  # a transform replaces the value
        return linear + [f"{name}@{label}" for label in labels]
    if predictor["kind"] != "category":
        return [predictor["name"]]
    categories = predictor["categories"][1:]
    if training_values is not None:
        # A category never seen in training gives an all-zero column, which makes the Cox model singular.
        categories = [c for c in categories if (training_values == c).any()]
    return [f"{predictor['name']}={c}" for c in categories]


def encoded_to_matrix(encoded: np.ndarray, weights: np.ndarray, nan_from: np.ndarray) -> np.ndarray:
    """Apply a `Preprocessor.linear_map`: the product, then NaN where a column's missing flag is set."""
    matrix = encoded @ weights.T
    if (nan_from >= 0).any():
        columns = np.flatnonzero(nan_from >= 0)
        matrix[:, columns] = np.where(encoded[:, nan_from[columns]] > 0, np.nan, matrix[:, columns])
    return matrix


@dataclass(frozen=True)
class PatientEncoding:
    """The predictors as plain numbers: a number or flag as (value, or 0 when missing; missing flag), a category
    as one indicator per schema category then a missing flag. A value outside the schema's categories gets no
    indicator (as the one-hot columns treat it)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    categories: dict[str, list[str]]
    slots: dict[str, tuple[int, int]]  # predictor -> (first slot, missing slot)
    width: int
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)  # a number's form: its basis follows the value

    @classmethod
    def of(cls, schema_predictors: list[dict[str, Any]]) -> PatientEncoding:
        slots, categories, forms, width = {}, {}, {}, 0
        for p in schema_predictors:
            form = {key: p[key] for key in FORM_KEYS if key in p}
            size = len(p["categories"]) if p["kind"] == "category" else 1 + len(basis_labels(form))
            slots[p["name"]] = (width, width + size)
            if p["kind"] == "category":
                categories[p["name"]] = list(p["categories"])
            elif form:
                forms[p["name"]] = form
            width += size + 1
        return cls(tuple(p["name"] for p in schema_predictors), tuple(p["kind"] for p in schema_predictors),
                   categories, slots, width, forms)

    def frame(self, frame: pd.DataFrame) -> np.ndarray:
        encoded = np.zeros((len(frame), self.width))
        for name, kind in zip(self.names, self.kinds, strict=True):
            start, missing_slot = self.slots[name]
            if name not in frame.columns:
                encoded[:, missing_slot] = 1.0
                continue
            values = frame[name]
            missing = values.isna().to_numpy()
            if kind == "category":
                codes = pd.Categorical(values, categories=self.categories[name]).codes
                known = codes >= 0
                encoded[np.flatnonzero(known), start + codes[known]] = 1.0
            else:
                numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                missing = missing | np.isnan(numbers)
                encoded[:, start] = np.where(missing, 0.0, numbers)
                if name in self.forms:
                    basis = number_basis(self.forms[name], np.where(missing, 1.0, numbers))
                    encoded[:, start + 1:missing_slot] = np.where(missing[:, None], 0.0, basis)
            encoded[:, missing_slot] = missing
        return encoded

    def records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The same encoding from plain dicts (one request), without building a DataFrame."""
        encoded = np.zeros((len(records), self.width))
        for row, record in enumerate(records):
            for name, kind in zip(self.names, self.kinds, strict=True):
                start, missing_slot = self.slots[name]
                value = record.get(name)
                if value is None or (isinstance(value, float) and value != value):
                    encoded[row, missing_slot] = 1.0
                elif kind == "category":
                    if value in self.categories[name]:
                        encoded[row, start + self.categories[name].index(value)] = 1.0
                else:
                    encoded[row, start] = float(value)
                    if name in self.forms:
                        encoded[row, start + 1:missing_slot] = number_basis(self.forms[name], np.array([float(value)]))
        return encoded

    def grouping(self) -> np.ndarray:
        """(width x predictors) 0/1 matrix: which predictor each slot belongs to."""
        group = np.zeros((self.width, len(self.names)))
        for p, name in enumerate(self.names):
            start, missing_slot = self.slots[name]
            group[start:missing_slot + 1, p] = 1.0
        return group
