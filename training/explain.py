"""Explanation background (cluster summaries, no patient rows), training summary, and the per-run explanation
plots (beeswarm, mean-|contribution| bar chart and table, dependence plots) of every endpoint and horizon."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from risk_model.bundle import ModelBundle
from risk_model.preprocessing import Preprocessor

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


# --- per-run explanation plots: every endpoint, every reliable horizon -----------------------------------------

MAX_EXPLAINED_PATIENTS = 200  # contributions are computed once per (endpoint, horizon) on this many patients
EXPLANATION_SEED = 0
LEADING_PREDICTORS = 3  # dependence plots for this many predictors, by mean |contribution|
POINTS = "percentage points of probability"
ENDPOINT_WORDS = {
    "relapse": "Relapse incidence", "relapse_free": "Relapse-free survival", "nrm": "Non-relapse mortality",
    "os": "Overall survival", "lfs": "Leukaemia-free survival", "grfs": "GVHD-free, relapse-free survival",
    "relapse_or_death": "Incidence of relapse or death", "relapse_free_survival": "Relapse-free survival",
    "death_from_relapse": "Incidence of death from relapse",
    "death_from_other_causes": "Incidence of death from other causes",
}


def endpoint_words(endpoint: str, kind: str) -> str:
    """The endpoint in clinical words, e.g. "Relapse incidence", "Overall survival"."""
    if endpoint in ENDPOINT_WORDS:
        return ENDPOINT_WORDS[endpoint]
    words = endpoint.replace("_", " ")
    return f"Incidence of {words}" if kind == "incidence" else f"{words.capitalize()} (probability event-free)"


def explanation_title(endpoint: str, kind: str, horizon: float, what: str) -> str:
    """E.g. "Overall survival at 12 months: mean |contribution| per predictor" and the units on a second line."""
    return f"{endpoint_words(endpoint, kind)} at {horizon:g} months: {what}\n(contributions in {POINTS})"


def explained_horizons(bundle: ModelBundle) -> list[int]:
    """The bundle's horizons up to its last reliable month (later ones extrapolate the baseline; not explained)."""
    return [h for h in bundle.horizons_months if h <= bundle.last_reliable_month]


def explanation_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """At most MAX_EXPLAINED_PATIENTS patients, drawn with a fixed seed (the same patients for every plot)."""
    if len(frame) > MAX_EXPLAINED_PATIENTS:
        frame = frame.sample(n=MAX_EXPLAINED_PATIENTS, random_state=EXPLANATION_SEED)
    return frame.reset_index(drop=True)


@dataclass
class Explained:
    """Contributions to one endpoint at one horizon, for the sampled patients."""

    endpoint: str
    kind: str
    horizon: float
    points: np.ndarray  # percentage points, patients x predictors; each row adds up to predicted - base
    base: float  # weighted background mean probability, %
    patients: pd.DataFrame
    predictors: list[dict[str, Any]]
    family: str

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.predictors]

    @property
    def predicted(self) -> np.ndarray:
        """Each patient's predicted probability, %."""
        return self.base + self.points.sum(axis=1)

    def title(self, what: str) -> str:
        return explanation_title(self.endpoint, self.kind, self.horizon, what)

    def table(self) -> pd.DataFrame:
        """Mean |contribution| per predictor, largest first (rank 1), in percentage points."""
        mean_abs = np.abs(self.points).mean(axis=0)
        order = np.argsort(-mean_abs, kind="stable")
        return pd.DataFrame({
            "endpoint": self.endpoint, "horizon_months": self.horizon, "rank": np.arange(1, len(order) + 1),
            "predictor": [self.names[i] for i in order], "unit": [self.predictors[i].get("unit") for i in order],
            "mean_abs_contribution_pp": mean_abs[order].round(4),
            "mean_contribution_pp": self.points.mean(axis=0)[order].round(4), "n_patients": len(self.points)})


def explanation_plots(bundle: ModelBundle, frame: pd.DataFrame, folder: Path) -> list[Path]:
    """Per endpoint and reliable horizon: beeswarm, mean-|contribution| bar chart and table, and dependence plots
    of the leading predictors, under `folder/<endpoint>/<h>m_*`; all tables together in
    `folder/mean_abs_contribution.csv`. Returns the files written."""
    patients = explanation_sample(frame)
    Path(folder).mkdir(parents=True, exist_ok=True)
    written, tables = [], []
    for endpoint, kind in bundle.endpoint_kinds.items():
        for horizon in explained_horizons(bundle):
            values, base = bundle.contributions(patients, horizon, endpoint)
            explained = Explained(endpoint, kind, horizon, 100 * values, 100 * base, patients,
                                  bundle.schema["predictors"], bundle.family)
            tables.append(explained.table())
            written += _plots_of(explained, tables[-1], Path(folder) / endpoint)
    if tables:
        written.append(Path(folder) / "mean_abs_contribution.csv")
        pd.concat(tables, ignore_index=True).to_csv(written[-1], index=False)
    return written


