"""Every member's trees of one cause in flat arrays, evaluated for many patients in one vectorised pass.

A boosted bundle answers with its own booster and its bootstrap replicates (31 boosters per cause), and each
`inplace_predict` call costs a fixed ~0.3 ms whatever the model size. Here all members' trees are read once from
xgboost's JSON model and walked together, one step per tree level for every (patient, tree) pair at once, so a
one-patient answer pays numpy's per-call cost a few times instead of xgboost's 31 times.

The margins equal xgboost's own (`predict_type="margin"`) bit for bit: features and thresholds are compared in
float32 (`x < threshold` goes left, NaN follows the node's default child), each member's base margin is
`logf(base_score)` as xgboost computes it for `survival:cox`, and the leaves are added in float32 in tree order
after the base margin, as xgboost's CPU predictor accumulates them. Only numerical splits are read: the project
one-hot encodes categories, and a booster with categorical splits is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

ROWS_PER_PASS = 256  # as the bundle's ENSEMBLE_ROWS: (patients x trees) index arrays of one pass stay small
_LIBM = ctypes.CDLL(ctypes.util.find_library("m") or None)
_LIBM.logf.restype = ctypes.c_float
_LIBM.logf.argtypes = [ctypes.c_float]


@dataclass(frozen=True)
class CompiledForest:
    """The trees of several boosters as one node table. Node 0 is a shared leaf of value 0 that pads members with
    fewer trees (adding 0.0 in float32 changes no sum), so the trees are (members x trees_per_member), member-major.
    A split's right child is its left child + 1 (xgboost allocates children in pairs; a tree that breaks this is
    renumbered), so one step is `left + (x >= threshold)`; a leaf is its own left child and never goes right."""

    feature: np.ndarray  # node -> column of the (stacked) model matrix
    threshold: np.ndarray  # node -> float32 split value
    left: np.ndarray  # node -> left child
    right: np.ndarray  # node -> right child
    default_left: np.ndarray  # node -> a missing value goes left
    leaf_value: np.ndarray  # node -> float32 leaf value (0 at split nodes)
    roots: np.ndarray  # tree -> root node
    tree_member: np.ndarray  # tree -> member (booster) index
    base_margin: np.ndarray  # member -> float32 base margin
    depth: int  # the deepest tree's number of split levels
    n_columns: int  # width of the model matrix the features index
    # node -> column of the matrix `_doubled` builds: the NaN-as--inf copy for a default-left split, the NaN-as-+inf
    # copy for a default-right one, the last (all -inf) column for a leaf, which so never moves on.
    gather: np.ndarray

    @property
    def members(self) -> int:
        return len(self.base_margin)

    def first(self, count: int) -> CompiledForest:
        """The first `count` members only (their trees, the same node table)."""
        per_member = len(self.roots) // self.members
        return replace(
            self,
            roots=self.roots[: count * per_member],
            tree_member=self.tree_member[: count * per_member],
            base_margin=self.base_margin[:count],
        )


def compile_forest(
    boosters: list[Any], column_offsets: list[int] | None = None, n_columns: int | None = None
) -> CompiledForest:
    """Read each booster's trees once. `column_offsets[m]`: where member m's columns start in the stacked model
    matrix the margins will be asked for (members fitted on other column sets sit side by side); by default every
    member reads the same matrix."""
    models = [json.loads(bytes(booster.save_raw("json"))) for booster in boosters]
    offsets = column_offsets or [0] * len(models)
    width = (
        n_columns
        if n_columns is not None
        else max(int(m["learner"]["learner_model_param"]["num_feature"]) for m in models)
    )
    trees = [_trees_of(model) for model in models]
    nodes, starts = _node_table(trees, offsets)
    per_member = max(len(t) for t in trees)
    roots = np.zeros((len(models), per_member), np.int64)  # padding trees start (and end) at the zero leaf
    position = 0
    for member, member_trees in enumerate(trees):
        roots[member, : len(member_trees)] = starts[position : position + len(member_trees)]
        position += len(member_trees)
    split = np.flatnonzero(nodes["left"] != np.arange(len(nodes["left"])))
    gather = np.full(len(nodes["left"]), 2 * width, np.int64)
    gather[split] = nodes["feature"][split] + np.where(nodes["default_left"][split], 0, width)
    return CompiledForest(
        **nodes,
        roots=roots.ravel(),
        tree_member=np.repeat(np.arange(len(models)), per_member),
        base_margin=np.array([_base_margin(m) for m in models], np.float32),
        depth=_depth(nodes["left"], nodes["right"], roots.ravel()),
        n_columns=width,
        gather=gather,
    )


def _node_table(trees: list[list[dict[str, Any]]], offsets: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every tree's nodes in one table after the shared zero leaf (node 0), children renumbered globally, leaves
    pointing at themselves; and each tree's first node."""
    raw: dict[str, list[Any]] = {key: [] for key in _TREE_FIELDS}
    sizes, tree_offsets = [], []
    for member_trees, offset in zip(trees, offsets, strict=True):
        for tree in member_trees:
            if any(tree["split_type"]):
                raise ValueError(
                    "a categorical split: the project one-hot encodes categories, compiled forests read numerical "
                    "splits only"
                )
            tree = tree if _children_in_pairs(tree) else _renumbered(tree)
            for key in _TREE_FIELDS:
                raw[key].extend(tree[key])
            sizes.append(len(tree["left_children"]))
            tree_offsets.append(offset)
    starts = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    tree_start = np.repeat(starts, sizes)
    left_local = np.array(raw["left_children"], np.int64)
    leaf = left_local == -1
    own = np.arange(1, 1 + len(left_local))
    value = np.array(raw["split_conditions"], np.float32)  # a leaf's value is stored as its split condition
    nodes = {
        "feature": np.where(leaf, 0, np.array(raw["split_indices"], np.int64) + np.repeat(tree_offsets, sizes)),
        "threshold": np.where(leaf, np.float32(0), value),
        "left": np.where(leaf, own, left_local + tree_start),
        "right": np.where(leaf, own, np.array(raw["right_children"], np.int64) + tree_start),
        "default_left": np.array(raw["default_left"], bool) | leaf,
        "leaf_value": np.where(leaf, value, np.float32(0)),
    }
    return {key: np.concatenate([np.zeros(1, values.dtype), values]) for key, values in nodes.items()}, starts


