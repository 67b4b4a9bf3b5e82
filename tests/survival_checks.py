"""Kaplan-Meier survival with Greenwood's standard error, for the tasks' published-figure checks
(tasks/<task>/tests/test_synthetic.py), which compare it with a published figure's band. lifelines fits the curve;
Greenwood's SE is read from its event table (lifelines uses it only inside its log-log confidence interval)."""

from __future__ import annotations

import numpy as np
from lifelines import KaplanMeierFitter


def greenwood_at(fitter: KaplanMeierFitter, month: float) -> tuple[float, float]:
    """S(month) of a fitted Kaplan-Meier curve and its Greenwood SE."""
    table = fitter.event_table
    table = table[(table.index <= month) & (table["observed"] > 0)]
    n, d = table["at_risk"].to_numpy(float), table["observed"].to_numpy(float)
    survival = float(fitter.survival_function_at_times(month).iloc[0])
    return survival, survival * float(np.sqrt(np.sum(d / (n * np.maximum(n - d, 1)))))


def survival_with_se(months: np.ndarray, ended: np.ndarray, month: float) -> tuple[float, float]:
    """Kaplan-Meier probability of no event by `month` (`ended`: the event happened) and its Greenwood SE."""
    fitter = KaplanMeierFitter().fit(np.asarray(months, float), np.asarray(ended, bool))
    return greenwood_at(fitter, month)
