"""Interventional TreeSHAP against one reference row at a time, for xgboost boosters, in numpy.

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

FACTORIAL = np.array([factorial(i) for i in range(64)], dtype=float)


@dataclass
class LeafConditions:
    """One row per (leaf, feature) on the leaf's path: the interval and whether a missing value goes there."""

    leaf_of: np.ndarray  # condition -> leaf index (sorted, so reduceat works)
    feature: np.ndarray  # condition -> matrix column
    lower: np.ndarray
    upper: np.ndarray
    missing_ok: np.ndarray
    leaf_value: np.ndarray  # leaf index -> value
    leaf_start: np.ndarray  # first condition of each leaf
    n_columns: int


def leaf_conditions(booster: Any, n_columns: int) -> LeafConditions:
    """Walk every tree of the booster once and merge each leaf's conditions per feature."""
    trees = booster.trees_to_dataframe()
    nodes = {row.ID: row for row in trees.itertuples(index=False)}
    rows: list[tuple[int, int, float, float, bool]] = []
    values: list[float] = []

    def walk(node_id: str, bounds: dict[int, tuple[float, float, bool]]) -> None:
        node = nodes[node_id]
        if node.Feature == "Leaf":
            leaf = len(values)
            values.append(float(node.Gain))
            for feature, (low, high, missing) in sorted(bounds.items()):
                rows.append((leaf, feature, low, high, missing))
            return
        feature = int(str(node.Feature).lstrip("f"))
        low, high, missing = bounds.get(feature, (-np.inf, np.inf, True))
        for child, goes_left in ((node.Yes, True), (node.No, False)):
            new_low, new_high = (low, min(high, node.Split)) if goes_left else (max(low, node.Split), high)
            walk(child, {**bounds, feature: (new_low, new_high, missing and node.Missing == child)})

    for tree in sorted(trees["Tree"].unique()):
        walk(f"{tree}-0", {})
    table = np.array(rows, dtype=object) if rows else np.empty((0, 5), dtype=object)
    leaf_of = table[:, 0].astype(int)
    starts = np.searchsorted(leaf_of, np.arange(len(values)))
    return LeafConditions(leaf_of=leaf_of, feature=table[:, 1].astype(int), lower=table[:, 2].astype(np.float32),
                          upper=table[:, 3].astype(np.float32), missing_ok=table[:, 4].astype(bool),
                          leaf_value=np.array(values), leaf_start=starts, n_columns=n_columns)


def satisfied(conditions: LeafConditions, matrix: np.ndarray) -> np.ndarray:
    """rows x conditions: does the row's value lie on the leaf's side of every split on that feature?"""
    values = matrix[:, conditions.feature].astype(np.float32)  # xgboost compares in float32
    missing = np.isnan(values)
    inside = (values >= conditions.lower) & (values < conditions.upper)
    return np.where(missing, conditions.missing_ok, inside)


def _per_leaf(conditions: LeafConditions, counts: np.ndarray) -> np.ndarray:
    """Sum condition-level counts per leaf (leaves without conditions get 0)."""
    n_leaves = len(conditions.leaf_value)
    if counts.shape[1] == 0:
        return np.zeros((counts.shape[0], n_leaves))
    has = np.diff(np.append(conditions.leaf_start, len(conditions.leaf_of))) > 0
    summed = np.zeros((counts.shape[0], n_leaves))
    summed[:, has] = np.add.reduceat(counts, conditions.leaf_start[has], axis=1)
    return summed


@dataclass
class References:
    """The reference rows' side of the game, which no patient changes (a bundle keeps it per cause)."""

    satisfied: np.ndarray  # references x conditions, 1.0 where the reference satisfies the condition
    per_leaf: np.ndarray  # references x leaves: how many of the leaf's conditions the reference satisfies
    to_column: np.ndarray  # conditions x matrix columns: the feature of each condition


def references(conditions: LeafConditions, matrix: np.ndarray) -> References:
    sat = satisfied(conditions, matrix).astype(float)
    to_column = np.zeros((len(conditions.feature), conditions.n_columns))
    to_column[np.arange(len(conditions.feature)), conditions.feature] = 1.0
    return References(satisfied=sat, per_leaf=_per_leaf(conditions, sat), to_column=to_column)


def reference_shapley(conditions: LeafConditions, patient: np.ndarray, refs: References) -> np.ndarray:
    """Shapley values of the margin for one patient against each reference row (references x columns).

    Per leaf, A (conditions only x satisfies), B (only the reference) and the conditions neither satisfies are
    counted from one product: the conditions both satisfy, beside the patient's and the reference's own counts.
    """
    x = satisfied(conditions, patient.reshape(1, -1)).astype(float)  # 1 x conditions
    x_count = _per_leaf(conditions, x)
    both = _per_leaf(conditions, refs.satisfied * x)
    a, b = x_count - both, refs.per_leaf - both
    size = np.diff(np.append(conditions.leaf_start, len(conditions.leaf_of)))
    reachable = (size[None, :] - x_count - b) == 0
    a_int, b_int = a.astype(int), b.astype(int)
    total = FACTORIAL[a_int + b_int]
    value = conditions.leaf_value[None, :] * reachable
    weight_a = np.where(a_int > 0, value * FACTORIAL[np.maximum(a_int - 1, 0)] * FACTORIAL[b_int] / total, 0.0)
    weight_b = np.where(b_int > 0, -value * FACTORIAL[a_int] * FACTORIAL[np.maximum(b_int - 1, 0)] / total, 0.0)
    only_x = x * (1.0 - refs.satisfied)
    only_b = (1.0 - x) * refs.satisfied
    per_condition = only_x * weight_a[:, conditions.leaf_of] + only_b * weight_b[:, conditions.leaf_of]
    return per_condition @ refs.to_column
