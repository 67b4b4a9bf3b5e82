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
    slots: np.ndarray  # `_slots`: each leaf's conditions by position, for per-leaf sums


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
                          leaf_value=np.array(values), leaf_start=starts, n_columns=n_columns,
                          slots=_slots(starts, len(leaf_of)))


def satisfied(conditions: LeafConditions, matrix: np.ndarray) -> np.ndarray:
    """rows x conditions: does the row's value lie on the leaf's side of every split on that feature?"""
    values = matrix[:, conditions.feature].astype(np.float32)  # xgboost compares in float32
    missing = np.isnan(values)
    inside = (values >= conditions.lower) & (values < conditions.upper)
    return np.where(missing, conditions.missing_ok, inside)


def _per_leaf(conditions: LeafConditions, counts: np.ndarray) -> np.ndarray:
    """Sum condition-level counts per leaf (conditions [x columns] -> leaves [x columns]; a leaf without conditions
    gets 0): one gather per condition slot of the deepest leaf, where a sum per leaf would cost a call."""
    padded = np.concatenate([counts, np.zeros((1, *counts.shape[1:]))])
    total = np.zeros((len(conditions.leaf_value), *counts.shape[1:]))
    for slot in conditions.slots:
        total += padded[slot]
    return total


def _sizes(leaf_start: np.ndarray, n_conditions: int) -> np.ndarray:
    return np.diff(np.append(leaf_start, n_conditions))


def _slots(leaf_start: np.ndarray, n_conditions: int) -> np.ndarray:
    """(deepest leaf's conditions x leaves): the k-th condition of each leaf, or n_conditions (a zero row) when the
    leaf has fewer."""
    sizes = _sizes(leaf_start, n_conditions)
    k = np.arange(int(sizes.max(initial=0)))[:, None]
    return np.where(k < sizes[None, :], leaf_start[None, :] + k, n_conditions)


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
    """The reference rows' side of the game, which no patient changes (a bundle keeps it per cause). Conditions
    and leaves run down the first axis, reference rows across."""

    satisfied: np.ndarray  # conditions x references, 1.0 where the reference satisfies the condition
    unsatisfied: np.ndarray  # 1 - satisfied
    per_leaf: np.ndarray  # leaves x references: how many of the leaf's conditions the reference satisfies
    from_column: np.ndarray  # matrix columns x conditions: 1 at each condition's feature
    leaf_size: np.ndarray  # leaf -> its number of conditions
    to_x: np.ndarray  # `_shapley_weights` of the deepest leaf, indexed by a * width + b
    to_reference: np.ndarray
    width: int  # the deepest leaf's number of conditions + 1


def references(conditions: LeafConditions, matrix: np.ndarray) -> References:
    sat = np.ascontiguousarray(satisfied(conditions, matrix).T.astype(float))
    from_column = np.zeros((conditions.n_columns, len(conditions.feature)))
    from_column[conditions.feature, np.arange(len(conditions.feature))] = 1.0
    sizes = _sizes(conditions.leaf_start, len(conditions.leaf_of))
    depth = int(sizes.max(initial=0))
    to_x, to_reference = _shapley_weights(depth)
    return References(satisfied=sat, unsatisfied=1.0 - sat, per_leaf=_per_leaf(conditions, sat),
                      from_column=from_column, leaf_size=sizes.astype(float), to_x=to_x, to_reference=to_reference,
                      width=depth + 1)


def reference_shapley(conditions: LeafConditions, patient: np.ndarray, refs: References) -> np.ndarray:
    """Shapley values of the margin for one patient against each reference row (references x columns).

    Per leaf, A (conditions only x satisfies), B (only the reference) and the conditions neither satisfies are
    counted from one sum: the conditions both satisfy, beside the patient's and the reference's own counts. A
    leaf is reached only when neither-satisfies is empty; its value then goes to the A and B features with the
    weights of `_shapley_weights`.
    """
    x = satisfied(conditions, patient.reshape(1, -1))[0]  # conditions
    x_count = _per_leaf(conditions, x.astype(float))
    both = _per_leaf(conditions, refs.satisfied * x[:, None])  # leaves x references
    a = x_count[:, None] - both
    b = refs.per_leaf - both
    reached = (refs.leaf_size[:, None] - x_count[:, None] - b) == 0
    cell = (a * refs.width + b).astype(np.intp)
    value = conditions.leaf_value[:, None] * reached
    to_x, to_reference = (value * table[cell] for table in (refs.to_x, refs.to_reference))
    leaf = conditions.leaf_of
    per_condition = np.where(x[:, None], refs.unsatisfied * to_x[leaf], refs.satisfied * to_reference[leaf])
    return (refs.from_column @ per_condition).T
