"""The Aalen-Johansen / Kaplan-Meier jackknife by closed-form risk-set updates, held equal to the former
patients x event-times implementation (kept here as the reference), and the public functions shown to build no
such matrix."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from features.tasks import EndpointTarget
from training import evaluate
from training.evaluation_plots import decile_points
from training.pipeline import kaplan_meier_curve


def reference_aalen_johansen(time: np.ndarray, code: np.ndarray, cause: int, month: float, leave_one_out: bool
                             ) -> np.ndarray | float:
    """training/evaluate.py's `_aalen_johansen` before the closed form: every patient against every event time."""
    time, code = np.asarray(time, dtype=float), np.asarray(code)
    grid = np.unique(time[(code > 0) & (time <= month)])
    if not len(grid):
        return np.zeros(len(time)) if leave_one_out else 0.0
    n_at_risk = (time[None, :] >= grid[:, None]).sum(axis=1).astype(float)
    at_grid = time[None, :] == grid[:, None]
    n_events = (at_grid & (code[None, :] > 0)).sum(axis=1).astype(float)
    n_cause = (at_grid & (code[None, :] == cause)).sum(axis=1).astype(float)
    if not leave_one_out:
        survival_before = np.concatenate([[1.0], np.cumprod(1.0 - n_events / n_at_risk)[:-1]])
        return float(np.sum(survival_before * n_cause / n_at_risk))
    in_risk = (time[:, None] >= grid[None, :]).astype(float)
    own = (time[:, None] == grid[None, :])
    at_risk_i = np.maximum(n_at_risk[None, :] - in_risk, 1.0)
    events_i = n_events[None, :] - (own & (code[:, None] > 0))
    cause_i = n_cause[None, :] - (own & (code[:, None] == cause))
    factors = 1.0 - events_i / at_risk_i
    survival_before = np.concatenate([np.ones((len(time), 1)), np.cumprod(factors, axis=1)[:, :-1]], axis=1)
    return np.sum(survival_before * cause_i / at_risk_i, axis=1)


def reference_pseudo(time: np.ndarray, code: np.ndarray, month: float, cause: int) -> np.ndarray:
    n = len(time)
    full = reference_aalen_johansen(time, code, cause, month, leave_one_out=False)
    return n * full - (n - 1) * reference_aalen_johansen(time, code, cause, month, leave_one_out=True)


def tied_cohort(n: int, seed: int, causes: int) -> tuple[np.ndarray, np.ndarray]:
    """Times on a coarse grid (many ties between events, competing events and censorings)."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, n).astype(float) / 2.0
    code = rng.integers(0, causes + 1, n)
    return time, code


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("causes", [1, 2, 3])
def test_leave_one_out_equals_the_former_implementation(seed, causes):
    time, code = tied_cohort(40 + 7 * seed, seed, causes)
    for cause in range(1, causes + 1):
        for month in (0.25, 0.5, 2.0, 3.25, 5.0, 7.0, 20.0):
            expected = reference_aalen_johansen(time, code, cause, month, leave_one_out=True)
            np.testing.assert_allclose(evaluate._aalen_johansen(time, code, cause, month, leave_one_out=True),
                                       expected, rtol=0, atol=1e-12)
            assert evaluate.observed_risk(time, code, cause, month) == pytest.approx(
                reference_aalen_johansen(time, code, cause, month, leave_one_out=False), abs=1e-12)
            np.testing.assert_allclose(evaluate.pseudo_observations(time, code, month, cause),
                                       reference_pseudo(time, code, month, cause), rtol=0, atol=1e-9)


@pytest.mark.parametrize("time, code", [
    ([1.0, 1.0, 2.0, 2.0], [1, 1, 1, 1]),  # everyone has an event: the survival reaches zero
    ([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 1]),  # the last patient alone at risk with their event
    ([3.0, 3.0, 3.0, 3.0, 3.0], [1, 2, 0, 1, 0]),  # one time for all
    ([5.0], [1]),
    ([5.0], [0]),
    ([2.0, 4.0, 6.0], [0, 0, 0]),  # no event at all
])
def test_edge_cases_equal_the_former_implementation(time, code):
    time, code = np.asarray(time), np.asarray(code)
    for cause in (1, 2):
        for month in (0.5, 1.0, 2.0, 3.0, 4.0, 10.0):
            np.testing.assert_allclose(evaluate.pseudo_observations(time, code, month, cause),
                                       reference_pseudo(time, code, month, cause), rtol=0, atol=1e-9)


def test_continuous_times_equal_the_former_implementation():
    rng = np.random.default_rng(3)
    time = rng.exponential(10.0, 300)
    code = rng.choice([0, 1, 2], 300, p=[0.4, 0.35, 0.25])
    for month in (1.0, 10.0, 25.0):
        np.testing.assert_allclose(evaluate.pseudo_observations(time, code, month, 2),
                                   reference_pseudo(time, code, month, 2), rtol=0, atol=1e-9)


def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def registry_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times in whole days over 2 years (about 730 distinct event times), three outcome codes."""
    rng = np.random.default_rng(seed)
    time = np.ceil(rng.uniform(0, 730, n)) / 30.4375
    code = rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2])
    risk = np.clip(rng.beta(2, 5, n), 0.01, 0.99)
    return time, code, risk


def test_public_functions_build_no_patients_by_event_times_matrix():
    """20,000 patients x ~700 event times would take 112 MB per float matrix (the former code built several);
    the closed form needs a few arrays of one value per patient. (The calibration GLM's own transient garbage,
    statsmodels', is left out of this count.)"""
    time, code, risk = registry_like(20_000)
    n_event_times = len(np.unique(time[code > 0]))
    matrix_bytes = 8 * len(time) * n_event_times
    assert n_event_times > 600
    target = EndpointTarget(time, code, 1, True)
    for call in (lambda: evaluate.pseudo_observations(time, code, 23.0, 1),
                 lambda: evaluate.observed_risk(time, code, 2, 23.0),
                 lambda: evaluate.kaplan_meier_risk(time, code > 0, 23.0),
                 lambda: evaluate.net_benefit(time, code, risk, 23.0, np.linspace(0.05, 0.5, 10), 1),
                 lambda: decile_points(target, risk, 23.0)):
        assert _peak_bytes(call) < matrix_bytes / 20


def reference_kaplan_meier_curve(months: np.ndarray, event: np.ndarray) -> dict[str, list[float]]:
    """training/pipeline.py's former version: one pass over all patients per event time."""
    grid = np.unique(months[event == 1])
    survival = np.cumprod([1.0 - np.sum((months == g) & (event == 1)) / np.sum(months >= g) for g in grid])
    return {"months": grid.tolist(), "survival": np.asarray(survival).tolist()}


@pytest.mark.parametrize("seed", range(4))
def test_post_relapse_curve_equals_the_former_loop_and_lifelines(seed):
    time, code = tied_cohort(200, seed, 1)
    curve = kaplan_meier_curve(time, code)
    expected = reference_kaplan_meier_curve(time, code)
    assert curve["months"] == expected["months"]
    np.testing.assert_allclose(curve["survival"], expected["survival"], rtol=0, atol=1e-12)
    fitter = KaplanMeierFitter().fit(time, code)
    np.testing.assert_allclose(curve["survival"], fitter.survival_function_at_times(curve["months"]).to_numpy(),
                               rtol=0, atol=1e-12)


def test_post_relapse_curve_without_events_is_empty():
    assert kaplan_meier_curve(np.array([1.0, 2.0]), np.array([0, 0])) == {"months": [], "survival": []}
