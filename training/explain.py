"""Explanation background (cluster summaries, no patient rows) and the explanation and calibration plots."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from training.bundle import ModelBundle
from training.preprocessing import Preprocessor

MAX_BACKGROUND_ROWS = 50
MIN_CLUSTER_SIZE = 10


def build_background(frame: pd.DataFrame, schema: TaskSchema, seed: int = 0
                     ) -> tuple[list[dict[str, Any]], list[float]]:
    """k-means clusters of training patients, each summarised as one possible patient, weighted by size.

    Numbers take the cluster median, categories and flags the cluster mode, and an optional predictor stays
    missing where most of the cluster lacks it. Every cluster holds at least 10 patients, so no row is a person.
    """
    from sklearn.cluster import KMeans

    matrix = Preprocessor(impute=True).fit(frame, schema).transform(frame)
    scaled = (matrix - matrix.mean(axis=0)) / np.where(matrix.std(axis=0) > 0, matrix.std(axis=0), 1.0)
    k = max(1, min(MAX_BACKGROUND_ROWS, len(frame) // (2 * MIN_CLUSTER_SIZE)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(scaled)
    labels = _merge_small_clusters(scaled, labels)
    records, weights = [], []
    for label in np.unique(labels):
        members = frame.iloc[np.flatnonzero(labels == label)]
        records.append({p.name: _summarise(members[p.name], p.kind) for p in schema.predictors})
        weights.append(float(len(members)))
    return records, weights


def _merge_small_clusters(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = labels.copy()
    while True:
        sizes = pd.Series(labels).value_counts()
        small = sizes[sizes < MIN_CLUSTER_SIZE]
        if small.empty or len(sizes) == 1:
            return labels
        smallest = small.idxmin()
        others = [c for c in sizes.index if c != smallest]
        centres = np.array([points[labels == c].mean(axis=0) for c in others])
        centre = points[labels == smallest].mean(axis=0)
        labels[labels == smallest] = others[int(np.argmin(((centres - centre) ** 2).sum(axis=1)))]


def _summarise(values: pd.Series, kind: str) -> Any:
    observed = values.dropna()
    if len(observed) < 0.5 * len(values):
        return None
    if kind == "number":
        return float(np.round(observed.median(), 2))
    mode = observed.mode().iloc[0]
    return bool(mode) if kind == "boolean" else str(mode)


def training_summary(frame: pd.DataFrame, schema: TaskSchema) -> dict[str, Any]:
    """Ranges and category shares of the training data, for out-of-distribution warnings."""
    summary: dict[str, Any] = {}
    for p in schema.predictors:
        values = frame[p.name].dropna()
        if p.kind == "number":
            summary[p.name] = {"kind": "number", "min": float(values.min()), "max": float(values.max())}
        elif p.kind == "category":
            shares = values.astype(str).value_counts(normalize=True)
            summary[p.name] = {"kind": "category", "shares": {str(k): float(v) for k, v in shares.items()}}
    return summary


def contribution_summary_plot(bundle: ModelBundle, frame: pd.DataFrame, horizon: int, path: Path) -> Path:
    """SHAP beeswarm of contributions to relapse risk at `horizon`, in percentage points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    frame = frame.sample(n=min(len(frame), 400), random_state=0) if len(frame) > 400 else frame
    values, base = bundle.contributions(frame, horizon)
    names = bundle.feature_names
    by_feature = np.column_stack([_colour_value(frame[n]) for n in names])
    explanation = shap.Explanation(values=100 * values, base_values=np.full(len(frame), 100 * base),
                                   data=by_feature, feature_names=names)
    plt.figure()
    with warnings.catch_warnings():  # a predictor missing for every plotted patient has no colour scale
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.plots.beeswarm(explanation, show=False, max_display=len(names))
    plt.title(f"Contributions to relapse risk at {horizon} months (percentage points)\n"
              f"background mean {100 * base:.1f} %, {bundle.family}")
    plt.xlabel("contribution to relapse risk (percentage points)")
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close("all")
    return path


def _colour_value(values: pd.Series) -> np.ndarray:
    """A number per patient to colour the beeswarm: the value, or the category's code."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().any() or values.isna().all():
        return numeric.astype(float).to_numpy()
    return values.astype("category").cat.codes.replace(-1, np.nan).astype(float).to_numpy()
