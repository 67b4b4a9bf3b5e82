"""Bootstrap 95 % confidence intervals for the headline metrics (clarifications §4).

200 draws resampling whole centres with replacement (patients when the evaluation data has fewer than 5
centres), on held-out predictions that are computed once: nothing is refitted or re-predicted, so the interval
reflects the sampling of the evaluation patients, not the variability of model fitting. Percentile intervals;
a draw where a metric cannot be computed (no events, too few at risk) is left out of that metric.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget
from risk_model.bundle import ModelBundle
from training.evaluate import (
    MIN_AT_RISK,
    at_risk,
    brier,
    calibration,
    competing_auc,
    concordance_with_se,
    endpoint_prefix,
    endpoint_risks,
    harrell_c_with_se,
    integrated_brier,
    subset_target,
    time_dependent_auc,
    uno_tau,
)
from training.parallel import parallel_map

MIN_CENTRES_FOR_CENTRE_BOOTSTRAP = 5
HEADLINE = ("uno_c", "harrell_c", "ibs", "auc_{h}m", "brier_{h}m", "cal_oe_{h}m", "cal_slope_{h}m", "ici_{h}m")


@dataclass
class BootstrapIntervals:
    draws: int
    unit: str  # "centres" or "patients"
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric name -> (lower, upper)
    valid_draws: dict[str, int] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # metric name -> one value per draw (NaN = skipped)

    @property
    def statement(self) -> str:
        return (f"bootstrap 95 % percentile intervals: {self.draws} draws resampling {self.unit} with replacement, "
                "on held-out predictions (no refit)")

    def mlflow_metrics(self) -> dict[str, float]:
        metrics = {}
        for name, (lower, upper) in self.intervals.items():
            if np.isfinite(lower) and np.isfinite(upper):
                metrics[f"{name}_lower95"], metrics[f"{name}_upper95"] = lower, upper
        return metrics


def bootstrap_indices(frame: pd.DataFrame, draws: int, seed: int,
                      min_centres: int = MIN_CENTRES_FOR_CENTRE_BOOTSTRAP) -> tuple[list[np.ndarray], str]:
    """Row positions of each draw: whole centres with replacement, or patients when there are few centres."""
    rng = np.random.default_rng(seed)
    centres = frame["centre"].astype(str).to_numpy() if "centre" in frame and frame["centre"].notna().all() else None
    if centres is None or len(np.unique(centres)) < min_centres:
        return [rng.integers(0, len(frame), len(frame)) for _ in range(draws)], "patients"
    groups = {c: np.flatnonzero(centres == c) for c in np.unique(centres)}
    names = list(groups)
    return [np.concatenate([groups[names[i]] for i in rng.integers(0, len(names), len(names))])
            for _ in range(draws)], "centres"


def headline_metrics(target: EndpointTarget, risk: dict[int, np.ndarray], ibs_risk: np.ndarray | None,
                     ibs_grid: np.ndarray | None, horizons: list[int], main: int) -> dict[str, float]:
    """The headline metrics of one endpoint from precomputed risks (`risk[h]`, and the IBS grid's risk matrix)."""
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    cause = target.event_of_interest
    metrics = {name.format(h=main): np.nan for name in HEADLINE}
    if not np.any(code == cause):
        return metrics
    metrics["harrell_c"] = harrell_c_with_se(time_, (code == cause).astype(int), risk[main])[0]
    metrics["uno_c"] = concordance_with_se(target, risk[main], uno_tau(time_, horizons))[0]
    incidence = cache(partial(_incidence_scores, time_, code, cause))  # built once, when first asked for
    if at_risk(time_, main) >= MIN_AT_RISK and main < time_.max():
        try:
            if target.competing:
                metrics[f"auc_{main}m"] = competing_auc(time_, code, risk[main], main, cause)
                metrics[f"brier_{main}m"] = float(incidence().brier_score_incidence(
                    incidence().y_train, risk[main][:, None], [main])[0])
            else:
                event = (code > 0).astype(int)
                metrics[f"auc_{main}m"] = time_dependent_auc(time_, event, risk[main], main)
                metrics[f"brier_{main}m"] = brier(time_, event, 1.0 - risk[main], main)
        except ValueError:  # the censoring distribution of this draw reaches zero before the horizon
            pass
        cal = calibration(time_, code, risk[main], main, cause, intercept=False)
        metrics.update({f"cal_oe_{main}m": cal["oe"], f"cal_slope_{main}m": cal["slope"],
                        f"ici_{main}m": cal["ici"]})
    if ibs_grid is not None and ibs_risk is not None and ibs_grid.max() < time_.max():
        try:
            if target.competing:
                metrics["ibs"] = float(incidence().integrated_brier_score_incidence(incidence().y_train, ibs_risk,
                                                                                    ibs_grid))
            else:
                metrics["ibs"] = integrated_brier(time_, (code > 0).astype(int), 1.0 - ibs_risk, ibs_grid)
        except ValueError:
            pass
    return metrics


def _incidence_scores(time_: np.ndarray, code: np.ndarray, cause: int) -> Any:
    """hazardous' Brier scores of one cause's incidence, scored on the patients the censoring is estimated on.
    Its public `brier_score_incidence` and `integrated_brier_score_incidence` each build this and refit the
    censoring distribution (lifelines' Kaplan-Meier, about 40 ms); a draw needs both, so it builds one."""
    from hazardous.metrics._brier_score import IncidenceScoreComputer

    return IncidenceScoreComputer(pd.DataFrame({"event": code, "duration": time_}), event_of_interest=cause)


def _draw_metrics(target: EndpointTarget, at_months: np.ndarray, months: np.ndarray, grid_risk: np.ndarray | None,
                  grid: np.ndarray | None, horizons: list[int], main: int, rows: np.ndarray) -> dict[str, float]:
    """The headline metrics of one bootstrap draw (`rows` of the evaluation data)."""
    risk = {int(m): at_months[rows, i] for i, m in enumerate(months)}
    return headline_metrics(subset_target(target, rows), risk, grid_risk[rows] if grid_risk is not None else None,
                            grid, horizons, main)


def bootstrap_headline(bundle: ModelBundle, frame: pd.DataFrame, targets: dict[str, EndpointTarget],
                       evaluable: dict[str, list[int]], draws: int, seed: int,
                       min_centres: int = MIN_CENTRES_FOR_CENTRE_BOOTSTRAP) -> BootstrapIntervals:
    """Percentile intervals of every endpoint's headline metrics; `evaluable[endpoint]` are the horizons that
    count on the whole evaluation set (the IBS runs over them, as in `evaluate_bundle`)."""
    horizons, main = list(bundle.horizons_months), bundle.main_horizon_months
    months = np.array(sorted(set(horizons) | {main}), dtype=float)
    at_months = endpoint_risks(bundle, frame, months)
    indices, unit = bootstrap_indices(frame, draws, seed, min_centres)
    result = BootstrapIntervals(draws=draws, unit=unit)
    for endpoint, target in targets.items():
        usable = evaluable.get(endpoint, [])
        grid = np.arange(min(usable), max(usable) + 1, dtype=float) if len(usable) >= 2 else None
        grid_risk = endpoint_risks(bundle, frame, grid, endpoint)[endpoint] if grid is not None else None
        per_draw: dict[str, list[float]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw = partial(_draw_metrics, target, at_months[endpoint], months, grid_risk, grid, horizons, main)
            for values in parallel_map(draw, indices):  # the draws' rows are fixed: any worker count, same values
                for name, value in values.items():
                    per_draw.setdefault(name, []).append(value)
        prefix = endpoint_prefix(endpoint, bundle.main_endpoint)
        for name, values in per_draw.items():
            array = np.asarray(values, dtype=float)
            finite = array[np.isfinite(array)]
            key = f"{prefix}{name}"
            result.values[key] = array
            result.valid_draws[key] = int(len(finite))
            result.intervals[key] = ((float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975)))
                                     if len(finite) >= 0.5 * draws else (np.nan, np.nan))
    return result
