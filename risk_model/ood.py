"""Out-of-distribution reference: is a patient's combination of predictors far from the training patients, and
were many of the predictors the model usually had left out (and so filled in)?

Distance (warning `far_from_training_data`): the Mahalanobis distance of the encoded predictors from the training
mean. Encoding: numbers and flags as they are, categories one-hot against the schema's first category, a missing
value filled with the training median (numbers) or mode (flags, categories), each column standardised; columns
that never vary in training are left out (an unseen category is `rare_category`'s business). The covariance is
Ledoit-Wolf shrunk, so correlated predictors (deep-response and TKI years) count once and the inverse is stable.
The threshold is the 99th percentile of the training patients' own distances: about 1 training patient in 100
would get the warning.

Imputed predictors (warning `many_imputed_predictors`): an optional predictor missing in a request counts when
at least half of the training patients had it (missing what most patients lacked is nothing unusual). The
warning comes at 3 such predictors, or at the smallest count that at most 5 % of training patients reach when
more of them had that many missing (all_hsct: the MRD kinetics, four fields, are missing together in about a
third of the patients, so there the threshold is higher).

The reference is plain JSON in the bundle (`ModelBundle.ood_reference`); serving needs only numpy and pandas
(scikit-learn's LedoitWolf is imported only while the reference is built, in training).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd

from risk_model.answers import Warning_

DISTANCE_QUANTILE = 0.99
MIN_IMPUTED_PREDICTORS = 3
IMPUTED_TRAINING_SHARE = 0.05
USUALLY_OBSERVED_SHARE = 0.5
DISTANCE = ("Mahalanobis distance of the encoded predictors (numbers and flags as they are, categories one-hot, "
            "missing values at the training median or mode, each standardised) from the training mean, with a "
            "Ledoit-Wolf shrunk covariance")


def _as_numbers(values: pd.Series) -> np.ndarray:
    """Numbers or flags as floats (NaN when missing); fast for one request and for a whole file."""
    if values.dtype.kind in "fiub":
        return values.to_numpy(dtype=float)
    raw = values.to_numpy(dtype=object)
    numbers = np.full(len(raw), np.nan)
    for i, value in enumerate(raw):
        with contextlib.suppress(TypeError, ValueError):
            numbers[i] = float(value) if value is not None else np.nan
    return numbers


def _column_specs(development: pd.DataFrame, predictors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for p in predictors:
        values = development[p["name"]] if p["name"] in development.columns else pd.Series(np.nan,
                                                                                            index=development.index)
        if p["kind"] == "category":
            observed = values.dropna().astype(str)
            fill = str(observed.mode().iloc[0]) if len(observed) else p["categories"][0]
            specs += [{"source": p["name"], "kind": "category", "category": c, "fill": fill}
                      for c in p["categories"][1:]]
        elif p["kind"] in ("number", "boolean"):
            numbers = _as_numbers(values)
            observed = numbers[~np.isnan(numbers)]
            if p["kind"] == "number":
                fill = float(np.median(observed)) if len(observed) else 0.0
            else:
                fill = float(np.round(observed.mean())) if len(observed) else 0.0
            specs.append({"source": p["name"], "kind": p["kind"], "category": None, "fill": fill})
    return specs


def encode(frame: pd.DataFrame, specs: list[dict[str, Any]]) -> np.ndarray:
    """The patients (rows) as the reference's columns, before standardisation."""
    columns = []
    for spec in specs:
        if spec["source"] in frame.columns:
            values = frame[spec["source"]]
        else:
            values = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if spec["kind"] == "category":
            raw = values.to_numpy(dtype=object)
            filled = np.where(pd.isna(raw), spec["fill"], raw)
            columns.append((filled == spec["category"]).astype(float))
        else:
            numbers = _as_numbers(values)
            columns.append(np.where(np.isnan(numbers), spec["fill"], numbers))
    return np.column_stack(columns) if columns else np.zeros((len(frame), 0))


