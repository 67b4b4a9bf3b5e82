"""Concordance (Harrell, Uno, Wolbers) and its standard error in O(n log n) (training/concordance.py) against the
all-pairs implementation it replaced (kept here, and only here, as the reference) and against lifelines,
scikit-survival and hazardous.

Conventions of the references, and where they are compared:
- lifelines' `concordance_index` takes a predicted survival time (higher = later event): we give it minus the
  risk. It counts tied predictions by exact equality, not within 1e-8: compared on scores without near-ties.
- scikit-survival's `concordance_index_censored` (Harrell) and `concordance_index_ipcw` (Uno, cases with
  T < tau, weight 1/G(T_i)^2 with G fitted on the same data) use our definitions exactly, near-ties included.
- hazardous' `concordance_index_incidence` (Wolbers) counts cases with T <= tau and uses its Kaplan-Meier IPCW
  floored at max(smallest positive value, 0.05); ours reproduces that, so it is compared as is.
- None of them gives a standard error: the standard error is compared with the all-pairs reference only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hazardous.metrics import concordance_index_incidence
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from features.tasks import EndpointTarget
from tests.sample_tasks import sample_tasks
from training import concordance, evaluate

TOLERANCE = 1e-9


# --- the all-pairs implementations that were in training/evaluate.py, as the reference --------------------

def all_pairs_concordance(time: np.ndarray, risk: np.ndarray, case: np.ndarray, censored: np.ndarray,
                          inverse_g: np.ndarray, competing: np.ndarray) -> tuple[float, float]:
    """Every case against every patient: weight 1/G(T_i)^2 for a later patient (or one censored at the same time)
    and 1/(G(T_i) G(T_j)) for a patient whose competing event came first; risks within 1e-8 count one half."""
    cases = np.flatnonzero(case)
    if not len(cases):
        return float("nan"), float("nan")
    n = len(time)
    concordant_as_case, pairs_as_case = np.zeros(n), np.zeros(n)
    concordant_as_control, pairs_as_control = np.zeros(n), np.zeros(n)
    for chunk in np.array_split(cases, max(1, len(cases) * n // 2_000_000 + 1)):
        t_i = time[chunk][:, None]
        later = (time[None, :] > t_i) | ((time[None, :] == t_i) & censored[None, :])
        weight = later * inverse_g[chunk][:, None] ** 2
        if competing.any():
            earlier_competing = competing[None, :] & (time[None, :] <= t_i)
            weight = weight + earlier_competing * (inverse_g[chunk][:, None] * inverse_g[None, :])
        gap = risk[chunk][:, None] - risk[None, :]
        score = np.where(np.abs(gap) <= 1e-8, 0.5, (gap > 0).astype(float))
        concordant_as_case[chunk] += (weight * score).sum(axis=1)
        pairs_as_case[chunk] += weight.sum(axis=1)
        concordant_as_control += (weight * score).sum(axis=0)
        pairs_as_control += weight.sum(axis=0)
    total = pairs_as_case.sum()
    if total <= 0:
        return float("nan"), float("nan")
    c = concordant_as_case.sum() / total
    influence = (concordant_as_case - c * pairs_as_case) + (concordant_as_control - c * pairs_as_control)
    return float(c), float(np.sqrt(np.sum(influence**2)) / total)


def loop_censoring_survival(time: np.ndarray, code: np.ndarray) -> Any:
    """Kaplan-Meier of censoring, one pass over all patients per censoring time."""
    censored = (code == 0).astype(int)
    grid = np.unique(time[censored == 1])
    factors = [1.0 - np.sum((time == g) & (censored == 1)) / np.sum(time >= g) for g in grid]
    values = np.cumprod(factors) if len(grid) else np.array([])

    def g(at: np.ndarray) -> np.ndarray:
        index = np.searchsorted(grid, at, side="right") - 1
        return np.where(index >= 0, values[np.maximum(index, 0)] if len(values) else 1.0, 1.0)

    return g


def sksurv_reverse_kaplan_meier(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The censoring survival at each patient's time from scikit-survival itself."""
    survival = Surv.from_arrays(event=np.asarray(event, dtype=bool), time=time)
    return CensoringDistributionEstimator().fit(survival).predict_proba(time)


