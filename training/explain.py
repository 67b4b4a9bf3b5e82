"""Explanation background (synthetic patients that reproduce the cohort, no patient rows), training summary, and
the per-run explanation plots (beeswarm, mean-|contribution| bar chart and table, dependence plots) of every
endpoint and horizon."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from features.task_schema import CrossFieldRule, Predictor, TaskSchema
from risk_model.bundle import ModelBundle
from risk_model.preprocessing import Preprocessor
from risk_model.wording import endpoint_title
from training.figures import pyplot, save_figure
from training.parallel import parallel_map

MAX_BACKGROUND_ROWS = 50
MIN_CLUSTER_SIZE = 10  # fewest training patients a background row, and each of its numbers, may stand for
NUMBER_BINS = 4  # a number's quartile bin joins the joint fit, so its spread and its non-linear links are kept
CALIBRATION_STRENGTH = 1e3  # how much the cohort's shares and means weigh against keeping row weights equal
SWAPS_PER_ROW = 20  # bound on the joint fit's swaps (it usually stops well before)
CANDIDATE_SWAPS = 32  # best swaps whose rules are checked, in order, before the fit stops
MISSING = "missing"


@dataclass
class Background:
    """Synthetic patients that stand for the training cohort (no patient's own row)."""

    rows: list[dict[str, Any]]
    weights: list[float]  # patients each row stands for: whole numbers adding up to the cohort size
    patients: list[int]  # per row, the fewest training patients behind its weight or any of its numbers


def build_background(frame: pd.DataFrame, schema: TaskSchema, seed: int = 0, bundle: ModelBundle | None = None
                     ) -> tuple[list[dict[str, Any]], list[float]]:
    """The explanation background's rows and weights (see `cohort_background`)."""
    background = cohort_background(frame, schema, seed, bundle)
    return background.rows, background.weights


def cohort_background(frame: pd.DataFrame, schema: TaskSchema, seed: int = 0, bundle: ModelBundle | None = None
                      ) -> Background:
    """At most 50 weighted synthetic patients whose shares, means and two-way tables are the cohort's, and, given
    the bundle, whose weighted mean prediction of every endpoint at every explained horizon is the cohort's.

    Summaries of clusters shrink minority categories and the spread of numbers, so their mean prediction is not
    the cohort's. Here each of the k rows starts from a k-means cluster, but takes its values from the cohort's
    own distribution: each category's levels (missing included) go to as many rows as its share asks, to the
    clusters that hold most of them; each number's sorted values are cut into slices of at least 10 patients
    whose means go to the rows in the order of their clusters' means. Swapping one predictor's value between two
    rows keeps all that; swaps are taken while they bring the rows' two-way tables (levels, missingness and
    quartile bins) closer to the cohort's, without breaking a cross-field rule. Last, whole-patient weights of at
    least 10, as equal as possible, make every share and mean the cohort's, and the mean predictions too (50
    points cannot hold every interaction a boosted model uses; without this step they land within about half a
    point). The base value of an explanation is then the cohort's mean prediction.
    """
    if len(frame) < MIN_CLUSTER_SIZE:
        raise ValueError(f"the explanation background needs at least {MIN_CLUSTER_SIZE} training patients")
    derived = {name for name, _ in schema.derived_predictors}
    predictors = [p for p in schema.predictors if p.name not in derived]
    rules = [r for r in schema.cross_field_rules if set(r.columns) <= {p.name for p in predictors}]
    k = max(1, min(MAX_BACKGROUND_ROWS, len(frame) // (2 * MIN_CLUSTER_SIZE)))
    labels = _clusters(frame, schema, k, seed)
    rows, smallest_slice = _placed_rows(frame, schema, predictors, labels, k, rules)
    fit = _JointFit(_Coding.fit(frame, predictors, NUMBER_BINS), frame, rows, rules)
    fit.repair()
    fit.improve(SWAPS_PER_ROW * k)
    rows = schema.add_derived(fit.rows.drop(columns=list(derived)))
    # No reliable horizon (a small stratum followed briefly): nothing to calibrate the predictions at.
    explained = bundle is not None and explained_horizons(bundle)
    predictions = _explained_predictions(bundle, frame, rows) if explained else None
    weights = _calibrated_weights(_Coding.fit(frame, list(schema.predictors), 0), frame, rows, predictions)
    patients = [min([int(weight), *(n for name, n in smallest_slice.items() if pd.notna(row[name]))])
                for weight, (_, row) in zip(weights, rows.iterrows(), strict=True)]
    return Background(_records(rows, schema), [float(w) for w in weights], patients)


def _clusters(frame: pd.DataFrame, schema: TaskSchema, k: int, seed: int) -> np.ndarray:
    """k-means labels on the standardised model matrix: where each row starts in the cohort."""
    from sklearn.cluster import KMeans

    if k == 1:
        return np.zeros(len(frame), dtype=int)
    matrix = Preprocessor(impute=True).fit(frame, schema).transform(frame)
    spread = matrix.std(axis=0)
    scaled = (matrix - matrix.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(scaled)


def _placed_rows(frame: pd.DataFrame, schema: TaskSchema, predictors: list[Predictor], labels: np.ndarray, k: int,
                 rules: list[CrossFieldRule]) -> tuple[pd.DataFrame, dict[str, int]]:
    """k rows whose values follow the cohort's distribution, each near its cluster; and per number the fewest
    patients averaged into one of its values."""
    rows = pd.DataFrame({p.name: pd.Series([None] * k, dtype=object if p.kind == "category" else float)
                         for p in schema.predictors})
    smallest_slice = {}
    for p in predictors:
        own_rules = [r for r in rules if p.name in r.columns]
        if p.kind == "number":
            smallest_slice[p.name] = _place_number(frame[p.name], p, labels, rows, own_rules)
        else:
            _place_levels(frame[p.name], p, labels, rows, own_rules)
    return rows, smallest_slice


def _place_levels(values: pd.Series, p: Predictor, labels: np.ndarray, rows: pd.DataFrame,
                  rules: list[CrossFieldRule]) -> None:
    """Each level (missing included) to as many rows as its share asks, rarest first, to the rows whose clusters
    hold most of it and where no rule forbids it; the commonest level takes the rest."""
    keys = pd.Series(_level_keys(values), index=values.index)
    shares = keys.value_counts(normalize=True).sort_values(kind="stable")
    wanted = _largest_remainder(shares.to_numpy(), len(rows))
    held = pd.crosstab(labels, keys.to_numpy(), normalize="index").reindex(
        index=range(len(rows)), columns=shares.index, fill_value=0.0)
    chosen = np.full(len(rows), None, dtype=object)
    for level, count in zip(shares.index[:-1], wanted[:-1], strict=True):
        allowed = _allowed(rows, p.name, _level_value(level), rules)
        order = [r for r in np.argsort(-held[level].to_numpy(), kind="stable") if chosen[r] is None and allowed[r]]
        chosen[order[:count]] = level
    chosen[[c is None for c in chosen]] = shares.index[-1]
    rows[p.name] = pd.Series([_level_value(c) for c in chosen], dtype=rows[p.name].dtype)


def _place_number(values: pd.Series, p: Predictor, labels: np.ndarray, rows: pd.DataFrame,
                  rules: list[CrossFieldRule]) -> int:
    """The observed values, sorted and cut into slices of at least MIN_CLUSTER_SIZE patients (as many as the
    observed share of the rows), their means to the rows in the order of their clusters' means; other rows stay
    missing. Returns the patients in the smallest slice."""
    k, x = len(rows), values.to_numpy(dtype=float)
    seen = ~np.isnan(x)
    n_seen = min(int(round(seen.mean() * k)), int(seen.sum()) // MIN_CLUSTER_SIZE)
    if n_seen == 0:
        return 0
    share_seen = pd.Series(seen).groupby(labels).mean().reindex(range(k), fill_value=0.0).to_numpy()
    allowed = _allowed(rows, p.name, float(np.median(x[seen])), rules)
    order = np.lexsort((-share_seen, ~allowed))[:n_seen]
    centre = pd.Series(x).groupby(labels).mean().reindex(range(k)).to_numpy()
    order = order[np.argsort(np.where(np.isnan(centre[order]), np.nanmean(x), centre[order]), kind="stable")]
    slices = np.array_split(np.sort(x[seen]), n_seen)
    low, high = p.minimum if p.minimum is not None else -np.inf, p.maximum if p.maximum is not None else np.inf
    # A whole-number predictor (a calendar year) keeps whole values, so every row stays a possible patient.
    rows.loc[order, p.name] = np.clip(np.round([s.mean() for s in slices], 0 if p.whole_number else 2), low, high)
    return min(len(s) for s in slices)


def _level_keys(values: pd.Series) -> list[Any]:
    """A patient's level: the category, 0.0/1.0 for a flag, or MISSING."""
    return [MISSING if pd.isna(v) else v for v in values.to_numpy(dtype=object)]


def _level_value(level: Any) -> Any:
    return None if level == MISSING else level


def _largest_remainder(shares: np.ndarray, k: int) -> np.ndarray:
    """Whole counts adding up to k, each share x k rounded up or down (largest remainders up)."""
    raw = shares * k
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: k - counts.sum()]] += 1
    return counts


def _allowed(rows: pd.DataFrame, name: str, value: Any, rules: list[CrossFieldRule]) -> np.ndarray:
    """Per row, whether it could take this value without breaking a rule (given what is placed so far)."""
    trial = rows.copy()
    trial[name] = pd.Series([value] * len(rows), dtype=rows[name].dtype)
    return _holds(trial, rules)


def _holds(rows: pd.DataFrame, rules: list[CrossFieldRule]) -> np.ndarray:
    ok = np.ones(len(rows), dtype=bool)
    for rule in rules:
        ok &= rule.holds(rows.reset_index(drop=True)).fillna(True).to_numpy(dtype=bool)
    return ok


@dataclass
class _Coding:
    """Columns for fitting the background: one per level of a category or flag (missing included); per number
    its value (the cohort mean when missing), whether it is missing and, with bins, its quantile bin. Their means
    are the shares and means; their cross-products are the two-way tables."""

    predictors: list[Predictor]
    edges: dict[str, np.ndarray]
    levels: dict[str, list[Any]]
    fill: dict[str, float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, predictors: list[Predictor], bins: int) -> _Coding:
        edges, levels, fill = {}, {}, {}
        for p in predictors:
            x = frame[p.name]
            if p.kind == "number":
                seen = x.dropna().to_numpy(dtype=float)
                fill[p.name] = float(seen.mean()) if len(seen) else 0.0
                quantiles = np.linspace(0, 1, bins + 1)[1:-1]
                edges[p.name] = np.quantile(seen, quantiles) if len(seen) and bins else np.array([])
            else:
                levels[p.name] = [*(list(p.categories) if p.kind == "category" else [0.0, 1.0]), MISSING]
        return cls(predictors, edges, levels, fill)

    def blocks(self) -> dict[str, np.ndarray]:
        """The columns of each predictor, in `columns` order."""
        out, start = {}, 0
        for p in self.predictors:
            width = self._width(p)
            out[p.name], start = np.arange(start, start + width), start + width
        return out

    def _width(self, p: Predictor) -> int:
        if p.kind != "number":
            return len(self.levels[p.name])
        edges = len(self.edges[p.name])
        return 2 + (edges + 1 if edges else 0)

    def columns(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        for p in self.predictors:
            if p.kind == "number":
                x = pd.to_numeric(frame[p.name], errors="coerce").to_numpy(dtype=float)
                parts += [np.where(np.isnan(x), self.fill[p.name], x)[:, None], np.isnan(x)[:, None]]
                if len(self.edges[p.name]):
                    where = np.searchsorted(self.edges[p.name], x, side="right")
                    bins = np.arange(len(self.edges[p.name]) + 1)
                    parts.append((where[:, None] == bins[None, :]) & ~np.isnan(x)[:, None])
            else:
                keys = np.array(_level_keys(frame[p.name]), dtype=object)
                parts.append(np.column_stack([keys == level for level in self.levels[p.name]]))
        return np.column_stack(parts).astype(float)


class _JointFit:
    """Swaps of one predictor's value between two equally weighted rows keep every share and mean; the fit takes
    the swaps that bring the rows' cross-products of standardised columns closest to the cohort's (loss: squared
    Frobenius distance), never breaking a cross-field rule."""

    def __init__(self, coding: _Coding, frame: pd.DataFrame, rows: pd.DataFrame, rules: list[CrossFieldRule]):
        cohort = coding.columns(frame)
        self.coding, self.rows, self.rules, self.blocks = coding, rows.copy(), rules, coding.blocks()
        self.centre = cohort.mean(axis=0)
        spread = cohort.std(axis=0)
        self.scale = np.where(spread > 1e-12, 1.0 / np.where(spread > 1e-12, spread, 1.0), 0.0)
        standard = (cohort - self.centre) * self.scale
        self.target = standard.T @ standard / len(standard)
        self._restandardise()

    def _restandardise(self) -> None:
        self.z = (self.coding.columns(self.rows) - self.centre) * self.scale
        self._update()

    def _update(self) -> None:
        self.gap = self.z.T @ self.z / len(self.z) - self.target
        self.through_gap = self.z @ self.gap
        self.distance2 = ((self.z[:, None, :] - self.z[None, :, :]) ** 2).sum(axis=2)

    def loss_changes(self, name: str) -> np.ndarray:
        """(rows x rows) change of the loss if rows r and s swapped this predictor's value.

        With u = z_r - z_s split into a (this predictor's columns) and b (the rest), the swap changes the
        cross-product matrix by -(b a' + a b') / k, so the loss changes by -4 a'Gb / k + 2 |a|^2 |b|^2 / k^2."""
        k, block, through = len(self.z), self.blocks[name], self.through_gap
        a = self.z[:, None, block] - self.z[None, :, block]
        a_gap_u = np.einsum("rsi,rsi->rs", a, through[:, None, block] - through[None, :, block])
        a_gap_a = np.einsum("rsi,ij,rsj->rs", a, self.gap[np.ix_(block, block)], a)
        a2 = (a ** 2).sum(axis=2)
        b2 = self.distance2 - a2
        return -4.0 / k * (a_gap_u - a_gap_a) + 2.0 / k ** 2 * a2 * b2

    def swap(self, name: str, r: int, s: int) -> None:
        column = self.rows.columns.get_loc(name)
        self.rows.iloc[[r, s], column] = self.rows.iloc[[s, r], column].to_numpy()
        block = self.blocks[name]  # a predictor's columns depend on its value only: they swap with it
        self.z[np.ix_([r, s], block)] = self.z[np.ix_([s, r], block)]
        self._update()

    def improve(self, max_swaps: int) -> None:
        """Take the swap that lowers the loss most and breaks no rule, until none lowers it."""
        names = [p.name for p in self.coding.predictors]
        upper = np.triu(np.ones((len(self.z), len(self.z)), dtype=bool), k=1)  # a swap (r, s) is the swap (s, r)
        for _ in range(max_swaps):
            changes = np.stack([np.where(upper, self.loss_changes(name), np.inf) for name in names])
            for flat in np.argsort(changes, axis=None)[:CANDIDATE_SWAPS]:
                if changes.flat[flat] >= -1e-9:
                    return
                which, r, s = (int(i) for i in np.unravel_index(flat, changes.shape))
                if self._holds_after(names[which], r, s, only_own=True):
                    self.swap(names[which], r, s)
                    break
            else:
                return

    def repair(self) -> None:
        """Rows that break a cross-field rule (placement checks only what was placed before) swap a value of
        that rule with another row so that both hold, at the least loss; an optional value that cannot be
        swapped is left missing."""
        for _ in range(len(self.rows) * max(1, len(self.rules)) + 1):
            broken = np.flatnonzero(~_holds(self.rows, self.rules))
            if not len(broken):
                return
            r = int(broken[0])
            rule = next(rule for rule in self.rules if not _holds(self.rows.iloc[[r]], [rule]).all())
            if not (self._swap_to_fix(rule, r) or self._leave_missing(rule, r) or self._copy_to_fix(rule, r)):
                raise ValueError(f"no background row can satisfy the rule: {rule.name}")
        raise ValueError("the explanation background could not satisfy the cross-field rules")

    def _swap_to_fix(self, rule: CrossFieldRule, r: int) -> bool:
        options = sorted((float(change), name, s) for name in rule.columns
                         for s, change in enumerate(self.loss_changes(name)[r]) if s != r)
        for _, name, s in options:
            if self._holds_after(name, r, s, only_own=False):
                self.swap(name, r, s)
                return True
        return False

    def _leave_missing(self, rule: CrossFieldRule, r: int) -> bool:
        optional = [name for name in rule.columns if not self._predictor(name).required]
        if not optional:
            return False
        self.rows.loc[r, optional[0]] = None
        self._restandardise()
        return True

    def _copy_to_fix(self, rule: CrossFieldRule, r: int) -> bool:
        """Last resort when no swap fixes row r and the rule's columns are all required (lineage and genetic
        subgroup): take the rule's values from another background row (a summary, never a patient) that keeps
        every rule in row r; the shares move by one row's weight."""
        columns = list(rule.columns)
        for s in np.argsort(self.loss_changes(columns[0])[r]):
            candidate = self.rows.iloc[[r]].copy()
            candidate[columns] = self.rows.iloc[[int(s)]][columns].to_numpy()
            if int(s) != r and _holds(candidate, self.rules).all():
                self.rows.iloc[r, [self.rows.columns.get_loc(c) for c in columns]] = candidate[columns].to_numpy()[0]
                self._restandardise()
                return True
        return False

    def _holds_after(self, name: str, r: int, s: int, only_own: bool) -> bool:
        """Whether rows r and s satisfy the rules (only those on this predictor, or all) after the swap."""
        rules = [rule for rule in self.rules if name in rule.columns] if only_own else self.rules
        if not rules:
            return True
        pair = self.rows.iloc[[r, s]].copy()
        pair[name] = pair[name].to_numpy()[::-1]
        return bool(_holds(pair, rules).all())

    def _predictor(self, name: str) -> Predictor:
        return next(p for p in self.coding.predictors if p.name == name)


def _calibrated_weights(coding: _Coding, frame: pd.DataFrame, rows: pd.DataFrame,
                        predictions: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Whole-patient weights of at least MIN_CLUSTER_SIZE, adding up to the cohort size, as equal as they can be
    while the rows' weighted shares and means (and, given the model's predictions for the cohort and the rows,
    its mean predictions) are the cohort's: a bounded calibration, as survey weights are calibrated to known
    totals."""
    k, n = len(rows), len(frame)
    standard = _standardised(coding.columns(frame), coding.columns(rows))
    if predictions is not None:
        standard = np.hstack([standard, _standardised(*predictions)])
    root = np.sqrt(CALIBRATION_STRENGTH)
    equal = np.full(k, 1.0 / k)
    design = np.vstack([np.diag(1.0 / np.sqrt(equal)), root * standard.T, root * np.ones((1, k))])
    target = np.concatenate([np.sqrt(equal), np.zeros(standard.shape[1]), [root]])
    share = lsq_linear(design, target, bounds=(MIN_CLUSTER_SIZE / n, np.inf), method="bvls").x
    # Whole patients: MIN_CLUSTER_SIZE each, the rest shared in proportion to what each row holds above it.
    above = np.clip(share / share.sum() * n - MIN_CLUSTER_SIZE, 0.0, None)
    above = above / above.sum() if above.sum() > 0 else np.full(k, 1.0 / k)
    return (MIN_CLUSTER_SIZE + _largest_remainder(above, n - k * MIN_CLUSTER_SIZE)).astype(float)


def _standardised(cohort: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows' columns centred on the cohort's means, in the cohort's standard deviations (constant columns
    dropped)."""
    spread = cohort.std(axis=0)
    keep = spread > 1e-12
    return (rows[:, keep] - cohort.mean(axis=0)[keep]) / spread[keep]


def _explained_predictions(bundle: ModelBundle, frame: pd.DataFrame, rows: pd.DataFrame
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The model's probability of every endpoint at every explained horizon, for the cohort and for the rows."""
    months = np.asarray(explained_horizons(bundle), dtype=float)

    def predicted(patients: pd.DataFrame) -> np.ndarray:
        return np.hstack(list(bundle.endpoint_probabilities(patients, months).values()))

    return predicted(frame), predicted(rows)


def _records(rows: pd.DataFrame, schema: TaskSchema) -> list[dict[str, Any]]:
    """Plain rows as a request would send them: flags as booleans, missing as None."""
    records = []
    for _, row in rows.iterrows():
        record = {}
        for p in schema.predictors:
            value = row[p.name]
            if pd.isna(value):
                record[p.name] = None
            elif p.kind == "boolean":
                record[p.name] = bool(value)
            else:
                record[p.name] = float(value) if p.kind == "number" else str(value)
        records.append(record)
    return records


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


def explanation_title(words: str, horizon: float, what: str) -> str:
    """E.g. "Overall survival at 12 months: mean |contribution| per predictor" and the units on a second line;
    `words` is the endpoint's title from the task spec, as the bundle carries it."""
    return f"{words} at {horizon:g} months: {what}\n(contributions in {POINTS})"


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
    words: str  # the endpoint's title in the task spec, e.g. "Relapse incidence"

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.predictors]

    @property
    def predicted(self) -> np.ndarray:
        """Each patient's predicted probability, %."""
        return self.base + self.points.sum(axis=1)

    def title(self, what: str) -> str:
        return explanation_title(self.words, self.horizon, what)

    def table(self) -> pd.DataFrame:
        """Mean |contribution| per predictor, largest first (rank 1), in percentage points."""
        mean_abs = np.abs(self.points).mean(axis=0)
        order = np.argsort(-mean_abs, kind="stable")
        return pd.DataFrame({
            "endpoint": self.endpoint, "horizon_months": self.horizon, "rank": np.arange(1, len(order) + 1),
            "predictor": [self.names[i] for i in order], "unit": [self.predictors[i].get("unit") for i in order],
            "mean_abs_contribution_pp": mean_abs[order].round(4),
            "mean_contribution_pp": self.points.mean(axis=0)[order].round(4), "n_patients": len(self.points)})


def explanation_plots(bundle: ModelBundle, frame: pd.DataFrame, folder: Path, main_horizon_only: bool = False
                      ) -> list[Path]:
    """Per endpoint and reliable horizon (the main one only with `main_horizon_only`, when reliable): beeswarm,
    mean-|contribution| bar chart and table, and dependence plots of the leading predictors, under
    `folder/<endpoint>/<h>m_*`; all tables together in `folder/mean_abs_contribution.csv`. Returns the files
    written."""
    patients = explanation_sample(frame)
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Contributions read the bundle's own model only, so its bootstrap replicates stay behind (they would be sent
    # to the workers and evaluated for nothing).
    own = copy.copy(bundle)
    own.replicates, own._ensemble_cache = [], None
    horizons = [h for h in explained_horizons(bundle) if not main_horizon_only or h == bundle.main_horizon_months]
    if not horizons:
        return []
    # The workers compute each endpoint's contributions at all its horizons in one pass, then draw each
    # (endpoint, horizon)'s table and figures as a task of its own.
    explained = [one for of_endpoint in parallel_map(partial(_contributions, own, patients, horizons),
                                                     list(bundle.endpoint_kinds.items())) for one in of_endpoint]
    written, tables = [], []
    for table, files in parallel_map(partial(_table_and_plots, Path(folder)), explained):
        tables.append(table)
        written += files
    written.append(Path(folder) / "mean_abs_contribution.csv")
    pd.concat(tables, ignore_index=True).to_csv(written[-1], index=False)
    return written


def _contributions(bundle: ModelBundle, patients: pd.DataFrame, horizons: list[int], endpoint_kind: tuple[str, str]
                   ) -> list[Explained]:
    """One endpoint's contributions at each horizon."""
    endpoint, kind = endpoint_kind
    values, bases = bundle.contributions_at(patients, horizons, endpoint)
    return [Explained(endpoint, kind, horizon, 100 * points, 100 * base, patients, bundle.schema["predictors"],
                      bundle.family, endpoint_title(bundle.schema, endpoint))
            for horizon, points, base in zip(horizons, values, bases, strict=True)]


def _table_and_plots(folder: Path, explained: Explained) -> tuple[pd.DataFrame, list[Path]]:
    table = explained.table()
    return table, _plots_of(explained, table, folder / explained.endpoint)


def _plots_of(explained: Explained, table: pd.DataFrame, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{explained.horizon:g}m"
    table.to_csv(folder / f"{stem}_mean_abs_contribution.csv", index=False)
    written = [folder / f"{stem}_mean_abs_contribution.csv", _beeswarm(explained, folder / f"{stem}_beeswarm.png"),
               _bar(explained, table, folder / f"{stem}_bar.png")]
    for name in table["predictor"].iloc[:LEADING_PREDICTORS]:
        written.append(_dependence(explained, name, folder / f"{stem}_dependence_{name}.png"))
    return written


def _display_name(predictor: dict[str, Any]) -> str:
    return f"{predictor['name']} ({predictor['unit']})" if predictor.get("unit") else predictor["name"]


def _save(fig: Any, path: Path) -> Path:
    return save_figure(fig, path, dpi=110)


def _beeswarm(explained: Explained, path: Path) -> Path:
    import shap

    plt = pyplot()
    data = np.column_stack([_colour_value(explained.patients[n]) for n in explained.names])
    explanation = shap.Explanation(values=explained.points, base_values=np.full(len(data), explained.base),
                                   data=data, feature_names=[_display_name(p) for p in explained.predictors])
    plt.figure()
    # shap jitters the dots with NumPy's global generator: seeded here, the same run draws the same figure.
    state = np.random.get_state()
    np.random.seed(EXPLANATION_SEED)
    try:
        with warnings.catch_warnings():  # a predictor missing for every plotted patient has no colour scale
            warnings.simplefilter("ignore", RuntimeWarning)
            shap.plots.beeswarm(explanation, show=False, max_display=len(explained.names))
    finally:
        np.random.set_state(state)
    plt.title(explained.title("contribution per patient") +
              f"\nbackground mean {explained.base:.1f} %, {len(data)} patients, {explained.family}", fontsize=10)
    plt.xlabel(f"contribution ({POINTS})")
    return _save(plt.gcf(), path)


def _bar(explained: Explained, table: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
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
    plt = pyplot()
    predictor = explained.predictors[explained.names.index(name)]
    values, points = explained.patients[name], explained.points[:, explained.names.index(name)]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if predictor["kind"] == "number":
        dots = _numeric_dependence(ax, values, points, explained.predicted)
    else:
        dots = _category_dependence(ax, _category_labels(values, predictor), points, explained.predicted)
    fig.colorbar(dots, ax=ax).set_label(f"{explained.words} "
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
