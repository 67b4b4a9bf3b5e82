"""Weighted concordance (Harrell, Uno, Wolbers) and its influence-function standard error in O(n log n).

A pair is a case i (the event of interest, as the caller defines it) and a control j that is either later
(T_j > T_i, or T_j = T_i and j censored; weight a_i = 1/G(T_i)^2, or 1 for Harrell) or had a competing event
first (T_j <= T_i; weight 1/(G(T_i) G(T_j))). The pair is concordant when r_i > r_j and counts one half when
|r_i - r_j| <= 1e-8 (the tolerance of scikit-survival and hazardous). C = sum w s / sum w, and its standard error
sqrt(sum_k u_k^2) / sum w, with u_k patient k's share of sum w (s - C) as case plus as control.

Each of those per-patient sums is a sum over patients inside a time window (a prefix or suffix in time order) and
a risk window (below, tied with or above the patient's risk): one sweep in time order with a Fenwick tree over
risk ranks gives all of them, four sweeps in all, instead of comparing every case with every patient.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TIED_RISK = 1e-8  # two predicted risks closer than this are tied (half a concordant pair), as in sksurv/hazardous


@njit(cache=True)
def _prefix(tree: np.ndarray, count: int) -> float:
    """Sum of the weights at risk ranks 0 .. count - 1."""
    total = 0.0
    while count > 0:
        total += tree[count]
        count -= count & -count
    return total


@njit(cache=True)
def _add(tree: np.ndarray, rank: int, weight: float) -> None:
    index = rank + 1
    while index < tree.size:
        tree[index] += weight
        index += index & -index


@njit(cache=True)
def _tie_bounds(risk: np.ndarray, ranked: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each patient k, how many sorted risks r satisfy r_k - r > tol (lower) and r_k - r >= -tol (upper).

    Binary searches on the floating-point difference itself (monotone in r), so the split between concordant,
    tied and discordant is exactly that of comparing `abs(r_i - r_j) <= tol` pair by pair.
    """
    n = risk.size
    lower, upper = np.empty(n, np.int64), np.empty(n, np.int64)
    for k in range(n):
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if risk[k] - ranked[mid] > tolerance:
                lo = mid + 1
            else:
                hi = mid
        lower[k] = lo
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            if risk[k] - ranked[mid] >= -tolerance:
                lo = mid + 1
            else:
                hi = mid
        upper[k] = lo
    return lower, upper


@njit(cache=True)
def _sweep(patients: np.ndarray, weights: np.ndarray, is_query: np.ndarray, rank: np.ndarray, lower: np.ndarray,
           upper: np.ndarray, case_view: bool, concordant: np.ndarray, pairs: np.ndarray) -> None:
    """Run insertions and queries in the given order. A query of patient p adds weight x (the inserted weight
    below p's risk, or above it when p is the control, plus half the tied weight) to concordant[p] and weight x
    (all inserted weight) to pairs[p]."""
    tree = np.zeros(rank.size + 1)
    inserted = 0.0
    for k in range(patients.size):
        p = patients[k]
        if not is_query[k]:
            _add(tree, rank[p], weights[k])
            inserted += weights[k]
            continue
        below = _prefix(tree, lower[p])
        tied = _prefix(tree, upper[p]) - below
        beyond = below if case_view else inserted - below - tied
        concordant[p] += weights[k] * (beyond + 0.5 * tied)
        pairs[p] += weights[k] * inserted


def _run(time: np.ndarray, descending: bool, steps: list[tuple[np.ndarray, np.ndarray, bool]],
         bounds: tuple[np.ndarray, np.ndarray, np.ndarray], case_view: bool
         ) -> tuple[np.ndarray, np.ndarray]:
    """One sweep over the times (ascending or descending); within a time, `steps` run in their order, each
    inserting or querying the patients of a mask with their weights."""
    patients, weights, queries, phases = [], [], [], []
    for phase, (mask, weight, is_query) in enumerate(steps):
        members = np.flatnonzero(mask)
        patients.append(members)
        weights.append(weight[members])
        queries.append(np.full(len(members), is_query))
        phases.append(np.full(len(members), phase))
    patient = np.concatenate(patients)
    order = np.lexsort((np.concatenate(phases), -time[patient] if descending else time[patient]))
    concordant, pairs = np.zeros(len(time)), np.zeros(len(time))
    rank, lower, upper = bounds
    _sweep(patient[order], np.concatenate(weights)[order], np.concatenate(queries)[order], rank, lower, upper,
           case_view, concordant, pairs)
    return concordant, pairs


def weighted_concordance(time: np.ndarray, risk: np.ndarray, case: np.ndarray, censored: np.ndarray,
                         inverse_g: np.ndarray, competing: np.ndarray) -> tuple[float, float]:
    """C and its standard error (see the module's docstring); NaN, NaN when there is no comparable pair.

    `case`, `censored` and `competing` are disjoint masks; `inverse_g` is 1/G(T) (ones for Harrell's C).
    """
    time, risk = np.asarray(time, dtype=float), np.asarray(risk, dtype=float)
    case, censored, competing = (np.asarray(m, dtype=bool) for m in (case, censored, competing))
    inverse_g = np.asarray(inverse_g, dtype=float)
    if not np.all(np.isfinite(risk)):
        raise ValueError("the risk scores must be finite numbers to compute a concordance")
    if not case.any():
        return float("nan"), float("nan")
    order = np.argsort(risk, kind="stable")
    rank = np.empty(len(risk), dtype=np.int64)
    rank[order] = np.arange(len(risk))
    bounds = (rank, *_tie_bounds(risk, risk[order], TIED_RISK))
    ones, squared = np.ones(len(time)), inverse_g**2
    # Later patients: a case meets everyone after it, and those censored at its own time.
    case_c, case_p = _run(time, True, [(censored, ones, False), (case, squared, True), (~censored, ones, False)],
                          bounds, case_view=True)
    control_c, control_p = _run(time, False, [(~censored, ones, True), (case, squared, False),
                                              (censored, ones, True)], bounds, case_view=False)
    if competing.any():
        # Patients whose competing event came first (or at the case's time).
        extra = (_run(time, False, [(competing, inverse_g, False), (case, inverse_g, True)], bounds, case_view=True),
                 _run(time, True, [(case, inverse_g, False), (competing, inverse_g, True)], bounds, case_view=False))
        case_c, case_p = case_c + extra[0][0], case_p + extra[0][1]
        control_c, control_p = control_c + extra[1][0], control_p + extra[1][1]
    total = case_p.sum()
    if total <= 0:
        return float("nan"), float("nan")
    c = case_c.sum() / total
    influence = (case_c - c * case_p) + (control_c - c * control_p)
    return float(c), float(np.sqrt(np.sum(influence**2)) / total)
