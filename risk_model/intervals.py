"""95 % intervals on every probability: a bootstrap ensemble of the registered family.

Each replicate refits every cause-specific model, with the same settings, on a bootstrap resample of the
development patients. At prediction, the replicates' spread on the complementary log-log scale of the event
probability gives an interval around the bundle's own estimate (so the estimate always lies inside and the bounds
stay in [0, 1]). The spread is estimated from B replicates only, so the multiplier is Student's t quantile with
B - 1 degrees of freedom, not the normal 1.96: even when the bootstrap's variance is exact, a normal sampling
error falls inside 1.96 estimated SDs with probability P(|t_(B-1)| <= 1.96) only (94.0 % at B = 30, 87.8 % at
B = 5), since an SD estimated too small loses more coverage than one too large gains.
It reflects sampling uncertainty of the fitted model in the form the task declares
(log2, splines, cuts: risk_model/preprocessing.py), not misspecification beyond that form.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from risk_model.bundle import ModelBundle

N_REPLICATES = 30
INTERVAL_METHOD = (
    f"bootstrap ensemble of {N_REPLICATES} refits on resampled development patients; interval "
    "on the complementary log-log scale of the event probability, the replicates' SD times "
    "Student's t quantile for their number; it covers the sampling uncertainty of the model in the "
    "form the task declares, not misspecification beyond that form"
)


def interval_method(bundle: ModelBundle) -> str | None:
    """What the intervals of this bundle are, with its own number of refits (a run may set another than 30)."""
    if not bundle.replicates:
        return None
    return INTERVAL_METHOD.replace(f"of {N_REPLICATES} refits", f"of {len(bundle.replicates)} refits")


@cache  # one value per replicate count; scipy is imported with the module, at start-up, not on a request
def multiplier(n_replicates: int) -> float:
    """The 97.5 % quantile of Student's t with n_replicates - 1 degrees of freedom (2.045 at 30 replicates)."""
    return float(stdtrit(n_replicates - 1, 0.975))


def _cloglog(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(-np.log1p(-p))


def _inverse_cloglog(x: np.ndarray) -> np.ndarray:
    return -np.expm1(-np.exp(x))


def endpoint_intervals(
    bundle: ModelBundle, frame: pd.DataFrame | np.ndarray, months: np.ndarray, estimates: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """(lower, upper) per endpoint, same shape as `estimates`; None when the bundle has no replicates."""
    if not bundle.replicates:
        return None
    only = next(iter(estimates)) if len(estimates) == 1 else None
    members = bundle.ensemble_endpoints(frame, months, only=only)
    return intervals_from_replicates(bundle, {name: members[name][1:] for name in estimates}, estimates)


def intervals_from_replicates(
    bundle: ModelBundle, replicates: dict[str, np.ndarray], estimates: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Intervals around each estimate (patients x months) from the replicates' values (replicates x patients x
    months), as `ModelBundle.ensemble_endpoints` gives them after the bundle's own model (member 0)."""
    intervals = {}
    for name, point in estimates.items():
        survival = bundle.endpoint_kinds[name] == "survival"
        event_point = 1.0 - point if survival else point  # intervals are built on the event probability
        event_draws = 1.0 - replicates[name] if survival else replicates[name]
        spread = multiplier(len(event_draws)) * np.std(_cloglog(event_draws), axis=0, ddof=1)
        centre = _cloglog(event_point)
        low, high = _inverse_cloglog(centre - spread), _inverse_cloglog(centre + spread)
        at_zero = event_point <= 0  # no event possible yet (month 0): the interval is the point
        low, high = np.where(at_zero, event_point, low), np.where(at_zero, event_point, high)
        intervals[name] = (1.0 - high, 1.0 - low) if survival else (low, high)
    return intervals