def all_pairs_competing_auc(time: np.ndarray, code: np.ndarray, risk: np.ndarray, month: float, cause: int
                            ) -> float:
    censoring = loop_censoring_survival(time, code)
    case = (time <= month) & (code == cause)
    control = (time > month) | ((time <= month) & (code > 0) & (code != cause))
    case_w = 1.0 / np.maximum(censoring(time[case] - 1e-9), 1e-12)
    control_times = np.where(time[control] > month, month, time[control] - 1e-9)
    control_w = 1.0 / np.maximum(censoring(control_times), 1e-12)
    if not case.any() or not control.any():
        return float("nan")
    greater = (risk[case][:, None] > risk[control][None, :]) + 0.5 * (risk[case][:, None] == risk[control][None, :])
    return float(case_w @ greater @ control_w / (case_w.sum() * control_w.sum()))


# --- random data with every kind of tie ----------------------------------------------------------------------

def random_cohort(n: int, seed: int, causes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-month times (ties among events, censorings and competing events), codes 0 (censored) to `causes`,
    and a risk score with exact ties (two decimals) and near-ties straddling the 1e-8 tolerance."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 40, n).astype(float)
    code = rng.integers(0, causes + 1, n)
    risk = np.round(rng.uniform(size=n) + 0.3 * (code == 1), 2)
    risk = risk + rng.choice([0.0, 0.0, 4e-9, 1e-8, 1.5e-8], n)
    return time, code, risk


def both(fast: tuple[float, float], reference: tuple[float, float]) -> None:
    assert np.isfinite(fast[0]) and np.isfinite(fast[1]) and fast[1] > 0
    assert fast[0] == pytest.approx(reference[0], abs=TOLERANCE)
    assert fast[1] == pytest.approx(reference[1], abs=TOLERANCE)


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_harrell_equals_all_pairs(seed):
    time, code, risk = random_cohort(300 + 37 * seed, seed, causes=2)
    event = (code == 1).astype(int)  # the competing code censors it, as in Harrell's C for a cause
    fast = evaluate.harrell_c_with_se(time, event, risk)
    reference = all_pairs_concordance(time, risk, event == 1, event == 0, np.ones(len(time)),
                                      np.zeros(len(time), dtype=bool))
    both(fast, reference)
    assert evaluate.harrell_c(time, event, risk) == fast[0]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [12.0, 25.0, 39.0])
def test_uno_with_truncation_equals_all_pairs(seed, tau, monkeypatch):
    time, code, risk = random_cohort(250 + 41 * seed, 100 + seed, causes=1)
    target = EndpointTarget(time, code)
    fast = evaluate.concordance_with_se(target, risk, tau)
    with monkeypatch.context() as patch:
        patch.setattr(evaluate, "weighted_concordance", all_pairs_concordance)
        patch.setattr(evaluate, "_reverse_kaplan_meier", sksurv_reverse_kaplan_meier)
        reference = evaluate.concordance_with_se(target, risk, tau)
    both(fast, reference)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [12.0, 25.0, 39.0])
def test_wolbers_with_competing_events_equals_all_pairs(seed, tau, monkeypatch):
    time, code, risk = random_cohort(250 + 41 * seed, 200 + seed, causes=3)
    for cause in (1, 3):
        target = EndpointTarget(time, code, cause, True)
        fast = evaluate.concordance_with_se(target, risk, tau)
        with monkeypatch.context() as patch:
            patch.setattr(evaluate, "weighted_concordance", all_pairs_concordance)
            patch.setattr(evaluate, "_censoring_survival", loop_censoring_survival)
            reference = evaluate.concordance_with_se(target, risk, tau)
        both(fast, reference)


