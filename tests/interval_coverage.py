"""Coverage of a bundle's stated 95 % intervals against a generator's true probabilities (issue 16 item 3).

Shared by the tasks' coverage tests (tasks/<task>/tests/test_intervals.py): each builds its development cohorts,
bundles and replicates as training does, and the truth its own generator knows; this module only compares them.
Coverage between 90 and 98 % is asserted per endpoint and horizon, pooled over 400 held-out patients and over the
development cohorts a test fits: a band rather than 95 % exactly, because one development cohort's error moves all
its patients together, so the share covered on one cohort scatters around the expected coverage the "95 %" is
about (a test that pools several cohorts estimates it more closely).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals

COVERAGE_BAND = (0.90, 0.98)
N_PATIENTS = 400


def coverage_lines(
    task: str,
    bundles: ModelBundle | Sequence[ModelBundle],
    patients: pd.DataFrame,
    months: np.ndarray,
    truth: dict[str, np.ndarray],
) -> dict[tuple[str, int], float]:
    """Print and return the coverage per endpoint and horizon of the bundles' stated 95 % intervals (each bundle
    fitted on its own development cohort; the shares pool the patients of every bundle)."""
    bundles = [bundles] if isinstance(bundles, ModelBundle) else list(bundles)
    if len(bundles) > 1:
        print(f"interval coverage {task}: {len(patients)} patients pooled over {len(bundles)} development cohorts")
    shares = {}
    for endpoint, true in truth.items():
        covered, widths = [], []
        for bundle in bundles:
            estimate = bundle.endpoint_probabilities(patients, months, only=endpoint)[endpoint]
            lower, upper = endpoint_intervals(bundle, patients, months, {endpoint: estimate})[endpoint]
            assert np.all(lower <= estimate) and np.all(estimate <= upper)
            covered.append((lower <= true) & (true <= upper))
            widths.append(upper - lower)
        covered, widths = np.concatenate(covered), np.concatenate(widths)
        for j, month in enumerate(months):
            shares[endpoint, int(month)] = share = float(covered[:, j].mean())
            width = 100 * np.median(widths[:, j])
            print(f"interval coverage {task} {endpoint} {int(month)}: {share:.3f} (median width {width:.1f})")
    return shares


def within_band(shares: dict[tuple[str, int], float]) -> bool:
    return all(COVERAGE_BAND[0] <= share <= COVERAGE_BAND[1] for share in shares.values())
