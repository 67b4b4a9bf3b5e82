"""The compiled product-limit against its numpy formulation (the one the bundle used before), bit for bit."""

import numpy as np
import pytest

from risk_model.product_limit import product_limit_at


def numpy_product_limit(increments: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Event-free probability after each grid time and each cause's incidence increments, as whole arrays."""
    total = np.sum(increments, axis=0)
    capped = total > 1.0
    scale = np.where(capped, 1.0 / np.where(total > 0, total, 1.0), 1.0)
    survival_after = np.cumprod(1.0 - total * scale if capped.any() else 1.0 - total, axis=-1)
    survival_before = np.concatenate([np.ones((*total.shape[:-1], 1)), survival_after[..., :-1]], axis=-1)
    return survival_after, [survival_before * inc * scale if capped.any() else survival_before * inc
                            for inc in increments]


def at_months(grid: np.ndarray, values: np.ndarray, months: np.ndarray, start: float) -> np.ndarray:
    index = np.searchsorted(grid, months, side="right") - 1
    return np.concatenate([np.full((*values.shape[:-1], 1), start), values], axis=-1)[..., index + 1]


CASES = [  # causes, members, patients, strata, grid times, hazard scale (large: steps capped at 1)
    (2, 31, 5, 3, 300, 0.002),
    (4, 2, 50, 1, 200, 0.3),
    (2, 1, 1, 5, 700, 0.002),
    (3, 4, 7, 2, 50, 0.3),
    (1, 3, 4, 1, 40, 0.01),
]


@pytest.mark.parametrize(("causes", "members", "patients", "strata", "times", "hazard"), CASES)
def test_equals_the_numpy_formulation_bit_for_bit(causes: int, members: int, patients: int, strata: int,
                                                  times: int, hazard: float) -> None:
    rng = np.random.default_rng(causes * 1000 + times)
    grid = np.sort(rng.uniform(0.1, 70, times))
    steps = rng.exponential(hazard, (causes, members, strata, times))
    rates = np.exp(rng.normal(0, 2 if hazard > 0.1 else 1, (causes, members, patients)))
    stratum = rng.integers(0, strata, (members, patients)).astype(float) if strata > 1 else None
    # Unsorted and repeated months, one before the first event time and one past the last.
    months = np.array([12.0, 24.0, 0.0, 60.0, 1.0, 60.0, float(grid[0]) / 2, 75.0])
    rows = (np.zeros((members, patients), int) if stratum is None else stratum.astype(int))
    increments = [rates[k][:, :, None] * steps[k][np.arange(members)[:, None], rows] for k in range(causes)]
    survival_after, expected = numpy_product_limit(increments)
    needed = set(range(causes))

    free, incidence, first = product_limit_at(rates, steps, stratum, grid, months, needed, keep_first=True)

    assert np.array_equal(free, at_months(grid, survival_after, months, 1.0))
    for k in range(causes):
        assert np.array_equal(incidence[k], at_months(grid, np.cumsum(expected[k], axis=-1), months, 0.0))
    assert np.array_equal(first, expected[0])
    np.testing.assert_allclose(free + incidence.sum(axis=0), 1.0, atol=1e-12)
    # Kept at some grid times only (overall survival keeps the first cause's event times): the same increments.
    some = np.sort(rng.choice(len(grid), len(grid) // 3, replace=False))
    same_free, _, first_some = product_limit_at(rates, steps, stratum, grid, months, needed, keep_first=True,
                                                first_at=some)
    assert np.array_equal(first_some, expected[0][..., some]) and np.array_equal(same_free, free)
    assert np.all((free >= 0) & (free <= 1))


def test_only_the_needed_incidences_are_computed() -> None:
    rng = np.random.default_rng(7)
    grid = np.sort(rng.uniform(0.1, 60, 80))
    steps = rng.exponential(0.01, (3, 1, 1, 80))
    rates = np.exp(rng.normal(size=(3, 1, 6)))
    months = np.array([6.0, 30.0])
    everything, incidence_all, _ = product_limit_at(rates, steps, None, grid, months, {0, 1, 2})
    free, incidence, first = product_limit_at(rates, steps, None, grid, months, {1})
    assert np.array_equal(free, everything) and first is None
    assert np.array_equal(incidence[1], incidence_all[1])
    assert not incidence[0].any() and not incidence[2].any()
