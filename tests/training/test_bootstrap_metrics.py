"""The metric bootstrap's competing-risk Brier scores are hazardous' own, with one censoring estimate per draw."""

import numpy as np
import pandas as pd
import pytest
from hazardous.metrics import brier_score_incidence, integrated_brier_score_incidence

from features.tasks import EndpointTarget
from training.bootstrap import headline_metrics


@pytest.mark.parametrize("cause", [1, 2])
def test_brier_and_integrated_brier_equal_hazardous_public_functions(cause: int) -> None:
    rng = np.random.default_rng(cause)
    n = 400
    months = np.round(rng.exponential(30, n), 1) + 0.1
    code = rng.choice([0, 1, 2], n, p=[0.4, 0.35, 0.25])
    grid = np.arange(6.0, 37.0)
    risk = {h: rng.uniform(0.05, 0.6, n) for h in (12, 24, 36)}
    grid_risk = np.sort(rng.uniform(0.0, 0.6, (n, len(grid))), axis=1)
    target = EndpointTarget(months, code, event_of_interest=cause, competing=True)

    metrics = headline_metrics(target, risk, grid_risk, grid, [12, 24, 36], 24)

    y = pd.DataFrame({"event": code, "duration": months})
    assert metrics["brier_24m"] == float(brier_score_incidence(y, y, risk[24][:, None], [24],
                                                               event_of_interest=cause)[0])
    assert metrics["ibs"] == float(integrated_brier_score_incidence(y, y, grid_risk, grid, event_of_interest=cause))
    assert np.isfinite(metrics["cal_slope_24m"]) and np.isfinite(metrics["ici_24m"])
