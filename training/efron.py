"""The Cox partial likelihood with Efron's ties, its gradient and Hessian, for lifelines' Newton-Raphson.

lifelines computes these (`_get_efron_values_single`) in a Python loop over the patients, one outer product per
patient: about 0.5 s per fit of all_hsct's 3,200 development patients, and a training run makes hundreds of fits
(interval refits, validation folds, family choice). The same sums written as cumulative sums and two matrix
products take a few milliseconds. lifelines keeps everything else: its normalisation, penalty, step sizes and
convergence rule, so the fitted coefficients are lifelines' own to rounding (tests/training/test_efron.py).

Efron's rule for m tied deaths at one time: the k-th (k = 0..m-1) removes k/m of the tied deaths' risk from the
risk set. Written per death: denominator r - (k/m) t, where r is the risk set's sum of exp(x beta) and t the
tied deaths' sum.
"""

from __future__ import annotations

import numpy as np


def efron_derivatives(x: np.ndarray, time: np.ndarray, event: np.ndarray, weights: np.ndarray,
                      beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(Hessian, gradient, log-likelihood) of the weighted Efron partial likelihood at `beta`; the patients must be
    sorted by time, ascending (as lifelines passes them). Deaths at one time share their weights' mean, as in
    lifelines and R's survival."""
    event = event.astype(bool)
    score = weights * np.exp(x @ beta)
    starts, group = _time_groups(time)
    # Risk set of each time: everyone whose time is at or after it (reverse cumulative sums from each start).
    risk = np.cumsum(score[::-1])[::-1][starts]
    risk_x = np.cumsum((score[:, None] * x)[::-1], axis=0)[::-1][starts]
    dead_group = group[event]
    n_groups = len(starts)
    deaths = np.bincount(dead_group, minlength=n_groups)
    tie = np.bincount(dead_group, score[event], minlength=n_groups)
    tie_x = _group_sums(dead_group, score[event, None] * x[event], n_groups)
    mean_weight = np.bincount(dead_group, weights[event], minlength=n_groups) / np.maximum(deaths, 1)
    # One row per death: its time's group and its share k/m of the tied deaths' risk.
    g = np.repeat(np.arange(n_groups), deaths)
    share = (np.arange(len(g)) - np.repeat(np.cumsum(deaths) - deaths, deaths)) / np.repeat(np.maximum(deaths, 1),
                                                                                         deaths)
    denominator = 1.0 / (risk[g] - share * tie[g])
    summand = (risk_x[g] - share[:, None] * tie_x[g]) * denominator[:, None]
    w = mean_weight[g]
    deaths_x = (weights[event][:, None] * x[event]).sum(axis=0)
    gradient = deaths_x - (w[:, None] * summand).sum(axis=0)
    log_likelihood = float(deaths_x @ beta + (w * np.log(denominator)).sum())
    # The risk-set second moments enter once per death; regrouped by patient they are one weighted X'X: a patient
    # is in the risk set of every time at or before its own.
    per_group = np.bincount(g, w * denominator, minlength=n_groups)
    tied_group = np.bincount(g, w * share * denominator, minlength=n_groups)
    at_risk_weight = np.cumsum(per_group)[group]
    tied_weight = np.where(event, tied_group[group], 0.0)
    second = x.T @ ((score * (at_risk_weight - tied_weight))[:, None] * x)
    hessian = (w[:, None] * summand).T @ summand - second
    return hessian, gradient, log_likelihood


def _time_groups(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first position of each distinct time (sorted input) and each patient's group number."""
    new = np.ones(len(time), dtype=bool)
    new[1:] = time[1:] != time[:-1]
    return np.flatnonzero(new), np.cumsum(new) - 1


def _group_sums(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, group, values)
    return sums
