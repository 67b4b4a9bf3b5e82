"""Coverage of a bundle's stated 95 % intervals against a generator's true probabilities (issue 16 item 3).

Shared by the tasks' coverage tests (tasks/<task>/tests/test_intervals.py): each builds its development cohort,
bundle and replicates as training does, and the truth its own generator knows; this module only compares them.
Coverage between 90 and 98 % is asserted per endpoint and horizon: it pools 400 patients of one development cohort,
so a band rather than 95 % exactly (a development cohort's shared error moves all patients together).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals

COVERAGE_BAND = (0.90, 0.98)
N_PATIENTS = 400


def coverage_lines(
    task: str, bundle: ModelBundle, patients: pd.DataFrame, months: np.ndarray, truth: dict[str, np.ndarray]
) -> dict[tuple[str, int], float]:
    """Print and return the coverage per endpoint and horizon of the bundle's stated 95 % intervals."""
    shares = {}
    for endpoint, true in truth.items():
        estimate = bundle.endpoint_probabilities(patients, months, only=endpoint)[endpoint]
        lower, upper = endpoint_intervals(bundle, patients, months, {endpoint: estimate})[endpoint]
        covered = (lower <= true) & (true <= upper)
        assert np.all(lower <= estimate) and np.all(estimate <= upper)
        for j, month in enumerate(months):
            shares[endpoint, int(month)] = share = float(covered[:, j].mean())
            width = 100 * np.median(upper[:, j] - lower[:, j])
            print(f"interval coverage {task} {endpoint} {int(month)}: {share:.3f} (median width {width:.1f})")
    return shares


def within_band(shares: dict[tuple[str, int], float]) -> bool:
    return all(COVERAGE_BAND[0] <= share <= COVERAGE_BAND[1] for share in shares.values())