def test_continuous_times_and_scores_equal_all_pairs():
    # No ties at all, unequal weights everywhere: the Fenwick sums against plain sums.
    rng = np.random.default_rng(11)
    n = 400
    time, risk = rng.exponential(20, n), rng.normal(size=n)
    code = rng.integers(0, 3, n)
    inverse_g = rng.uniform(1, 4, n)
    args = (time, risk, code == 1, code == 0, inverse_g, code == 2)
    both(concordance.weighted_concordance(*args), all_pairs_concordance(*args))


def test_risks_at_the_tie_tolerance_split_as_pair_by_pair():
    # Differences of exactly 1e-8 in decimal are a hair above or below it in binary: the binary search must
    # classify each pair as the pairwise comparison does.
    base = np.array([0.1, 0.3, 0.5, 0.7, 1.0, 3.0])
    risk = np.concatenate([base, base + 1e-8, base - 1e-8, base + 2e-8, base + 1e-8 * (1 + 1e-12)])
    n = len(risk)
    rng = np.random.default_rng(5)
    time = rng.integers(1, 6, n).astype(float)
    case = rng.uniform(size=n) < 0.5
    args = (time, risk, case, ~case, np.ones(n), np.zeros(n, dtype=bool))
    fast, reference = concordance.weighted_concordance(*args), all_pairs_concordance(*args)
    assert fast[0] == pytest.approx(reference[0], abs=1e-15) and fast[1] == pytest.approx(reference[1], abs=1e-15)


def test_no_comparable_pair_is_nan_and_a_missing_risk_is_refused():
    time, code = np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0])
    assert np.isnan(evaluate.harrell_c(time, code, np.array([0.1, 0.2, 0.3])))
    # The only case is last: nobody after it.
    assert np.isnan(evaluate.harrell_c(time, np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3])))
    with pytest.raises(ValueError, match="finite"):
        evaluate.harrell_c(time, np.array([1, 0, 0]), np.array([0.1, np.nan, 0.3]))


# --- against the reference libraries ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_harrell_equals_lifelines_and_scikit_survival(seed):
    time, code, risk = random_cohort(500, 300 + seed, causes=2)
    event = code == 1
    assert evaluate.harrell_c(time, event.astype(int), risk) == pytest.approx(
        concordance_index_censored(event, time, risk)[0], abs=TOLERANCE)
    exact = np.round(risk, 2)  # lifelines ties by equality: no near-ties
    assert evaluate.harrell_c(time, event.astype(int), exact) == pytest.approx(
        concordance_index(time, -exact, event), abs=TOLERANCE)


@pytest.mark.parametrize("seed", SEEDS)
def test_uno_equals_scikit_survival_ipcw(seed):
    time, code, risk = random_cohort(500, 400 + seed, causes=1)
    survival = Surv.from_arrays(event=code == 1, time=time)
    for tau in (12.0, 25.0, 38.0):
        assert evaluate.uno_c(time, code, risk, tau) == pytest.approx(
            concordance_index_ipcw(survival, survival, risk, tau=tau)[0], abs=TOLERANCE)


@pytest.mark.parametrize("seed", SEEDS)
def test_wolbers_equals_hazardous(seed):
    time, code, risk = random_cohort(500, 500 + seed, causes=3)
    frame = pd.DataFrame({"event": code, "duration": time})
    for cause in (1, 2):
        for tau in (12.0, 30.0):
            expected = concordance_index_incidence(frame, risk[:, None], y_train=frame, time_grid=np.array([tau]),
                                                   taus=[tau], event_of_interest=cause)[0]
            ours = evaluate.concordance_with_se(EndpointTarget(time, code, cause, True), risk, tau)[0]
            assert ours == pytest.approx(expected, abs=TOLERANCE)


def _sample_targets(task: str, n: int, seed: int) -> dict[str, EndpointTarget]:
    sample = sample_tasks()[task]
    return sample.endpoint_targets(sample.generate_cohort(n, seed))