_TREE_FIELDS = ("left_children", "right_children", "split_indices", "split_conditions", "default_left")


def _children_in_pairs(tree: dict[str, Any]) -> bool:
    pairs = zip(tree["left_children"], tree["right_children"], strict=True)
    return all(right == left + 1 for left, right in pairs if left != -1)


def _renumbered(tree: dict[str, Any]) -> dict[str, Any]:
    """The tree with nodes in breadth-first order, children allocated in pairs (xgboost reuses a pruned node's
    slot, which can part them)."""
    order, position = [0], 0
    while position < len(order):
        node = order[position]
        if tree["left_children"][node] != -1:
            order += [tree["left_children"][node], tree["right_children"][node]]
        position += 1
    new_id = {old: new for new, old in enumerate(order)}
    child = lambda key: [-1 if tree[key][o] == -1 else new_id[tree[key][o]] for o in order]  # noqa: E731
    return {
        "left_children": child("left_children"),
        "right_children": child("right_children"),
        **{key: [tree[key][o] for o in order] for key in ("split_indices", "split_conditions", "default_left")},
    }


def _trees_of(model: dict[str, Any]) -> list[dict[str, Any]]:
    learner = model["learner"]
    params = learner["learner_model_param"]
    if int(params.get("num_class", 0)) > 1 or int(params.get("num_target", 1)) > 1:
        raise ValueError("compiled forests read single-output boosters only")
    booster = learner["gradient_booster"]
    if booster.get("name", "gbtree") != "gbtree":
        raise ValueError(f"compiled forests read tree boosters, not {booster.get('name')}")
    return booster["model"]["trees"]


def _base_margin(model: dict[str, Any]) -> np.float32:
    """The margin xgboost starts every prediction from: base_score (a number, or a one-element vector in
    xgboost 3.1+) through the objective's link, computed as xgboost does (`logf` on the float32 value)."""
    learner = model["learner"]
    text = str(learner["learner_model_param"]["base_score"]).strip("[]")
    score = np.float32(float(text))
    objective = learner["objective"]["name"]
    if objective == "survival:cox":
        return np.float32(_LIBM.logf(score))
    if objective == "reg:squarederror":
        return score
    raise ValueError(f"compiled forests know the base margin of survival:cox and reg:squarederror, not {objective}")


def _depth(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """Number of split levels on the longest root-to-leaf path (leaves point at themselves)."""
    frontier, depth = np.unique(roots), 0
    while True:
        split = frontier[left[frontier] != frontier]
        if not len(split):
            return depth
        frontier, depth = np.concatenate([left[split], right[split]]), depth + 1


def forest_margins(forest: CompiledForest, matrix: np.ndarray, rows_per_pass: int = ROWS_PER_PASS) -> np.ndarray:
    """Every member's margin for every row of the model matrix: (members x rows), float32 like xgboost's."""
    result = np.empty((forest.members, len(matrix)), np.float32)
    for first in range(0, len(matrix), rows_per_pass):
        part = matrix[first : first + rows_per_pass]
        result[:, first : first + len(part)] = _pass(forest, part).T
    return result


def _doubled(matrix: np.ndarray) -> np.ndarray:
    """The matrix in float32 twice, NaN as -inf (goes left: -inf < any threshold) then NaN as +inf (goes right),
    and a column of -inf for the leaves: a node reads the copy of its default direction, so no NaN test is needed
    while walking."""
    values = np.asarray(matrix, np.float32)
    missing = np.isnan(values)
    return np.concatenate(
        [np.where(missing, -np.inf, values), np.where(missing, np.inf, values), np.full((len(values), 1), -np.inf)],
        axis=1,
    ).astype(np.float32)


def _pass(forest: CompiledForest, matrix: np.ndarray) -> np.ndarray:
    """(rows x members) margins: walk every tree one level at a time for all rows, then sum each member's leaves
    after its base margin, sequentially in float32 (np.cumsum accumulates in order, as xgboost does)."""
    doubled = _doubled(matrix)
    flat = doubled.ravel()
    row_start = (np.arange(len(matrix)) * doubled.shape[1])[:, None]
    node = np.broadcast_to(forest.roots, (len(matrix), len(forest.roots)))
    for _ in range(forest.depth):  # not (x < threshold) is x >= threshold: no NaN is left
        node = forest.left[node] + (flat[row_start + forest.gather[node]] >= forest.threshold[node])
    leaves = forest.leaf_value[node].reshape(len(matrix), forest.members, -1)
    base = np.broadcast_to(forest.base_margin[None, :, None], (len(matrix), forest.members, 1))
    return np.cumsum(np.concatenate([base, leaves], axis=2), axis=2, dtype=np.float32)[..., -1]
