"""Internal-external validation across centres (clarifications §5): the hyperparameters are tuned once on the
development centres, then each centre (or country) is left out in turn, both families are refitted on the
others with those settings (built exactly as the main fit), and judged on it.

Per left-out centre and endpoint: Uno's (or Wolbers') C, and O/E and calibration slope at each horizon with at
least 20 patients at risk there (otherwise NaN with the reason, left out of pooling). Pooled with a
DerSimonian-Laird random-effects model on the usual scales (logit C, log O/E, slope as is; Debray et al. 2017),
with I^2 and a 95 % prediction interval (Riley et al. 2011: t with k - 2 degrees of freedom). Tuning once on
the development centres lets them influence the hyperparameters used for their own left-out fits, so these
estimates are slightly optimistic; the run says so. Without 3 centres: repeated stratified K-fold, whose fold
estimates are averaged (folds are not populations, so no random-effects model), with a 95 % confidence interval
on the pooling scale from the fold standard errors (`fold_mean`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.tasks import EndpointTarget, Task
from risk_model.bundle import ModelBundle
from training.evaluate import (
    MIN_AT_RISK,
    at_risk,
    calibration,
    concordance_with_se,
    endpoint_prefix,
    endpoint_risks,
    subset_target,
    uno_tau,
)
from training.parallel import parallel_map
from training.splits import ValidationDesign, internal_external_folds

OPTIMISM_NOTE = ("hyperparameters were tuned once on the development centres and reused for every left-out fit "
                 "(no nested tuning), so these estimates are slightly optimistic")
POOLED_METRICS = ("uno_c", "cal_oe", "cal_slope")  # per horizon for the calibration ones

Refit = Callable[[str, pd.DataFrame], ModelBundle]


@dataclass
class ValidationResult:
    design: ValidationDesign
    per_cluster: pd.DataFrame  # family, endpoint, cluster, metric, horizon, estimate, se, n, events, skipped_reason
    pooled: pd.DataFrame  # family, endpoint, metric, horizon, estimate, lower, upper, pi_lower, pi_upper, i2, tau2, k
    # out-of-cluster predicted risks for every patient (first repeat under K-fold): family -> endpoint -> n x months
    risks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    months: list[int] = field(default_factory=list)
    seconds: float = 0.0
    note: str = OPTIMISM_NOTE

    def metric_name(self, endpoint: str, metric: str, horizon: float | None) -> str:
        base = f"{metric}_{int(horizon)}m" if horizon is not None and not np.isnan(horizon) else metric
        return f"{endpoint_prefix(endpoint)}{base}"

    def mlflow_metrics(self, family: str) -> dict[str, float]:
        """`pooled_<name>` with `_lower95`, `_upper95`, `_pi_lower95`, `_pi_upper95`, `_i2` (finite values only)."""
        metrics = {}
        for row in self.pooled[self.pooled["family"] == family].itertuples():
            name = "pooled_" + self.metric_name(row.endpoint, row.metric, row.horizon)
            for suffix, value in (("", row.estimate), ("_lower95", row.lower), ("_upper95", row.upper),
                                  ("_pi_lower95", row.pi_lower), ("_pi_upper95", row.pi_upper), ("_i2", row.i2)):
                if value is not None and np.isfinite(value):
                    metrics[name + suffix] = float(value)
        return metrics


# --- random-effects meta-analysis ---------------------------------------------------------------------------

_SCALES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "logit": (lambda p: np.log(p / (1 - p)), lambda x: 1 / (1 + np.exp(-x))),
    "log": (np.log, np.exp),
    "identity": (lambda x: x, lambda x: x),
}
METRIC_SCALE = {"uno_c": "logit", "cal_oe": "log", "cal_slope": "identity"}
Z95 = 1.959963984540054


def to_scale(metric: str, estimate: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and standard error on the pooling scale (delta method)."""
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    scale = METRIC_SCALE[metric]
    if scale == "logit":
        return np.log(estimate / (1 - estimate)), se / (estimate * (1 - estimate))
    if scale == "log":
        return np.log(estimate), se  # O/E carries the standard error of log(O/E) already
    return estimate, se


