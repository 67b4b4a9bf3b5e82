"""Censoring-aware metrics with one definition each and the same names in every task (clarifications §4).

Discrimination and Brier scores come from scikit-survival; censoring weights are estimated on the evaluation
set itself. Calibration at horizon t uses jackknife pseudo-observations of the Kaplan-Meier risk F(t):
O/E = (1 - KM(t)) / mean predicted risk; slope and intercept from a GLM with cloglog link on the
pseudo-observations with cloglog(predicted risk) as covariate (the intercept with the slope fixed at 1).
A horizon counts only where at least 20 patients are still at risk; otherwise its metrics are NaN with a reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.survival_target import check_survival_target
from training.bundle import ModelBundle

MIN_AT_RISK = 20
TAU_MIN_SHARE_AT_RISK = 0.10


@dataclass
class Evaluation:
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # horizon label -> reason


def _surv(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event) == 1, time=np.asarray(time, dtype=float))


def at_risk(time: np.ndarray, month: float) -> int:
    """Patients still followed (time >= month)."""
    return int(np.sum(np.asarray(time) >= month))


def evaluable_horizons(time: np.ndarray, horizons: list[int]) -> tuple[list[int], dict[str, str]]:
    """Horizons with >= 20 patients at risk and inside the follow-up (sksurv's IPCW needs t < max time)."""
    keep, skipped = [], {}
    for h in horizons:
        if at_risk(time, h) < MIN_AT_RISK:
            skipped[f"{h}m"] = f"fewer than {MIN_AT_RISK} patients at risk at {h} months"
        elif h >= np.max(time):
            skipped[f"{h}m"] = f"horizon at or beyond the last follow-up ({np.max(time):g} months)"
        else:
            keep.append(h)
    return keep, skipped


def harrell_c(time: np.ndarray, event: np.ndarray, risk_score: np.ndarray) -> float:
    """Harrell's concordance of a risk score (higher = earlier event) over all comparable pairs."""
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(np.asarray(event) == 1, time, risk_score)[0])


def uno_c(time: np.ndarray, event: np.ndarray, risk_score: np.ndarray, tau: float) -> float:
    """Uno's IPCW concordance truncated at tau; censoring distribution from the same (evaluation) data."""
    from sksurv.metrics import concordance_index_ipcw

    survival = _surv(time, event)
    return float(concordance_index_ipcw(survival, survival, risk_score, tau=tau)[0])


def uno_tau(time: np.ndarray, horizons: list[int]) -> float:
    """The largest horizon with at least 10 % of patients still at risk (clarifications §4)."""
    eligible = [h for h in horizons if at_risk(time, h) >= TAU_MIN_SHARE_AT_RISK * len(time) and h < max(time)]
    return float(max(eligible)) if eligible else float(np.quantile(time, 0.5))


def time_dependent_auc(time: np.ndarray, event: np.ndarray, risk_at_horizon: np.ndarray, month: float) -> float:
    """Cumulative/dynamic AUC at `month` (Uno 2007 IPCW estimator) of the predicted risk by that month."""
    from sksurv.metrics import cumulative_dynamic_auc

    survival = _surv(time, event)
    return float(cumulative_dynamic_auc(survival, survival, risk_at_horizon, [month])[0][0])


def brier(time: np.ndarray, event: np.ndarray, survival_at_horizon: np.ndarray, month: float) -> float:
    """IPCW Brier score (Graf 1999) of the predicted S(month | x)."""
    from sksurv.metrics import brier_score

    survival = _surv(time, event)
    return float(brier_score(survival, survival, survival_at_horizon.reshape(-1, 1), [month])[1][0])


def integrated_brier(time: np.ndarray, event: np.ndarray, survival_matrix: np.ndarray, months: np.ndarray
                     ) -> float:
    """Integrated Brier score over `months` (the first to the last evaluable horizon)."""
    from sksurv.metrics import integrated_brier_score

    survival = _surv(time, event)
    return float(integrated_brier_score(survival, survival, survival_matrix, months))


def kaplan_meier_risk(time: np.ndarray, event: np.ndarray, month: float) -> float:
    """1 - KM(month)."""
    return float(1.0 - _km_leave_one_out(np.asarray(time, float), np.asarray(event), month, full_only=True))


