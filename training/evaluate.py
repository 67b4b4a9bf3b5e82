"""Censoring-aware metrics with one definition each and the same names in every task (clarifications §4).

Brier scores and the single-event AUC come from scikit-survival; censoring weights are estimated on the
evaluation set itself. Concordance (Harrell, Uno, Wolbers) is computed here in O(n log n) (training/concordance.py)
with the definitions of scikit-survival and hazardous, which the tests hold it equal to. Calibration at horizon t
uses jackknife pseudo-observations of the Kaplan-Meier risk F(t) (each patient's leave-one-out estimate by
closed-form risk-set updates, O(n log n), never a patients x event-times matrix): O/E = (1 - KM(t)) / mean
predicted risk; slope and intercept from a GLM with cloglog link on the pseudo-observations with
cloglog(predicted risk) as covariate (the intercept with the slope fixed at 1);
ICI, E50 and E90 from a loess of the pseudo-observations on the predicted risk (Austin et al. 2020).
A horizon counts only where at least 20 patients are still at risk; otherwise its metrics are NaN with a reason.

Standard errors for pooling across centres (training/validation.py): Uno's / Wolbers' C with an influence-function
(U-statistic) variance, log O/E from the jackknife influence of the pseudo-observations, and the calibration slope
with a sandwich (HC0) variance, as usual for GLMs on pseudo-observations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget
from risk_model.bundle import ModelBundle
from training.concordance import weighted_concordance

MIN_AT_RISK = 20
TAU_MIN_SHARE_AT_RISK = 0.10
LOESS_SPAN = 0.75  # R's loess default, as in Austin, Harrell & van Klaveren (2020)
HAZARDOUS_MIN_CENSORING = 0.05  # hazardous' floor of the censoring survival in its IPCW


@dataclass
class Evaluation:
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # horizon label -> reason


def endpoint_prefix(endpoint: str, main_endpoint: str = "relapse") -> str:
    """Metric names: the main endpoint's are plain (`uno_c`), the others' prefixed (`nrm_uno_c`)."""
    return "" if endpoint == main_endpoint else f"{endpoint}_"


def subset_target(target: EndpointTarget, rows: np.ndarray) -> EndpointTarget:
    return EndpointTarget(np.asarray(target.months)[rows], np.asarray(target.code)[rows], target.event_of_interest,
                          target.competing)


def endpoint_risks(bundle: ModelBundle, frame: pd.DataFrame, months: np.ndarray, only: str | None = None
                   ) -> dict[str, np.ndarray]:
    """Each endpoint's predicted risk of its event by each month (patients x months): the incidence, or one minus
    the probability of staying event-free for survival endpoints (OS, LFS, GRFS, relapse-free). With `only`, that
    endpoint (and what it is computed with) alone: OS costs most of all_hsct's endpoints."""
    predicted = bundle.endpoint_probabilities(frame, np.asarray(months, dtype=float), only)
    return {name: (1.0 - predicted[name] if bundle.endpoint_kinds[name] == "survival" else predicted[name])
            for name in ([only] if only else predicted)}


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
    """Harrell's concordance of a risk score (higher = earlier event) over all comparable pairs, as scikit-survival's
    `concordance_index_censored`; NaN without a comparable pair."""
    return harrell_c_with_se(time, event, risk_score)[0]


def uno_c(time: np.ndarray, event: np.ndarray, risk_score: np.ndarray, tau: float) -> float:
    """Uno's IPCW concordance truncated at tau, as scikit-survival's `concordance_index_ipcw`; censoring
    distribution from the same (evaluation) data. NaN where the censoring survival reaches zero before a case."""
    target = EndpointTarget(np.asarray(time, dtype=float), (np.asarray(event) == 1).astype(int))
    return concordance_with_se(target, risk_score, tau)[0]


def uno_tau(time: np.ndarray, horizons: list[int]) -> float:
    """The largest horizon with at least 10 % of patients still at risk (clarifications §4)."""
    time = np.asarray(time, dtype=float)
    last = float(np.max(time)) if len(time) else -np.inf  # once, in numpy (per bootstrap draw on 45,000 patients)
    eligible = [h for h in horizons if at_risk(time, h) >= TAU_MIN_SHARE_AT_RISK * len(time) and h < last]
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