def random_effects(effect: np.ndarray, se: np.ndarray) -> dict[str, float]:
    """DerSimonian-Laird pooled effect with 95 % CI, I^2, tau^2 (both truncated at 0) and 95 % prediction
    interval (t with k - 2 degrees of freedom). statsmodels' `combine_effects(method_re="dl")` gives the same
    numbers when tau^2 > 0 but does not truncate a negative tau^2 (homogeneous centres), so it is computed here."""
    effect, se = np.asarray(effect, float), np.asarray(se, float)
    k = len(effect)
    empty = {"estimate": np.nan, "lower": np.nan, "upper": np.nan, "pi_lower": np.nan, "pi_upper": np.nan,
             "i2": np.nan, "tau2": np.nan, "k": k}
    if k == 0:
        return empty
    if k == 1:
        return {**empty, "estimate": float(effect[0]), "lower": float(effect[0] - Z95 * se[0]),
                "upper": float(effect[0] + Z95 * se[0])}
    w = 1.0 / se**2
    fixed = float(np.sum(w * effect) / w.sum())
    q = float(np.sum(w * (effect - fixed) ** 2))
    tau2 = max(0.0, (q - (k - 1)) / (w.sum() - np.sum(w**2) / w.sum()))
    w_re = 1.0 / (se**2 + tau2)
    mean = float(np.sum(w_re * effect) / w_re.sum())
    mean_se = float(np.sqrt(1.0 / w_re.sum()))
    pi_lower = pi_upper = np.nan
    if k >= 3:
        half = float(stats.t.ppf(0.975, k - 2) * np.sqrt(tau2 + mean_se**2))
        pi_lower, pi_upper = mean - half, mean + half
    return {"estimate": mean, "lower": mean - Z95 * mean_se, "upper": mean + Z95 * mean_se, "pi_lower": pi_lower,
            "pi_upper": pi_upper, "i2": max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0, "tau2": tau2, "k": k}


def pool(metric: str, estimates: np.ndarray, ses: np.ndarray) -> dict[str, float]:
    """Random-effects pooling of per-centre estimates on the metric's scale, back-transformed."""
    estimates, ses = np.asarray(estimates, float), np.asarray(ses, float)
    usable = np.isfinite(estimates) & np.isfinite(ses) & (ses > 0)
    if METRIC_SCALE[metric] == "logit":
        usable &= (estimates > 0) & (estimates < 1)
    elif METRIC_SCALE[metric] == "log":
        usable &= estimates > 0
    effect, se = to_scale(metric, estimates[usable], ses[usable])
    pooled = random_effects(effect, se)
    back = _SCALES[METRIC_SCALE[metric]][1]
    for key in ("estimate", "lower", "upper", "pi_lower", "pi_upper"):
        pooled[key] = float(back(np.float64(pooled[key]))) if np.isfinite(pooled[key]) else np.nan
    return pooled


# --- per-cluster metrics ------------------------------------------------------------------------------------

def cluster_metrics(target: EndpointTarget, risk: dict[int, np.ndarray], horizons: list[int], main: int
                    ) -> list[dict[str, Any]]:
    """C at the main horizon's risk and O/E and slope at each horizon, with standard errors or a skip reason."""
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    events = int(np.sum(code == target.event_of_interest))
    rows: list[dict[str, Any]] = []

    def add(metric: str, horizon: float, estimate: float, se: float, reason: str = "") -> None:
        rows.append({"metric": metric, "horizon": horizon, "estimate": estimate, "se": se, "n": len(time_),
                     "events": events, "skipped_reason": reason})

    if events == 0:
        add("uno_c", np.nan, np.nan, np.nan, "no events of this endpoint")
    else:
        c, se = concordance_with_se(target, risk[main], uno_tau(time_, horizons))
        add("uno_c", np.nan, c, se, "" if np.isfinite(c) else "no comparable pairs before tau")
    for h in horizons:
        if at_risk(time_, h) < MIN_AT_RISK or h >= time_.max():
            reason = f"fewer than {MIN_AT_RISK} patients at risk at {h} months"
            add("cal_oe", h, np.nan, np.nan, reason)
            add("cal_slope", h, np.nan, np.nan, reason)
            continue
        if not np.any((code == target.event_of_interest) & (time_ <= h)):
            add("cal_oe", h, np.nan, np.nan, f"no events by {h} months")
            add("cal_slope", h, np.nan, np.nan, f"no events by {h} months")
            continue
        cal = calibration(time_, code, risk[h], h, target.event_of_interest)
        add("cal_oe", h, cal["oe"], cal["oe_log_se"])
        add("cal_slope", h, cal["slope"], cal["slope_se"])
    return rows