def _km_leave_one_out(time: np.ndarray, event: np.ndarray, month: float, full_only: bool = False
                      ) -> np.ndarray | float:
    """KM S(month) on all patients, or with each patient left out in turn (vectorised jackknife)."""
    event_times = np.unique(time[(event == 1) & (time <= month)])
    n_at_risk = np.array([np.sum(time >= t) for t in event_times], dtype=float)
    n_events = np.array([np.sum((time == t) & (event == 1)) for t in event_times], dtype=float)
    if full_only:
        return float(np.prod(1.0 - n_events / n_at_risk)) if len(event_times) else 1.0
    if not len(event_times):
        return np.ones(len(time))
    # Leaving patient i out removes them from every risk set up to their time, and their event if any.
    in_risk_set = time[:, None] >= event_times[None, :]
    own_event = (time[:, None] == event_times[None, :]) & (event[:, None] == 1)
    factors = 1.0 - (n_events[None, :] - own_event) / np.maximum(n_at_risk[None, :] - in_risk_set, 1.0)
    return np.prod(factors, axis=1)


def pseudo_observations(time: np.ndarray, event: np.ndarray, month: float) -> np.ndarray:
    """Jackknife pseudo-observations of F(month) = 1 - S(month) (Andersen & Perme 2010)."""
    time, event = np.asarray(time, dtype=float), np.asarray(event)
    n = len(time)
    full = 1.0 - _km_leave_one_out(time, event, month, full_only=True)
    left_out = 1.0 - _km_leave_one_out(time, event, month)
    return n * full - (n - 1) * left_out


def _cloglog(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(-np.log(1.0 - p))


def calibration(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray, month: float
                ) -> dict[str, float]:
    """O/E, calibration slope and calibration-in-the-large intercept at `month`."""
    import statsmodels.api as sm

    pseudo = pseudo_observations(time, event, month)
    observed = kaplan_meier_risk(time, event, month)
    x = _cloglog(predicted_risk)
    family = sm.families.Binomial(link=sm.families.links.CLogLog())
    with warnings.catch_warnings():
        # Pseudo-observations lie slightly outside [0, 1]: a quasi-likelihood fit, as in the literature.
        warnings.simplefilter("ignore")
        slope = sm.GLM(pseudo, sm.add_constant(x), family=family).fit().params[1]
        intercept = sm.GLM(pseudo, np.ones_like(x), family=family, offset=x).fit().params[0]
    return {"oe": observed / float(np.mean(predicted_risk)), "slope": float(slope), "intercept": float(intercept)}


def net_benefit(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray, month: float,
                thresholds: np.ndarray) -> pd.DataFrame:
    """Survival decision curve (Vickers 2008): KM risk among patients above each threshold."""
    rows = []
    overall = kaplan_meier_risk(time, event, month)
    for pt in thresholds:
        treated = predicted_risk >= pt
        share = float(np.mean(treated))
        risk_treated = kaplan_meier_risk(time[treated], event[treated], month) if treated.any() else 0.0
        odds = pt / (1.0 - pt)
        rows.append({"threshold": pt,
                     "model": share * risk_treated - share * (1.0 - risk_treated) * odds,
                     "treat_all": overall - (1.0 - overall) * odds, "treat_none": 0.0})
    return pd.DataFrame(rows)


def evaluate_bundle(bundle: ModelBundle, frame: pd.DataFrame, time_column: str, event_column: str
                    ) -> Evaluation:
    """Every headline metric of a bundle on a frame it was not fitted on."""
    time, event = check_survival_target(frame[time_column], frame[event_column])
    result = Evaluation()
    horizons, result.skipped = evaluable_horizons(time, bundle.horizons_months)
    margin = bundle.margin(bundle.matrix(frame))
    result.metrics["harrell_c"] = harrell_c(time, event, margin)
    result.metrics["uno_c"] = uno_c(time, event, margin, uno_tau(time, bundle.horizons_months))
    for h in bundle.horizons_months:
        if h not in horizons:
            for name in ("auc", "brier", "cal_oe", "cal_slope", "cal_intercept"):
                result.metrics[f"{name}_{h}m"] = float("nan")
            continue
        survival_h = bundle.baseline.survival(margin, np.array([h]))[:, 0]
        result.metrics[f"auc_{h}m"] = time_dependent_auc(time, event, 1.0 - survival_h, h)
        result.metrics[f"brier_{h}m"] = brier(time, event, survival_h, h)
        cal = calibration(time, event, 1.0 - survival_h, h)
        result.metrics.update({f"cal_oe_{h}m": cal["oe"], f"cal_slope_{h}m": cal["slope"],
                               f"cal_intercept_{h}m": cal["intercept"]})
    if len(horizons) >= 2:
        grid = np.arange(min(horizons), max(horizons) + 1, dtype=float)
        result.metrics["ibs"] = integrated_brier(time, event, bundle.baseline.survival(margin, grid), grid)
    else:
        result.metrics["ibs"] = float("nan")
    return result
