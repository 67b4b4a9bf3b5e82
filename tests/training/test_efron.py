"""The vectorised Efron partial likelihood equals lifelines' own loop, and a fit with it lifelines' stock fit.

Data with heavy ties (times drawn from 40 whole months), unequal weights, times with only censored patients and a
last time without a death: the cases where Efron's rule and the risk sets differ from the simple ones.
"""

import numpy as np
import pandas as pd
import pytest
from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

from training.efron import efron_derivatives
from training.families import cox_fitter


def tied_cohort(seed: int, n: int = 400, d: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    time = np.sort(rng.integers(1, 40, n)).astype(float)
    event = rng.random(n) < 0.55
    event[time == time.max()] = False
    return x, time, event, rng.uniform(0.5, 2.0, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derivatives_equal_lifelines_loop(seed: int) -> None:
    x, time, event, weights = tied_cohort(seed)
    beta = np.random.default_rng(seed + 10).normal(scale=0.4, size=x.shape[1])
    expected = SemiParametricPHFitter()._get_efron_values_single(
        pd.DataFrame(x), pd.Series(time), pd.Series(event), pd.Series(weights), None, beta)
    got = efron_derivatives(x, time, event, weights, beta)
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9)


def test_no_ties_one_death_and_none() -> None:
    """Distinct times (Efron = Breslow), a single death and none at all (a stratum can have no event): the edge
    cases of the tie shares and the risk sets."""
    x, _, _, weights = tied_cohort(3, n=30)
    time = np.arange(1.0, 31.0)
    for event in (np.arange(30) % 3 == 0, np.arange(30) == 7, np.zeros(30, dtype=bool)):
        beta = np.full(x.shape[1], 0.2)
        expected = SemiParametricPHFitter()._get_efron_values_single(
            pd.DataFrame(x), pd.Series(time), pd.Series(event), pd.Series(weights), None, beta)
        for mine, theirs in zip(efron_derivatives(x, time, event, weights, beta), expected, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("stratified", [False, True])
def test_fit_equals_lifelines_fit(stratified: bool) -> None:
    """The project's fitter (vectorised Efron) and lifelines' stock one reach the same penalised coefficients."""
    x, time, event, _ = tied_cohort(4, n=600)
    data = pd.DataFrame(x, columns=[f"x{j}" for j in range(x.shape[1])]).assign(t=time, e=event.astype(int))
    strata = None
    if stratified:
        data["s"], strata = np.arange(len(data)) % 3, ["s"]
    ours = cox_fitter()(penalizer=0.01, strata=strata).fit(data, "t", "e")
    stock = SemiParametricPHFitter(penalizer=0.01, strata=strata).fit(data, "t", "e")
    np.testing.assert_allclose(ours.params_.to_numpy(), stock.params_.to_numpy(), rtol=1e-8, atol=1e-10)
    assert ours.log_likelihood_ == pytest.approx(stock.log_likelihood_, rel=1e-10)
