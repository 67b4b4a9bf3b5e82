"""Competing-risk probabilities of many patients in chunks: the same numbers as one pass, without holding a
patients x event-times matrix (a competing-risk task's 45,000 held-out patients of a 180,000 cohort took 8.9 GB
in one pass)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd

from risk_model import bundle as bundle_module
from tests.training.test_competing_risks import toy_bundle


def daily_cohort(n: int, seed: int) -> pd.DataFrame:
    """Like the competing-risk toy cohort, with times in whole days (about 1,500 distinct event times)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.integers(0, 2, n).astype(float)
    relapse = rng.exponential(40 / np.exp(0.6 * x1), n)
    nrm = rng.exponential(80 / np.exp(0.5 * x2), n)
    censor = rng.uniform(6, 90, n)
    time = np.ceil(30.4375 * np.minimum.reduce([relapse, nrm, censor])) / 30.4375
    code = np.select([relapse <= np.minimum(nrm, censor), nrm <= np.minimum(relapse, censor)], [1, 2], 0)
    return pd.DataFrame({"x1": x1, "x2": x2, "time": time, "code": code})


MONTHS = np.array([12.0, 24.0, 36.0, 60.0])


def test_chunked_probabilities_equal_one_pass():
    frame = daily_cohort(1_500, seed=2)
    bundle = toy_bundle(frame, {"relapse": [0.6, 0.0], "nrm": [0.0, 0.5]})
    assert len(frame) > 2 * bundle_module.ENSEMBLE_ROWS
    chunked = bundle.endpoint_probabilities(frame, MONTHS)
    whole = bundle.endpoints_from_margins(bundle.margins(frame), MONTHS)
    assert set(chunked) == set(whole) == {"relapse", "nrm", "os", "lfs", "grfs"}
    for name in whole:
        assert chunked[name].shape == (len(frame), len(MONTHS))
        np.testing.assert_allclose(chunked[name], whole[name], rtol=0, atol=1e-12)
    only = bundle.endpoint_probabilities(frame, MONTHS, only="nrm")
    np.testing.assert_allclose(only["nrm"], whole["nrm"], rtol=0, atol=1e-12)


def test_many_patients_never_sit_in_memory_with_every_event_time():
    frame = daily_cohort(4_000, seed=3)
    bundle = toy_bundle(frame, {"relapse": [0.6, 0.0], "nrm": [0.0, 0.5]})
    bundle.endpoint_probabilities(frame.iloc[:10], MONTHS)  # caches the event-time grids
    event_times = len(bundle_module._jump_grid(list(bundle.causes.values()), MONTHS.max()))
    matrix_bytes = 8 * len(frame) * event_times
    assert event_times > 1_000
    tracemalloc.start()
    try:
        bundle.endpoint_probabilities(frame, MONTHS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * matrix_bytes  # one pass holds about ten such matrices at once