def _plots_of(explained: Explained, table: pd.DataFrame, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{explained.horizon:g}m"
    table.to_csv(folder / f"{stem}_mean_abs_contribution.csv", index=False)
    written = [folder / f"{stem}_mean_abs_contribution.csv", _beeswarm(explained, folder / f"{stem}_beeswarm.png"),
               _bar(explained, table, folder / f"{stem}_bar.png")]
    for name in table["predictor"].iloc[:LEADING_PREDICTORS]:
        written.append(_dependence(explained, name, folder / f"{stem}_dependence_{name}.png"))
    return written


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _display_name(predictor: dict[str, Any]) -> str:
    return f"{predictor['name']} ({predictor['unit']})" if predictor.get("unit") else predictor["name"]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _beeswarm(explained: Explained, path: Path) -> Path:
    import shap

    plt = _pyplot()
    data = np.column_stack([_colour_value(explained.patients[n]) for n in explained.names])
    explanation = shap.Explanation(values=explained.points, base_values=np.full(len(data), explained.base),
                                   data=data, feature_names=[_display_name(p) for p in explained.predictors])
    plt.figure()
    with warnings.catch_warnings():  # a predictor missing for every plotted patient has no colour scale
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.plots.beeswarm(explanation, show=False, max_display=len(explained.names))
    plt.title(explained.title("contribution per patient") +
              f"\nbackground mean {explained.base:.1f} %, {len(data)} patients, {explained.family}", fontsize=10)
    plt.xlabel(f"contribution ({POINTS})")
    return _save(plt.gcf(), path)


def _bar(explained: Explained, table: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    units = dict(zip(explained.names, (_display_name(p) for p in explained.predictors), strict=True))
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.32 * len(table)))
    ax.barh([units[n] for n in table["predictor"]][::-1], table["mean_abs_contribution_pp"][::-1],
            color="tab:blue")
    for y, value in enumerate(table["mean_abs_contribution_pp"][::-1]):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel(f"mean |contribution| ({POINTS})")
    ax.set_title(explained.title("mean |contribution| per predictor") +
                 f"\n{len(explained.points)} patients, {explained.family}", fontsize=10)
    ax.margins(x=0.12)
    return _save(fig, path)


def _dependence(explained: Explained, name: str, path: Path) -> Path:
    """Contribution against the predictor's value, coloured by the patient's predicted probability."""
    plt = _pyplot()
    predictor = explained.predictors[explained.names.index(name)]
    values, points = explained.patients[name], explained.points[:, explained.names.index(name)]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if predictor["kind"] == "number":
        dots = _numeric_dependence(ax, values, points, explained.predicted)
    else:
        dots = _category_dependence(ax, _category_labels(values, predictor), points, explained.predicted)
    fig.colorbar(dots, ax=ax).set_label(f"{endpoint_words(explained.endpoint, explained.kind)} "
                                        f"at {explained.horizon:g} months, predicted (%)")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(_display_name(predictor))
    ax.set_ylabel(f"contribution ({POINTS})")
    ax.set_title(explained.title(f"dependence on {name}"), fontsize=10)
    return _save(fig, path)


def _numeric_dependence(ax: Any, values: pd.Series, points: np.ndarray, colour: np.ndarray) -> Any:
    """A scatter of the observed values; patients missing the value sit in a grey strip left of the smallest."""
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    seen = ~np.isnan(numeric)
    dots = ax.scatter(numeric[seen], points[seen], c=colour[seen], cmap="viridis", s=14, alpha=0.8,
                      vmin=colour.min(), vmax=colour.max())
    if (~seen).any() and seen.any():
        low, high = numeric[seen].min(), numeric[seen].max()
        left = low - 0.12 * max(high - low, 1.0)
        jitter = np.random.default_rng(EXPLANATION_SEED).uniform(-0.02, 0.02, (~seen).sum()) * max(high - low, 1.0)
        ax.scatter(left + jitter, points[~seen], color="grey", marker="x", s=14, label=f"missing (n={(~seen).sum()})")
        ax.legend(loc="best", fontsize=8)
    return dots


def _category_dependence(ax: Any, labels: pd.Series, points: np.ndarray, colour: np.ndarray) -> Any:
    """A box per category (in schema order, then missing) with the patients jittered over it."""
    groups = [g for g in labels.cat.categories if (labels == g).any()]
    ax.boxplot([points[(labels == g).to_numpy()] for g in groups], positions=range(len(groups)), widths=0.5,
               showfliers=False)
    where = np.array([groups.index(g) for g in labels], dtype=float)
    jitter = np.random.default_rng(EXPLANATION_SEED).uniform(-0.18, 0.18, len(where))
    dots = ax.scatter(where + jitter, points, c=colour, cmap="viridis", s=12, alpha=0.7)
    ax.set_xticks(range(len(groups)), [f"{g}\n(n={(labels == g).sum()})" for g in groups])
    return dots


def _category_labels(values: pd.Series, predictor: dict[str, Any]) -> pd.Series:
    """Categories as text in schema order (flags as no/yes), missing as "missing"."""
    if predictor["kind"] == "boolean":
        text = pd.to_numeric(values, errors="coerce").map({0.0: "no", 1.0: "yes"})
        order = ["no", "yes"]
    else:
        text = values.astype(str).where(values.notna())
        order = [str(c) for c in predictor.get("categories") or []]
        order += sorted(set(text.dropna()) - set(order))
    return pd.Series(pd.Categorical(text.fillna("missing"), categories=[*order, "missing"]))


def _colour_value(values: pd.Series) -> np.ndarray:
    """A number per patient to colour the beeswarm: the value, or the category's code."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().any() or values.isna().all():
        return numeric.astype(float).to_numpy()
    return values.astype("category").cat.codes.replace(-1, np.nan).astype(float).to_numpy()