def _risk_set_counts(time: np.ndarray, code: np.ndarray, cause: int, month: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The event times up to `month` (any cause) with the number at risk, of events and of `cause` events at
    each: sorting and counting, O(n log n), never a patients x event-times matrix."""
    events = code > 0
    grid, n_events = np.unique(time[events & (time <= month)], return_counts=True)
    n_at_risk = len(time) - np.searchsorted(np.sort(time), grid, side="left")
    of_cause = (code == cause) & (time <= month)
    n_cause = np.bincount(np.searchsorted(grid, time[of_cause]), minlength=len(grid))
    return grid, n_at_risk.astype(float), n_events.astype(float), n_cause.astype(float)


def _aalen_johansen(time: np.ndarray, code: np.ndarray, cause: int, month: float, leave_one_out: bool
                    ) -> np.ndarray | float:
    """Aalen-Johansen F_cause(month) on all patients, or with each patient left out in turn.

    With a single cause (codes 0/1) this is 1 - Kaplan-Meier. F = sum_k S(g_k-) c_k / r_k over the event times
    g_k, with r_k at risk, d_k events, c_k events of the cause and S(g_k-) the product of (1 - d_j / r_j), j < k.
    """
    time, code = np.asarray(time, dtype=float), np.asarray(code)
    grid, n_at_risk, n_events, n_cause = _risk_set_counts(time, code, cause, month)
    if not len(grid):
        return np.zeros(len(time)) if leave_one_out else 0.0
    if not leave_one_out:
        survival_before = np.concatenate([[1.0], np.cumprod(1.0 - n_events / n_at_risk)[:-1]])
        return float(np.sum(survival_before * n_cause / n_at_risk))
    return _leave_one_out(time, code, cause, grid, n_at_risk, n_events, n_cause)


def _leave_one_out(time: np.ndarray, code: np.ndarray, cause: int, grid: np.ndarray, n_at_risk: np.ndarray,
                   n_events: np.ndarray, n_cause: np.ndarray) -> np.ndarray:
    """F_cause(month) without each patient in turn, in O(n log n) memory O(n + event times).

    Leaving patient i out lowers the number at risk by one at every event time up to their own time (the first
    m_i), and their own event count at g_{m_i - 1} if they had an event there; later terms keep their factors.
    So F_(-i) = B[m_i] + A[m_i] T[m_i], with A the prefix product of the factors with one fewer at risk, B the
    prefix sum of the terms with one fewer at risk, and T[m] = sum_{k >= m} prod_{m <= j < k}(1 - d_j/r_j) c_k/r_k
    the untouched tail (built backwards, so no division by a survival that may reach zero). A patient with their
    own event at g_p swaps the p-th term for its own. Equal to removing each patient and recomputing.
    """
    fewer = np.maximum(n_at_risk - 1.0, 1.0)  # r_k - 1 (floored as the direct recomputation floors it)
    size = len(grid)
    prefix_product = np.concatenate([[1.0], np.cumprod(1.0 - n_events / fewer)])  # A[m]: factors j < m
    prefix_sum = np.concatenate([[0.0], np.cumsum(prefix_product[:-1] * n_cause / fewer)])  # B[m]: terms k < m
    factors, terms = (1.0 - n_events / n_at_risk).tolist(), (n_cause / n_at_risk).tolist()
    tail = [0.0] * (size + 1)  # T[m]
    for k in range(size - 1, -1, -1):  # one pass over the event times (not the patients)
        tail[k] = terms[k] + factors[k] * tail[k + 1]
    tail = np.asarray(tail)
    reach = np.searchsorted(grid, time, side="right")  # m_i: event times at or before the patient's time
    own = (code > 0) & (reach > 0) & (grid[np.maximum(reach - 1, 0)] == time)
    result = prefix_sum[reach] + prefix_product[reach] * tail[reach]
    p = reach[own] - 1  # the own event's position
    own_cause = (code[own] == cause).astype(float)
    own_term = ((n_cause[p] - own_cause) / fewer[p]
                + (1.0 - (n_events[p] - 1.0) / fewer[p]) * tail[p + 1])
    result[own] = prefix_sum[p] + prefix_product[p] * own_term
    return result


def kaplan_meier_risk(time: np.ndarray, event: np.ndarray, month: float) -> float:
    """1 - KM(month)."""
    return float(_aalen_johansen(time, (np.asarray(event) > 0).astype(int), 1, month, leave_one_out=False))


def observed_risk(time: np.ndarray, code: np.ndarray, cause: int, month: float) -> float:
    """Aalen-Johansen cumulative incidence of `cause` by `month` (1 - KM when there is one cause)."""
    return float(_aalen_johansen(time, code, cause, month, leave_one_out=False))


def pseudo_observations(time: np.ndarray, code: np.ndarray, month: float, cause: int = 1) -> np.ndarray:
    """Jackknife pseudo-observations of F_cause(month) (Andersen & Perme 2010); codes 0/1 give 1 - KM."""
    time, code = np.asarray(time, dtype=float), np.asarray(code)
    n = len(time)
    full = _aalen_johansen(time, code, cause, month, leave_one_out=False)
    return n * full - (n - 1) * _aalen_johansen(time, code, cause, month, leave_one_out=True)


def _cloglog(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(-np.log(1.0 - p))


def smoothed_calibration(pseudo: np.ndarray, predicted_risk: np.ndarray) -> np.ndarray:
    """Loess (span 0.75, no robustness iterations) of the pseudo-observations on the predicted risk, read at each
    patient's prediction and clipped to [0, 1]: the smoothed observed risk of the calibration curve."""
    import statsmodels.api as sm

    predicted_risk = np.asarray(predicted_risk, dtype=float)
    spread = float(np.ptp(predicted_risk)) if len(predicted_risk) else 0.0
    if spread == 0.0:
        return np.full(len(predicted_risk), float(np.mean(pseudo)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = sm.nonparametric.lowess(pseudo, predicted_risk, frac=LOESS_SPAN, it=0, delta=0.005 * spread,
                                         return_sorted=False)
    return np.clip(np.asarray(fitted, dtype=float), 0.0, 1.0)


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """Found once: looking up the BLAS libraries on every call costs ~10 ms, a limit through this ~0.02 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def calibration(time: np.ndarray, code: np.ndarray, predicted_risk: np.ndarray, month: float, cause: int = 1,
                intercept: bool = True) -> dict[str, float]:
    """O/E, slope, intercept, ICI, E50 and E90 of predicted F_cause(month), with standard errors for pooling.

    `oe_log_se` is the standard error of log(O/E) from the influence of each patient on observed and expected
    (pseudo-observation and prediction); `slope_se` is the sandwich standard error of the slope. Without
    `intercept` the intercept is NaN and its GLM is not fitted (the metric bootstrap reads O/E, slope and ICI).
    """
    import statsmodels.api as sm

    predicted_risk = np.asarray(predicted_risk, dtype=float)
    pseudo = pseudo_observations(time, code, month, cause)
    observed = observed_risk(time, code, cause, month)
    expected = float(np.mean(predicted_risk))
    x = _cloglog(predicted_risk)
    family = sm.families.Binomial(link=sm.families.links.CLogLog())
    slope, slope_se = np.nan, np.nan
    # One BLAS thread: a two-column GLM gains nothing from more, and on busy cores their synchronisation made the
    # fits 4x slower (45,000 patients: 1.4 s against 0.33 s for the two fits).
    with warnings.catch_warnings(), _blas_controller().limit(limits=1, user_api="blas"):
        # Pseudo-observations lie slightly outside [0, 1]: a quasi-likelihood fit, as in the literature.
        warnings.simplefilter("ignore")
        # Started at perfect calibration (intercept 0, slope 1): from the default start, IRLS can diverge when
        # predicted risks come close to 1 at late horizons.
        try:
            fit = sm.GLM(pseudo, sm.add_constant(x), family=family).fit(start_params=[0.0, 1.0], cov_type="HC0")
            if fit.converged and abs(fit.params[1]) < 100:
                slope, slope_se = float(fit.params[1]), float(fit.bse[1])
        except (ValueError, np.linalg.LinAlgError, IndexError):  # constant predictions: no slope
            pass
        offset_fit = (sm.GLM(pseudo, np.ones_like(x), family=family, offset=x).fit(start_params=[0.0]).params[0]
                      if intercept else np.nan)
    n = len(pseudo)
    oe_log_se = np.nan
    if observed > 0 and expected > 0 and n > 1:
        influence = (pseudo - pseudo.mean()) / observed - (predicted_risk - expected) / expected
        oe_log_se = float(np.sqrt(np.sum(influence**2) / (n * (n - 1))))
    gap = np.abs(smoothed_calibration(pseudo, predicted_risk) - predicted_risk)
    return {"oe": observed / expected, "slope": slope, "intercept": float(offset_fit),
            "ici": float(np.mean(gap)), "e50": float(np.median(gap)), "e90": float(np.quantile(gap, 0.9)),
            "oe_log_se": oe_log_se, "slope_se": slope_se}


def concordance_with_se(target: EndpointTarget, risk: np.ndarray, tau: float) -> tuple[float, float]:
    """Uno's C truncated at tau (scikit-survival's definition) or, for a cause with competing events, Wolbers'
    C (hazardous' definition), with the standard error of its influence-function (U-statistic) linearisation.

    Same weights as the references: 1/G(T_i)^2 for pairs of a case with a later (or tied censored) patient and,
    with competing risks, 1/(G(T_i) G(T_j)) for a case and a patient with an earlier competing event. The censoring
    weights are treated as known in the standard error. O(n log n), where the references compare every case with
    every patient; tests hold it equal to both references.
    """
    time, code, risk = np.asarray(target.months, float), np.asarray(target.code), np.asarray(risk, float)
    cause = target.event_of_interest
    if target.competing:
        # hazardous' KaplanMeierIPCW: Kaplan-Meier of censoring read as a step function at each time, floored at
        # max(its smallest positive value, 0.05).
        censoring = _censoring_survival(time, code)
        values = censoring(np.unique(time))
        floor = max(float(values[values > 0].min()) if np.any(values > 0) else 1.0, HAZARDOUS_MIN_CENSORING)
        inverse_g = 1.0 / np.clip(censoring(time), floor, 1.0)
        case = (code == cause) & (time <= tau)
        competing = (code > 0) & (code != cause) & (time <= tau)
    else:
        case = (code > 0) & (time < tau)
        censoring_at_case = _reverse_kaplan_meier(time, code > 0)[case]
        if np.any(censoring_at_case == 0):  # censoring survival reaches zero before a case: C is not estimable
            return float("nan"), float("nan")
        inverse_g = np.zeros(len(time))
        inverse_g[case] = 1.0 / censoring_at_case
        competing = np.zeros(len(time), dtype=bool)
    return weighted_concordance(time, risk, case, code == 0, inverse_g, competing)


def _reverse_kaplan_meier(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The censoring survival G at each patient's own time as scikit-survival's CensoringDistributionEstimator
    has it (events at a time leave the risk set before the censorings at that time), without its per-patient
    Python loop."""
    event = np.asarray(event, dtype=bool)
    if event.all():
        return np.ones(len(time))
    times, position, count = np.unique(time, return_inverse=True, return_counts=True)
    events_at = np.bincount(position[event], minlength=len(times))
    censored_at = count - events_at
    at_risk = len(time) - np.concatenate([[0], np.cumsum(count)[:-1]])
    share = np.divide(censored_at, at_risk - events_at, out=np.zeros(len(times)), where=censored_at != 0)
    return np.cumprod(1.0 - share)[position]


def harrell_c_with_se(time: np.ndarray, event: np.ndarray, risk_score: np.ndarray) -> tuple[float, float]:
    """Harrell's C (scikit-survival's definition: every comparable pair weighs 1) with its influence-function
    standard error; `event` is 1 for the event of interest (other codes censor it)."""
    event = np.asarray(event) == 1
    time = np.asarray(time, dtype=float)
    return weighted_concordance(time, np.asarray(risk_score, float), event, ~event, np.ones(len(time)),
                                np.zeros(len(time), dtype=bool))


def net_benefit(time: np.ndarray, code: np.ndarray, predicted_risk: np.ndarray, month: float,
                thresholds: np.ndarray, cause: int = 1) -> pd.DataFrame:
    """Survival decision curve (Vickers 2008): KM (or Aalen-Johansen) risk among patients above each threshold."""
    rows = []
    overall = observed_risk(time, code, cause, month)
    for pt in thresholds:
        treated = predicted_risk >= pt
        share = float(np.mean(treated))
        risk_treated = observed_risk(time[treated], code[treated], cause, month) if treated.any() else 0.0
        odds = pt / (1.0 - pt)
        rows.append({"threshold": pt,
                     "model": share * risk_treated - share * (1.0 - risk_treated) * odds,
                     "treat_all": overall - (1.0 - overall) * odds, "treat_none": 0.0})
    return pd.DataFrame(rows)


def competing_auc(time: np.ndarray, code: np.ndarray, risk: np.ndarray, month: float, cause: int) -> float:
    """Time-dependent AUC for a cause with competing risks, Blanche et al. 2013 definition 2 (IPCW).

    Cases: the cause by `month`; controls: everyone else without the cause by then, i.e. still event-free
    or with a competing event (weights 1/G(T-) for observed events, 1/G(month) for those still at risk).
    """
    censoring = _censoring_survival(time, code)
    case = (time <= month) & (code == cause)
    control = (time > month) | ((time <= month) & (code > 0) & (code != cause))
    case_w = 1.0 / np.maximum(censoring(time[case] - 1e-9), 1e-12)
    control_times = np.where(time[control] > month, month, time[control] - 1e-9)
    control_w = 1.0 / np.maximum(censoring(control_times), 1e-12)
    if not case.any() or not control.any():
        return float("nan")
    # Each case against the controls' weight below its risk (plus half the equal ones): sorted cumulative
    # weights instead of a cases x controls matrix, which would not fit in memory on a large registry.
    order = np.argsort(risk[control], kind="stable")
    ranked = risk[control][order]
    cumulative = np.concatenate([[0.0], np.cumsum(control_w[order])])
    below = cumulative[np.searchsorted(ranked, risk[case], side="left")]
    tied = cumulative[np.searchsorted(ranked, risk[case], side="right")] - below
    return float(case_w @ (below + 0.5 * tied) / (case_w.sum() * control_w.sum()))


def _censoring_survival(time: np.ndarray, code: np.ndarray) -> Any:
    """Kaplan-Meier of the censoring distribution G, as a right-continuous step function."""
    time = np.asarray(time, dtype=float)
    grid, censored_at = np.unique(time[np.asarray(code) == 0], return_counts=True)
    at_risk_at = len(time) - np.searchsorted(np.sort(time), grid, side="left")
    values = np.cumprod(1.0 - censored_at / at_risk_at)

    def g(at: np.ndarray) -> np.ndarray:
        index = np.searchsorted(grid, at, side="right") - 1
        return np.where(index >= 0, values[np.maximum(index, 0)] if len(values) else 1.0, 1.0)

    return g


def endpoint_uno_c(target: EndpointTarget, risk: np.ndarray, horizons: list[int]) -> float:
    """Uno's C (IPCW, truncated at tau) of a risk at the main horizon; for a cause with competing events,
    the cause-specific version of Wolbers et al. 2014 (hazardous)."""
    return concordance_with_se(target, risk, uno_tau(np.asarray(target.months, float), horizons))[0]


CALIBRATION_METRICS = ("cal_oe", "cal_slope", "cal_intercept", "ici", "e50", "e90")
HORIZON_METRICS = ("auc", "brier", *CALIBRATION_METRICS)


def _calibration_metrics(cal: dict[str, float], h: int) -> dict[str, float]:
    return {f"cal_oe_{h}m": cal["oe"], f"cal_slope_{h}m": cal["slope"], f"cal_intercept_{h}m": cal["intercept"],
            f"ici_{h}m": cal["ici"], f"e50_{h}m": cal["e50"], f"e90_{h}m": cal["e90"]}


def _survival_endpoint_metrics(time: np.ndarray, event: np.ndarray, probability: dict[int, np.ndarray],
                               horizons: list[int], all_horizons: list[int], main: int) -> dict[str, float]:
    """`probability[h]` is the predicted risk of the event by h months."""
    metrics = {"harrell_c": harrell_c(time, event, probability[main]),
               "uno_c": uno_c(time, event, probability[main], uno_tau(time, all_horizons))}
    for h in horizons:
        metrics[f"auc_{h}m"] = time_dependent_auc(time, event, probability[h], h)
        metrics[f"brier_{h}m"] = brier(time, event, 1.0 - probability[h], h)
        metrics.update(_calibration_metrics(calibration(time, event, probability[h], h), h))
    return metrics


def _competing_endpoint_metrics(time: np.ndarray, code: np.ndarray, cause: int, probability: dict[int, np.ndarray],
                                horizons: list[int], all_horizons: list[int], main: int) -> dict[str, float]:
    """`probability[h]` is the predicted cumulative incidence of `cause` by h months."""
    from hazardous.metrics import brier_score_incidence

    frame = pd.DataFrame({"event": code, "duration": time})
    metrics = {
        "harrell_c": harrell_c(time, (code == cause).astype(int), probability[main]),
        "uno_c": endpoint_uno_c(EndpointTarget(time, code, cause, True), probability[main], all_horizons),
    }
    for h in horizons:
        metrics[f"auc_{h}m"] = competing_auc(time, code, probability[h], h, cause)
        metrics[f"brier_{h}m"] = float(brier_score_incidence(frame, frame, probability[h][:, None], [h],
                                                             event_of_interest=cause)[0])
        metrics.update(_calibration_metrics(calibration(time, code, probability[h], h, cause), h))
    return metrics


def evaluate_bundle(bundle: ModelBundle, frame: pd.DataFrame, targets: dict[str, EndpointTarget]) -> Evaluation:
    """Every headline metric of every endpoint, on a frame the bundle was not fitted on.

    The main endpoint's metrics carry plain names (`uno_c`, `auc_12m`); other endpoints' are prefixed
    (`nrm_auc_24m`). IBS runs from the first to the last evaluable horizon.
    """
    result = Evaluation()
    main_h = bundle.main_horizon_months
    months = np.array(sorted(set(bundle.horizons_months) | {main_h}), dtype=float)
    predicted = bundle.endpoint_probabilities(frame, months)
    for endpoint, target in targets.items():
        prefix = "" if endpoint == bundle.main_endpoint else f"{endpoint}_"
        time, code = np.asarray(target.months, float), np.asarray(target.code)
        horizons, skipped = evaluable_horizons(time, bundle.horizons_months)
        result.skipped.update({f"{prefix}{k}": v for k, v in skipped.items()})
        values = predicted[endpoint]
        if bundle.endpoint_kinds[endpoint] == "survival":
            values = 1.0 - values
        risk = {int(m): values[:, i] for i, m in enumerate(months)}
        if target.competing:
            metrics = _competing_endpoint_metrics(time, code, target.event_of_interest, risk, horizons,
                                                  bundle.horizons_months, main_h)
        else:
            metrics = _survival_endpoint_metrics(time, (code > 0).astype(int), risk, horizons,
                                                 bundle.horizons_months, main_h)
        metrics["ibs"] = _integrated_brier(bundle, frame, endpoint, target, horizons)
        for h in bundle.horizons_months:
            if h not in horizons:
                for name in HORIZON_METRICS:
                    metrics[f"{name}_{h}m"] = float("nan")
        result.metrics.update({f"{prefix}{k}": v for k, v in metrics.items()})
    return result


def _integrated_brier(bundle: ModelBundle, frame: pd.DataFrame, endpoint: str, target: EndpointTarget,
                      horizons: list[int]) -> float:
    if len(horizons) < 2:
        return float("nan")
    grid = np.arange(min(horizons), max(horizons) + 1, dtype=float)
    values = bundle.endpoint_probabilities(frame, grid, only=endpoint)[endpoint]
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    if target.competing:
        from hazardous.metrics import integrated_brier_score_incidence

        y = pd.DataFrame({"event": code, "duration": time})
        return float(integrated_brier_score_incidence(y, y, values, grid, event_of_interest=target.event_of_interest))
    survival = values if bundle.endpoint_kinds[endpoint] == "survival" else 1.0 - values
    return integrated_brier(time, (code > 0).astype(int), survival, grid)