def out_of_distribution_reference(development: pd.DataFrame, bundle: Any) -> dict[str, Any]:
    """The reference (encoding, mean, scale, precision, thresholds) from the development patients."""
    from sklearn.covariance import LedoitWolf

    predictors = bundle.schema["predictors"]
    specs = _column_specs(development, predictors)
    matrix = encode(development, specs)
    scale = matrix.std(axis=0)
    keep = scale > 1e-12
    specs = [s for s, k in zip(specs, keep, strict=True) if k]
    mean, scale = matrix[:, keep].mean(axis=0), scale[keep]
    standardised = (matrix[:, keep] - mean) / scale
    precision = LedoitWolf(assume_centered=True).fit(standardised).precision_
    training = np.sqrt(np.einsum("ij,jk,ik->i", standardised, precision, standardised))
    optional = [p["name"] for p in predictors if not p.get("required", True)]
    observed = {name: float(development[name].notna().mean()) if name in development.columns else 0.0
                for name in optional}
    usual = [name for name, share in observed.items() if share >= USUALLY_OBSERVED_SHARE]
    counts = development.reindex(columns=usual).isna().sum(axis=1).to_numpy()
    min_imputed = MIN_IMPUTED_PREDICTORS
    while min_imputed <= len(usual) and np.mean(counts >= min_imputed) > IMPUTED_TRAINING_SHARE:
        min_imputed += 1
    return {
        "distance": DISTANCE,
        "columns": specs,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "precision": precision.tolist(),
        "distance_quantile": DISTANCE_QUANTILE,
        "distance_threshold": float(np.quantile(training, DISTANCE_QUANTILE)),
        "training_distance_median": float(np.median(training)),
        "observed_share": observed,
        "usually_observed_share": USUALLY_OBSERVED_SHARE,
        "min_imputed_predictors": int(min_imputed),
        "imputed_training_share": float(np.mean(counts >= min_imputed)) if len(counts) else 0.0,
    }


def distances(reference: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Each patient's distance from the training patients (the reference's Mahalanobis distance)."""
    return _distance(reference, encode(frame, reference["columns"]))


def encoded_columns(reference: dict[str, Any], encoding: Any) -> np.ndarray:
    """(encoding width x reference columns): the reference's columns as a linear map of a
    `risk_model.preprocessing.PatientEncoding` (a category's indicator plus the fill where missing; a number plus
    the fill where missing), so serving computes them with one product."""
    columns = np.zeros((encoding.width, len(reference["columns"])))
    for j, spec in enumerate(reference["columns"]):
        start, missing = encoding.slots[spec["source"]]
        if spec["kind"] == "category":
            columns[start + encoding.categories[spec["source"]].index(spec["category"]), j] = 1.0
            columns[missing, j] = 1.0 if spec["fill"] == spec["category"] else 0.0
        else:
            columns[start, j], columns[missing, j] = 1.0, float(spec["fill"])
    return columns


def _distance(reference: dict[str, Any], matrix: np.ndarray) -> np.ndarray:
    standardised = (matrix - np.asarray(reference["mean"])) / np.asarray(reference["scale"])
    precision = np.asarray(reference["precision"])
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", standardised, precision, standardised), 0.0))


def imputed_predictors(reference: dict[str, Any], patient: dict[str, Any]) -> list[str]:
    """Optional predictors missing for this patient that most training patients had."""
    usual = reference["usually_observed_share"]
    return [name for name, share in reference["observed_share"].items()
            if share >= usual and _missing(patient.get(name))]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def combination_warnings(reference: dict[str, Any], patients_table: pd.DataFrame | np.ndarray,
                         patients: list[dict[str, Any]]) -> list[list[Warning_]]:
    """`far_from_training_data` and `many_imputed_predictors` for each patient: `patients_table` is their frame,
    or their matrix in the reference's columns already (serving: `ModelBundle.ood_columns`)."""
    if not reference:
        return [[] for _ in patients]
    if isinstance(patients_table, pd.DataFrame):
        patients_table = encode(patients_table, reference["columns"])
    far = _distance(reference, patients_table)
    threshold = reference["distance_threshold"]
    quantile = 100 * reference["distance_quantile"]
    result = []
    for distance, patient in zip(far, patients, strict=True):
        warnings = []
        if distance > threshold:
            warnings.append(Warning_(code="far_from_training_data", field=None,
                                     message=f"this combination of values lies far from the training patients "
                                             f"(distance {distance:.1f}; {quantile:g} % of training patients lie "
                                             f"within {threshold:.1f}); the estimate extrapolates"))
        imputed = imputed_predictors(reference, patient)
        if len(imputed) >= reference["min_imputed_predictors"]:
            warnings.append(Warning_(code="many_imputed_predictors", field=None,
                                     message=f"{len(imputed)} predictors that most training patients had were not "
                                             f"given ({', '.join(imputed)}); the estimate stands in typical values "
                                             "for them"))
        result.append(warnings)
    return result