def internal_external_validation(frame: pd.DataFrame, task: Task, refit: Refit, families: tuple[str, ...],
                                 seed: int, say: Callable[[str], None] = lambda _: None,
                                 n_folds: int = 5) -> ValidationResult:
    """Refit each family without each centre (or fold) and judge it on the left-out patients."""
    started = time.monotonic()
    schema = task.schema
    design = internal_external_folds(frame, schema.event_column, seed, n_folds)
    targets = task.endpoint_targets(frame)
    horizons = list(schema.horizons_months)
    main = schema.main_horizon_months
    months = sorted(set(horizons) | {main})
    risks = {family: {endpoint: np.full((len(frame), len(months)), np.nan) for endpoint in targets}
             for family in families}
    rows = []
    say(f"validation: {design.description}; refitting {', '.join(families)} for each of {len(design.folds)} folds")
    judge = partial(_judge_fold, frame, refit, families, targets, months, horizons, main)
    for number, (fold, (predicted, fold_rows)) in enumerate(zip(design.folds, parallel_map(judge, design.folds),
                                                                strict=True), start=1):
        for family in families:
            for endpoint in targets:
                if fold.repeat == 0:
                    risks[family][endpoint][fold.test] = predicted[family][endpoint]
        rows += fold_rows
        say(f"  validation fold {number}/{len(design.folds)} ({fold.name}, {len(fold.test)} patients) done")
    per_cluster = pd.DataFrame(rows)
    pooled = _pool_all(per_cluster, design)
    return ValidationResult(design, per_cluster, pooled, risks, months, time.monotonic() - started)


def _judge_fold(frame: pd.DataFrame, refit: Refit, families: tuple[str, ...], targets: dict[str, EndpointTarget],
                months: list[int], horizons: list[int], main: int, fold: Any,
                ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]]]:
    """One fold (a task of its own, in a worker when there are several): each family refitted without the fold,
    its predicted risks on the fold and the fold's metric rows."""
    train, test = frame.iloc[fold.train].reset_index(drop=True), frame.iloc[fold.test].reset_index(drop=True)
    predicted, rows = {}, []
    for family in families:
        predicted[family] = endpoint_risks(refit(family, train), test, np.array(months, dtype=float))
        for endpoint, target in targets.items():
            by_month = {m: predicted[family][endpoint][:, i] for i, m in enumerate(months)}
            for row in cluster_metrics(subset_target(target, fold.test), by_month, horizons, main):
                rows.append({"family": family, "endpoint": endpoint, "cluster": fold.name, "repeat": fold.repeat,
                             **row})
    return predicted, rows


def _pool_all(per_cluster: pd.DataFrame, design: ValidationDesign) -> pd.DataFrame:
    rows = []
    keys = ["family", "endpoint", "metric", "horizon"]
    for (family, endpoint, metric, horizon), group in per_cluster.groupby(keys, dropna=False, sort=False):
        usable = group[group["skipped_reason"] == ""]
        if design.by_cluster:
            pooled = pool(metric, usable["estimate"].to_numpy(), usable["se"].to_numpy())
        else:  # repeated K-fold: the mean over folds (no random-effects model across folds)
            pooled = fold_mean(metric, usable)
        rows.append({"family": family, "endpoint": endpoint, "metric": metric, "horizon": horizon,
                     "k_skipped": int(len(group) - len(usable)), **pooled})
    return pd.DataFrame(rows)


def fold_mean(metric: str, folds: pd.DataFrame) -> dict[str, float]:
    """Repeated K-fold: the mean of the fold estimates with a 95 % confidence interval on the metric's pooling
    scale. A fold holds 1/K of the patients, so one full-cohort estimate has about 1/K of a fold's variance;
    the repeats reuse the same patients and are not counted as independent (mean fold variance / K)."""
    estimates, ses = folds["estimate"].to_numpy(float), folds["se"].to_numpy(float)
    finite = np.isfinite(estimates)
    usable = finite & np.isfinite(ses) & (ses > 0)
    if METRIC_SCALE[metric] == "logit":
        usable &= (estimates > 0) & (estimates < 1)
    elif METRIC_SCALE[metric] == "log":
        usable &= estimates > 0
    result = {"estimate": float(np.mean(estimates[finite])) if finite.any() else np.nan, "lower": np.nan,
              "upper": np.nan, "pi_lower": np.nan, "pi_upper": np.nan, "i2": np.nan, "tau2": np.nan,
              "k": int(finite.sum())}
    if usable.sum() >= 2:
        _, se = to_scale(metric, estimates[usable], ses[usable])
        per_repeat = usable.sum() / max(1, folds.loc[usable, "repeat"].nunique())
        centre, _ = to_scale(metric, np.array([result["estimate"]]), np.array([np.nan]))
        half = Z95 * float(np.sqrt(np.mean(se**2) / per_repeat))
        back = _SCALES[METRIC_SCALE[metric]][1]
        result.update(lower=float(back(centre[0] - half)), upper=float(back(centre[0] + half)))
    return result
