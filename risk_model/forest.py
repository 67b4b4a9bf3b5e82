"""Every member's trees of one cause in flat arrays, walked for all patients in one compiled pass.

A boosted bundle answers with its own booster and its bootstrap replicates (31 boosters per cause). Through
xgboost each member is an `inplace_predict` call with a fixed cost whatever the model size, and a batch pays
xgboost's per-row set-up 31 times. Here all members' trees are read once from xgboost's JSON model and walked in
one numba loop (`_walk`) for every patient, member and tree, for one patient and for a batch alike.

The margins equal xgboost's own (`predict_type="margin"`) bit for bit: features and thresholds are compared in
float32 (`x < threshold` goes left, NaN follows the node's default child), each member's base margin is
`logf(base_score)` as xgboost computes it for `survival:cox`, and the leaves are added in float32 in tree order
after the base margin, as xgboost's CPU predictor accumulates them. Only numerical splits are read: the project
one-hot encodes categories, and a booster with categorical splits is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numba import njit

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
    base_margin: np.ndarray  # member -> float32 base margin
    depth: int  # the deepest tree's number of split levels
    n_columns: int  # width of the model matrix the features index
    # node -> row of `_by_column`'s array: the feature's NaN-as--inf copy for a default-left split, its NaN-as-+inf
    # copy for a default-right one
    reads: np.ndarray

    @property
    def members(self) -> int:
        return len(self.base_margin)

    @property
    def trees_per_member(self) -> int:
        return len(self.roots) // max(self.members, 1)

    def first(self, count: int) -> CompiledForest:
        """The first `count` members only (their trees, the same node table)."""
        return replace(self, roots=self.roots[: count * self.trees_per_member], base_margin=self.base_margin[:count])


def compile_forest(
    models: list[dict[str, Any]], column_offsets: list[int] | None = None, n_columns: int | None = None
) -> CompiledForest:
    """Read each member's trees once from xgboost's JSON model (`booster.save_raw("json")`, or a model saved as
    JSON). `column_offsets[m]`: where member m's columns start in the stacked model matrix the margins will be asked
    for (members fitted on other column sets sit side by side); by default every member reads the same matrix."""
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
    return CompiledForest(
        **nodes,
        roots=roots.ravel(),
        base_margin=np.array([_base_margin(m) for m in models], np.float32),
        depth=_depth(nodes["left"], nodes["right"], roots.ravel()),
        n_columns=width,
        reads=nodes["feature"] + np.where(nodes["default_left"], 0, width),
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


def forest_margins(forest: CompiledForest, matrix: np.ndarray) -> np.ndarray:
    """Every member's margin for every row of the model matrix: (members x rows), float32 like xgboost's."""
    result = np.empty((forest.members, len(matrix)), np.float32)
    _walk(_by_column(matrix), forest.reads, forest.threshold, forest.left, forest.leaf_value, forest.roots,
          forest.trees_per_member, forest.base_margin, result)
    return result


def _by_column(matrix: np.ndarray) -> np.ndarray:
    """The model matrix in float32 as columns (a split reads one column for all rows), twice: NaN as -inf (goes
    left: -inf < any threshold), then NaN as +inf (goes right), so a split reads the copy of its default
    direction and walking needs no test for missing values."""
    values = np.asarray(matrix, np.float32).T
    missing = np.isnan(values)
    return np.ascontiguousarray(np.concatenate([np.where(missing, -np.inf, values),
                                                np.where(missing, np.inf, values)]), dtype=np.float32)


@njit(cache=True)
def _walk(by_column: np.ndarray, reads: np.ndarray, threshold: np.ndarray, left: np.ndarray,
          leaf_value: np.ndarray, roots: np.ndarray, per_member: int, base_margin: np.ndarray, out: np.ndarray
          ) -> None:
    """Each member's trees in order, each tree for all rows at once: a row walks from the root to its leaf
    (x < threshold goes left, the right child is the left one + 1) and the leaf is added to the row's float32
    sum. Every row's sum runs in tree order after the base margin, xgboost's own order, so its bits; a tree's
    loop over the rows carries no sum from one row to the next and takes no branch on a value, so it runs at the
    processor's pace whichever way the rows go. A depth-1 tree (a stump, all of cml_tfr's) reads its column once
    and picks one of its two leaves per row."""
    rows = by_column.shape[1]
    for member in range(base_margin.shape[0]):
        total = out[member]
        total[:] = base_margin[member]
        for tree in range(member * per_member, (member + 1) * per_member):
            root = roots[tree]
            first = left[root]
            if first != root and left[first] == first and left[first + 1] == first + 1:  # a stump
                column, cut = by_column[reads[root]], threshold[root]
                below, above = leaf_value[first], leaf_value[first + 1]
                for row in range(rows):
                    total[row] += above if column[row] >= cut else below
                continue
            for row in range(rows):
                node = root
                while left[node] != node:
                    node = left[node] + (by_column[reads[node], row] >= threshold[node])
                total[row] += leaf_value[node]
