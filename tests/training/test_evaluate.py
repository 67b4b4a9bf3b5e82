"""Metrics (clarifications section 4) against their references on hand-made data and on the sample competing task:
pseudo-observations against a brute-force jackknife, the evaluable horizons, a stable calibration slope, and the
competing-risk net benefit against Aalen-Johansen. The metrics against a generator's own truth are in the folder of
the task whose generator exposes it."""

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from tests.sample_tasks import COMPETING, sample_tasks
from training import evaluate


def tiny_cohort() -> tuple[np.ndarray, np.ndarray]:
    """60 patients in whole months: ties among events, between events and censorings, an event and a
    censoring exactly at 12 months, and an event at the largest time (leaving it out empties the risk set)."""
    rng = np.random.default_rng(4)
    time = rng.integers(1, 30, 60).astype(float)
    event = (rng.uniform(size=60) < 0.55).astype(int)
    time[:3], event[:3] = 12.0, [1, 0, 1]
    time[3], event[3] = 40.0, 1
    return time, event


MONTHS = [0.5, 6.0, 12.0, 12.5, 29.0, 40.0, 45.0]


@pytest.fixture(scope="module")
def jackknife() -> dict[float, tuple[float, np.ndarray]]:
    """Per month, lifelines' Kaplan-Meier risk on everyone and the brute-force jackknife pseudo-observations: each
    leave-one-out fit read at every month at once (61 fits, not 61 per month)."""
    time, event = tiny_cohort()
    n = len(time)

    def risks_km(keep: np.ndarray) -> np.ndarray:
        fitter = KaplanMeierFitter().fit(time[keep], event[keep])
        return 1.0 - fitter.survival_function_at_times(MONTHS).to_numpy(dtype=float)

    full = risks_km(np.ones(n, dtype=bool))
    left_out = np.array([risks_km(np.arange(n) != i) for i in range(n)])  # patients x months
    pseudo = n * full - (n - 1) * left_out
    return {month: (float(full[j]), pseudo[:, j]) for j, month in enumerate(MONTHS)}


@pytest.mark.parametrize("month", MONTHS)
def test_pseudo_observations_equal_brute_force_jackknife(jackknife, month):
    time, event = tiny_cohort()
    full, expected = jackknife[month]
    np.testing.assert_allclose(evaluate.pseudo_observations(time, event, month), expected, atol=1e-10)
    assert evaluate.kaplan_meier_risk(time, event, month) == pytest.approx(full, abs=1e-12)


def test_evaluable_horizons_skip_thin_follow_up():
    time = np.arange(1, 101) * 0.7  # 0.7 .. 70 months; 15 patients followed to 60 months, 49 to 36
    keep, skipped = evaluate.evaluable_horizons(time, [6, 12, 24, 36, 60])
    assert keep == [6, 12, 24, 36]
    assert list(skipped) == ["60m"] and "fewer than 20" in skipped["60m"]
    # Exactly 20 at risk counts; 19 does not.
    nineteen = np.concatenate([np.full(81, 5.0), np.full(19, 30.0)])
    twenty = np.concatenate([np.full(80, 5.0), np.full(20, 30.0)])
    assert evaluate.evaluable_horizons(nineteen, [24])[0] == []
    assert evaluate.evaluable_horizons(twenty, [24])[0] == [24]
    # A horizon at or past the last follow-up is skipped even with many at risk (sksurv would raise).
    assert evaluate.evaluable_horizons(twenty, [30])[0] == []


# --- issue 6: calibration and decision curves -------------------------------------------------------------


def _competing_targets(n: int, seed: int):
    task = sample_tasks()[COMPETING]
    return task.endpoint_targets(task.generate_cohort(n, seed))


def test_calibration_slope_does_not_diverge_with_risks_close_to_one():
    rng = np.random.default_rng(0)
    time = rng.integers(1, 80, 400).astype(float)
    event = (rng.uniform(size=400) < 0.7).astype(int)
    risk = np.clip(rng.beta(8, 1, 400), 0, 0.9999)  # mostly near 1, as at a late horizon
    slope = evaluate.calibration(time, event, risk, 60)["slope"]
    assert np.isnan(slope) or abs(slope) < 100


def test_net_benefit_with_competing_risks_uses_aalen_johansen():
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    target = _competing_targets(800, 9)["nrm"]
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    risk = np.random.default_rng(1).uniform(0, 0.4, len(time)) + 0.2 * (code == 2)
    curve = evaluate.net_benefit(time, code, risk, 24, np.array([0.1, 0.2, 0.3]), cause=2)

    def aj(rows: np.ndarray) -> float:
        times, cif = cumulative_incidence_competing_risks(code[rows], time[rows])
        return float(cif[2][np.searchsorted(times, 24, side="right") - 1])

    for row in curve.itertuples():
        treated = risk >= row.threshold
        odds = row.threshold / (1 - row.threshold)
        expected = treated.mean() * aj(treated) - treated.mean() * (1 - aj(treated)) * odds
        assert row.model == pytest.approx(expected, abs=1e-8)
        everyone = np.ones(len(time), dtype=bool)
        assert row.treat_all == pytest.approx(aj(everyone) - (1 - aj(everyone)) * odds, abs=1e-8)
