"""Interventional TreeSHAP against one reference row at a time, for xgboost boosters, in one compiled loop.

For a patient x and a background row b, the game v(S) = margin(x_S, b_rest) decomposes over leaves: a leaf is
reached by a hybrid row when, for each feature on its path, the feature comes from whichever of x or b satisfies
the path's conditions. With A = features only x satisfies and B = features only b satisfies, the leaf value v
gives each feature in A v (|A|-1)! |B|! / (|A|+|B|)! and each feature in B -v |A|! (|B|-1)! / (|A|+|B|)!
(Lundberg et al. 2020, interventional TreeSHAP with one reference). The values add up to margin(x) - margin(b)
exactly, which the explanation path then maps to the probability scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np
from numba import njit

FACTORIAL = np.array([factorial(i) for i in range(64)], dtype=float)


@dataclass
class LeafConditions:
    """One row per (leaf, feature) on the leaf's path: the interval and whether a missing value goes there."""

    leaf_of: np.ndarray  # condition -> leaf index (sorted: a leaf's conditions are contiguous from leaf_start)
    feature: np.ndarray  # condition -> matrix column
    lower: np.ndarray
    upper: np.ndarray
    missing_ok: np.ndarray
    leaf_value: np.ndarray  # leaf index -> value
    leaf_start: np.ndarray  # first condition of each leaf
    n_columns: int


def leaf_conditions(model: dict[str, Any], n_columns: int) -> LeafConditions:
    """Walk every tree of xgboost's JSON model once (`CauseModel.tree_model`) and merge each leaf's conditions
    per feature. A split sends x < threshold to its left child and a missing value to its default child; a leaf's
    value is stored as its split condition."""
    rows: list[tuple[int, int, float, float, bool]] = []
    values: list[float] = []

    def walk(tree: dict[str, Any], node: int, bounds: dict[int, tuple[float, float, bool]]) -> None:
        left, right = tree["left_children"][node], tree["right_children"][node]
        if left == -1:
            leaf = len(values)
            values.append(float(tree["split_conditions"][node]))
            for feature, (low, high, missing) in sorted(bounds.items()):
                rows.append((leaf, feature, low, high, missing))
            return
        feature, split = int(tree["split_indices"][node]), float(tree["split_conditions"][node])
        low, high, missing = bounds.get(feature, (-np.inf, np.inf, True))
        missing_left = bool(tree["default_left"][node])
        walk(tree, left, {**bounds, feature: (low, min(high, split), missing and missing_left)})
        walk(tree, right, {**bounds, feature: (max(low, split), high, missing and not missing_left)})

    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        walk(tree, 0, {})
    table = np.array(rows, dtype=object) if rows else np.empty((0, 5), dtype=object)
    leaf_of = table[:, 0].astype(int)
    return LeafConditions(leaf_of=leaf_of, feature=table[:, 1].astype(int), lower=table[:, 2].astype(np.float32),
                          upper=table[:, 3].astype(np.float32), missing_ok=table[:, 4].astype(bool),
                          leaf_value=np.array(values), leaf_start=np.searchsorted(leaf_of, np.arange(len(values))),
                          n_columns=n_columns)


def satisfied(conditions: LeafConditions, matrix: np.ndarray) -> np.ndarray:
    """rows x conditions: does the row's value lie on the leaf's side of every split on that feature?"""
    values = matrix[:, conditions.feature].astype(np.float32)  # xgboost compares in float32
    missing = np.isnan(values)
    inside = (values >= conditions.lower) & (values < conditions.upper)
    return np.where(missing, conditions.missing_ok, inside)


def _sizes(leaf_start: np.ndarray, n_conditions: int) -> np.ndarray:
    return np.diff(np.append(leaf_start, n_conditions))


def _shapley_weights(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables indexed by a * (depth + 1) + b: the share of a reachable leaf's value that goes to each feature only
    x satisfies, (a-1)! b! / (a+b)!, and minus the share to each feature only the reference satisfies,
    a! (b-1)! / (a+b)!; 0 where there is no such feature."""
    to_x, to_reference = np.zeros((depth + 1, depth + 1)), np.zeros((depth + 1, depth + 1))
    for a in range(depth + 1):
        for b in range(depth + 1):
            total = FACTORIAL[a + b]
            if a:
                to_x[a, b] = FACTORIAL[a - 1] * FACTORIAL[b] / total
            if b:
                to_reference[a, b] = -FACTORIAL[a] * FACTORIAL[b - 1] / total
    return to_x.ravel(), to_reference.ravel()


@dataclass
class References:
    """The reference rows' side of the game, which no patient changes (a bundle keeps it per cause)."""

    satisfied: np.ndarray  # conditions x references: does the reference satisfy the condition
    leaf_size: np.ndarray  # leaf -> its number of conditions
    to_x: np.ndarray  # `_shapley_weights` of the deepest leaf, indexed by a * width + b
    to_reference: np.ndarray
    width: int  # the deepest leaf's number of conditions + 1


def references(conditions: LeafConditions, matrix: np.ndarray) -> References:
    sizes = _sizes(conditions.leaf_start, len(conditions.leaf_of))
    depth = int(sizes.max(initial=0))
    to_x, to_reference = _shapley_weights(depth)
    return References(satisfied=np.ascontiguousarray(satisfied(conditions, matrix).T), leaf_size=sizes,
                      to_x=to_x, to_reference=to_reference, width=depth + 1)


def reference_shapley(conditions: LeafConditions, patients: np.ndarray, refs: References) -> np.ndarray:
    """Shapley values of the margin for each patient against each reference row (patients x references x
    columns; one patient as a 1-D row gives references x columns).

    Per leaf and reference, a condition belongs to A (only the patient satisfies it), B (only the reference) or
    to neither; the leaf is reached only when no condition is satisfied by neither, and its value then goes to the
    A and B features with the weights of `_shapley_weights`.
    """
    rows = np.atleast_2d(patients)
    out = np.zeros((len(rows), refs.satisfied.shape[1], conditions.n_columns))
    _shapley(np.ascontiguousarray(satisfied(conditions, rows)), refs.satisfied, conditions.leaf_start,
             refs.leaf_size, conditions.feature, conditions.leaf_value, refs.to_x, refs.to_reference, refs.width,
             out)
    return out if np.ndim(patients) > 1 else out[0]


@njit(cache=True)
def _shapley(by_patient: np.ndarray, by_reference: np.ndarray, leaf_start: np.ndarray, leaf_size: np.ndarray,
             feature: np.ndarray, leaf_value: np.ndarray, to_x: np.ndarray, to_reference: np.ndarray, width: int,
             out: np.ndarray) -> None:
    """by_patient: patients x conditions, by_reference: conditions x references, both satisfied-or-not; out:
    patients x references x columns, added to."""
    for p in range(by_patient.shape[0]):
        x = by_patient[p]
        for leaf in range(leaf_value.shape[0]):
            first, last = leaf_start[leaf], leaf_start[leaf] + leaf_size[leaf]
            for r in range(by_reference.shape[1]):
                a, b, reached = 0, 0, True
                for c in range(first, last):
                    if x[c]:
                        a += not by_reference[c, r]
                    elif by_reference[c, r]:
                        b += 1
                    else:
                        reached = False
                        break
                if not reached:
                    continue
                share_x = leaf_value[leaf] * to_x[a * width + b]
                share_reference = leaf_value[leaf] * to_reference[a * width + b]
                for c in range(first, last):
                    if x[c] != by_reference[c, r]:
                        out[p, r, feature[c]] += share_x if x[c] else share_reference
