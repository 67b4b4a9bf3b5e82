"""The product-limit of competing cause-specific hazards, read at a few months, in one compiled pass.

S(g) = S(g-) (1 - dH(g)) with dH the sum over causes of dH_k(g) = exp(margin_k) x the baseline increment of the
patient's stratum, and dF_k(g) = S(g-) dH_k(g). When dH > 1 (large relative hazards) the step's increments are
scaled to 1, so S stays in [0, 1] and S + sum F_k = 1 holds exactly.

numpy computed this as whole arrays (members x patients x event times): each cause's increments, their sum, a
running product and a running sum per cause, every one written out and read back, and numpy's running products
and sums are several times slower per cell than its elementwise products. Here each (member, patient) is walked
over the event times on its own (`_walk`) and only what an answer reads is stored: the values at the months, and
the first cause's increments when overall survival needs them. The operations and their order are numpy's (one
product per increment, causes summed in order, products and sums running forward), so the results are the same
bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _walk(rates: np.ndarray, steps: np.ndarray, stratum: np.ndarray, positions: np.ndarray, order: np.ndarray,
          needed: np.ndarray, first_slot: np.ndarray, free_out: np.ndarray, incidence_out: np.ndarray,
          first_out: np.ndarray) -> None:
    """Per (member, patient), three short loops over the event times, each carrying one running value: the
    causes' total hazard step, then the event-free probability (kept before each step), then each needed cause's
    incidence. One loop carrying every cause's running sum in an array was much slower. `order` sorts the months
    by `positions`, their last grid time (-1: before the first), so each loop writes them as it passes."""
    causes, members, patients = rates.shape
    grid = steps.shape[3]
    keep_first = first_out.shape[2] > 0
    first_month = np.searchsorted(positions[order], 0)  # months before it lie before the first grid time
    total, before, scale = np.empty(grid), np.empty(grid), np.empty(grid)
    for m in range(members):
        for p in range(patients):
            row = stratum[m, p]
            total[:] = 0.0
            for k in range(causes):
                rate, step = rates[k, m, p], steps[k, m, row]
                for g in range(grid):
                    total[g] += rate * step[g]
            for j in range(first_month):
                free_out[m, p, order[j]] = 1.0
            survival, capped, j = 1.0, False, first_month
            for g in range(grid):
                before[g] = survival
                if total[g] > 1.0:  # the step is scaled to 1, so no probability falls below 0
                    capped, scale[g] = True, 1.0 / total[g]
                    survival = survival * (1.0 - total[g] * scale[g])
                else:
                    scale[g] = 1.0
                    survival = survival * (1.0 - total[g])
                while j < order.size and positions[order[j]] == g:
                    free_out[m, p, order[j]] = survival
                    j += 1
            for k in range(causes):
                if not needed[k]:
                    continue
                rate, step, running, j = rates[k, m, p], steps[k, m, row], 0.0, first_month
                for g in range(grid):
                    increment = before[g] * (rate * step[g])
                    if capped:
                        increment = increment * scale[g]
                    running += increment
                    if k == 0 and keep_first and first_slot[g] >= 0:
                        first_out[m, p, first_slot[g]] = increment
                    while j < order.size and positions[order[j]] == g:
                        incidence_out[k, m, p, order[j]] = running
                        j += 1


def product_limit_at(rates: np.ndarray, steps: np.ndarray, stratum: np.ndarray | None, grid: np.ndarray,
                     months: np.ndarray, needed: set[int], keep_first: bool = False,
                     first_at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Event-free probability and each needed cause's cumulative incidence at each month (members x patients x
    months; incidence: causes x ..., 0 for a cause not needed), and with `keep_first` the first cause's incidence
    increments at the grid positions `first_at` (default: every grid time; members x patients x positions), which
    overall survival reads.

    rates: exp(margin) per cause (causes x members x patients); steps: each member's baseline hazard increments per
    stratum on the grid (causes x members x strata x grid); stratum: each patient's row of `steps` (members x
    patients; None: the first).
    """
    causes, members, patients = rates.shape
    positions = np.searchsorted(grid, months, side="right") - 1
    free = np.empty((members, patients, len(months)))
    incidence = np.zeros((causes, members, patients, len(months)))
    kept = np.arange(len(grid)) if first_at is None else np.asarray(first_at, dtype=np.int64)
    first = np.empty((members, patients, len(kept) if keep_first else 0))
    first_slot = np.full(len(grid), -1, np.int64)
    first_slot[kept] = np.arange(len(kept))
    rows = np.zeros((members, patients), np.int64) if stratum is None else np.asarray(stratum).astype(np.int64)
    flags = np.array([k in needed or (k == 0 and keep_first) for k in range(causes)])
    _walk(np.ascontiguousarray(rates, dtype=float), np.ascontiguousarray(steps, dtype=float),
          np.ascontiguousarray(np.broadcast_to(rows, (members, patients))), positions.astype(np.int64),
          np.argsort(positions, kind="stable").astype(np.int64), flags, first_slot, free, incidence, first)
    return free, incidence, first if keep_first else None
