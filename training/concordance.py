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

from dataclasses import dataclass

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
def _tie_bounds(ranked: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each sorted risk x, how many sorted risks r have x - r > tol (lower) and x - r >= -tol (upper).

    Tested on the floating-point difference itself, which grows with x and falls with r, so two pointers that
    only move forward find both counts and the split between concordant, tied and discordant is exactly that of
    comparing `abs(r_i - r_j) <= tol` pair by pair.
    """
    n = ranked.size
    lower, upper = np.empty(n, np.int64), np.empty(n, np.int64)
    below, up_to = 0, 0
    for k in range(n):
        while below < n and ranked[k] - ranked[below] > tolerance:
            below += 1
        while up_to < n and ranked[k] - ranked[up_to] >= -tolerance:
            up_to += 1
        lower[k], upper[k] = below, up_to
    return lower, upper


@njit(cache=True)
def _sweep(by_time: np.ndarray, starts: np.ndarray, descending: bool, members: np.ndarray, weights: np.ndarray,
           queries: np.ndarray, rank: np.ndarray, lower: np.ndarray, upper: np.ndarray, case_view: bool,
           concordant: np.ndarray, pairs: np.ndarray) -> None:
    """Visit the times in order; at each time run the steps in turn, each inserting (or querying) the patients
    of `members[step]` with `weights[step]`. A query of patient p adds weight x (the inserted weight below p's
    risk, or above it when p is the control, plus half the tied weight) to concordant[p], and weight x (all the
    inserted weight) to pairs[p]."""
    tree = np.zeros(rank.size + 1)
    inserted = 0.0
    groups = starts.size - 1
    for g in range(groups):
        group = groups - 1 - g if descending else g
        for step in range(members.shape[0]):
            for k in range(starts[group], starts[group + 1]):
                p = by_time[k]
                if not members[step, p]:
                    continue
                weight = weights[step, p]
                if not queries[step]:
                    _add(tree, rank[p], weight)
                    inserted += weight
                    continue
                below = _prefix(tree, lower[p])
                tied = _prefix(tree, upper[p]) - below
                beyond = below if case_view else inserted - below - tied
                concordant[p] += weight * (beyond + 0.5 * tied)
                pairs[p] += weight * inserted


@dataclass(frozen=True)
class _Orders:
    by_time: np.ndarray  # patients in ascending time
    starts: np.ndarray  # where each distinct time starts in by_time, and the end
    rank: np.ndarray  # each patient's position in ascending risk
    lower: np.ndarray  # how many risks are lower beyond the tie tolerance
    upper: np.ndarray  # how many are lower or tied


def _orders(time: np.ndarray, risk: np.ndarray) -> _Orders:
    by_time = np.argsort(time, kind="stable")
    sorted_time = time[by_time]
    starts = np.concatenate([[0], np.flatnonzero(sorted_time[1:] != sorted_time[:-1]) + 1, [len(time)]])
    by_risk = np.argsort(risk)
    rank = np.empty(len(risk), dtype=np.int64)
    rank[by_risk] = np.arange(len(risk))
    lower, upper = _tie_bounds(risk[by_risk], TIED_RISK)
    return _Orders(by_time, starts, rank, lower[rank], upper[rank])


def _run(orders: _Orders, descending: bool, steps: list[tuple[np.ndarray, np.ndarray, bool]], case_view: bool
         ) -> tuple[np.ndarray, np.ndarray]:
    """One sweep over the times (ascending or descending); per-patient concordant and pair weights."""
    members = np.stack([mask for mask, _, _ in steps])
    weights = np.stack([weight for _, weight, _ in steps])
    queries = np.array([is_query for _, _, is_query in steps])
    concordant, pairs = np.zeros(len(orders.rank)), np.zeros(len(orders.rank))
    _sweep(orders.by_time, orders.starts, descending, members, weights, queries, orders.rank, orders.lower,
           orders.upper, case_view, concordant, pairs)
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
    orders = _orders(time, risk)
    ones, squared = np.ones(len(time)), inverse_g**2
    # Later patients: a case meets everyone after it, and those censored at its own time.
    case_c, case_p = _run(orders, True, [(censored, ones, False), (case, squared, True), (~censored, ones, False)],
                          case_view=True)
    control_c, control_p = _run(orders, False, [(~censored, ones, True), (case, squared, False),
                                                (censored, ones, True)], case_view=False)
    if competing.any():
        # Patients whose competing event came first (or at the case's time).
        extra = (_run(orders, False, [(competing, inverse_g, False), (case, inverse_g, True)], case_view=True),
                 _run(orders, True, [(case, inverse_g, False), (competing, inverse_g, True)], case_view=False))
        case_c, case_p = case_c + extra[0][0], case_p + extra[0][1]
        control_c, control_p = control_c + extra[1][0], control_p + extra[1][1]
    total = case_p.sum()
    if total <= 0:
        return float("nan"), float("nan")
    c = case_c.sum() / total
    influence = (case_c - c * case_p) + (control_c - c * control_p)
    return float(c), float(np.sqrt(np.sum(influence**2)) / total)