# Every endpoint the pipeline scores (a survival complement of an incidence is scored as that incidence).
@pytest.mark.parametrize(("task", "endpoint"), [(task, endpoint.name) for task, sample in sample_tasks().items()
                                                for endpoint in sample.spec.endpoints if not endpoint.complement_of])
def test_task_endpoints_equal_the_references(task, endpoint):
    """A task's endpoints as the pipeline scores them (the sample tasks': single event, competing causes and
    event-free survival): Uno's C (single event) or Wolbers' C (competing) at tau, and Harrell's C, against
    scikit-survival and hazardous."""
    target = _sample_targets(task, 700, 5)[endpoint]
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    rng = np.random.default_rng(2)
    risk = np.round(rng.uniform(size=len(time)) + 0.4 * (code == target.event_of_interest), 2)
    horizons = [12, 24, 36, 60]
    tau = evaluate.uno_tau(time, horizons)
    frame = pd.DataFrame({"event": code, "duration": time})
    if target.competing:
        expected = concordance_index_incidence(frame, risk[:, None], y_train=frame, time_grid=np.array([tau]),
                                               taus=[tau], event_of_interest=target.event_of_interest)[0]
    else:
        survival = Surv.from_arrays(event=code > 0, time=time)
        expected = concordance_index_ipcw(survival, survival, risk, tau=tau)[0]
    c, se = evaluate.concordance_with_se(target, risk, tau)
    assert c == pytest.approx(expected, abs=TOLERANCE) and 0 < se < 0.1
    assert evaluate.endpoint_uno_c(target, risk, horizons) == c
    event = code == target.event_of_interest
    harrell, harrell_se = evaluate.harrell_c_with_se(time, event.astype(int), risk)
    assert harrell == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=TOLERANCE)
    assert 0 < harrell_se < 0.1


# --- the competing-risks AUC and the censoring survival, without all pairs -------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_competing_auc_equals_all_pairs(seed):
    time, code, risk = random_cohort(400, 600 + seed, causes=3)
    for cause, month in ((1, 12.0), (2, 24.0), (3, 38.0)):
        assert evaluate.competing_auc(time, code, risk, month, cause) == pytest.approx(
            all_pairs_competing_auc(time, code, risk, month, cause), abs=TOLERANCE)


def test_censoring_survival_equals_the_loop():
    time, code, _ = random_cohort(500, 7, causes=2)
    at = np.concatenate([np.unique(time), np.unique(time) - 1e-9, [0.0, 100.0]])
    np.testing.assert_array_equal(evaluate._censoring_survival(time, code)(at),
                                  loop_censoring_survival(time, code)(at))
    nobody_censored = np.ones(len(time), dtype=int)
    np.testing.assert_array_equal(evaluate._censoring_survival(time, nobody_censored)(at), np.ones(len(at)))


@pytest.mark.parametrize("seed", SEEDS)
def test_reverse_kaplan_meier_equals_scikit_survival(seed):
    time, code, _ = random_cohort(400, 800 + seed, causes=1)
    np.testing.assert_array_equal(evaluate._reverse_kaplan_meier(time, code == 1),
                                  sksurv_reverse_kaplan_meier(time, code == 1))
    everyone = np.ones(len(time), dtype=bool)
    np.testing.assert_array_equal(evaluate._reverse_kaplan_meier(time, everyone), np.ones(len(time)))
    # An event and a censoring at a new last time: the censoring survival is zero there, and Uno's C is NaN
    # where scikit-survival raises.
    last = time.max() + 1
    time, code = np.append(time, [last, last]), np.append(code, [1, 0])
    assert evaluate._reverse_kaplan_meier(time, code == 1)[-1] == 0.0
    risk = np.arange(len(time), dtype=float)
    assert np.isnan(evaluate.uno_c(time, code, risk, last + 1))
    survival = Surv.from_arrays(event=code == 1, time=time)
    with pytest.raises(ValueError, match="censoring survival"):
        concordance_index_ipcw(survival, survival, risk, tau=last + 1)
