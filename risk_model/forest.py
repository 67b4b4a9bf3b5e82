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
from dataclasses import dataclass
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
    A leaf points at itself, so walking past it changes nothing."""

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

    @property
    def members(self) -> int:
        return len(self.base_margin)

    @property
    def gather_column(self) -> np.ndarray:
        """node -> column of the doubled matrix `_doubled` builds (NaN as -inf for default-left nodes, as +inf
        for default-right ones)."""
        return self.feature + np.where(self.default_left, 0, self.n_columns)


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
    per_member = max(len(t) for t in trees)
    # Node 0: the shared zero leaf.
    columns: dict[str, list[np.ndarray]] = {
        key: [np.zeros(1, dtype)]
        for key, dtype in (
            ("feature", np.int64),
            ("threshold", np.float32),
            ("left", np.int64),
            ("right", np.int64),
            ("default_left", bool),
            ("leaf_value", np.float32),
        )
    }
    columns["left"][0][0] = columns["right"][0][0] = 0
    roots = np.zeros((len(models), per_member), np.int64)
    start, depth = 1, 0
    for member, (member_trees, offset) in enumerate(zip(trees, offsets, strict=True)):
        for position, tree in enumerate(member_trees):
            nodes = _tree_arrays(tree, offset, start)
            for key, values in nodes.items():
                if key != "depth":
                    columns[key].append(values)
            roots[member, position] = start
            depth = max(depth, int(nodes["depth"]))
            start += len(nodes["left"])
    return CompiledForest(
        **{key: np.concatenate(parts) for key, parts in columns.items()},
        roots=roots.ravel(),
        tree_member=np.repeat(np.arange(len(models)), per_member),
        base_margin=np.array([_base_margin(m) for m in models], np.float32),
        depth=depth,
        n_columns=width,
    )


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


def _tree_arrays(tree: dict[str, Any], column_offset: int, start: int) -> dict[str, Any]:
    """One tree's nodes renumbered from `start`; leaves point at themselves."""
    if any(tree["split_type"]):
        raise ValueError(
            "a categorical split: the project one-hot encodes categories, compiled forests read numerical splits only"
        )
    left = np.asarray(tree["left_children"], np.int64)
    right = np.asarray(tree["right_children"], np.int64)
    leaf = left == -1
    own = np.arange(len(left))
    value = np.asarray(tree["split_conditions"], np.float32)  # a leaf's value is stored as its split condition
    return {
        "feature": np.where(leaf, 0, np.asarray(tree["split_indices"], np.int64) + column_offset),
        "threshold": np.where(leaf, np.float32(0), value),
        "left": np.where(leaf, own, left) + start,
        "right": np.where(leaf, own, right) + start,
        "default_left": np.asarray(tree["default_left"], bool) | leaf,
        "leaf_value": np.where(leaf, value, np.float32(0)),
        "depth": _depth(left, right),
    }


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Number of split levels on the longest root-to-leaf path."""
    level = np.zeros(len(left), np.int64)
    for node in range(len(left)):  # children come after their parent in xgboost's node order
        if left[node] != -1:
            level[left[node]] = level[right[node]] = level[node] + 1
    return int(level.max())


def forest_margins(forest: CompiledForest, matrix: np.ndarray, rows_per_pass: int = ROWS_PER_PASS) -> np.ndarray:
    """Every member's margin for every row of the model matrix: (members x rows), float32 like xgboost's."""
    result = np.empty((forest.members, len(matrix)), np.float32)
    gather = forest.gather_column
    for first in range(0, len(matrix), rows_per_pass):
        part = matrix[first : first + rows_per_pass]
        result[:, first : first + len(part)] = _pass(forest, gather, part).T
    return result


def _doubled(matrix: np.ndarray) -> np.ndarray:
    """The matrix in float32 twice: NaN as -inf (goes left: -inf < any threshold) then NaN as +inf (goes right);
    a node reads the copy of its default direction, so no NaN test is needed while walking."""
    values = np.asarray(matrix, np.float32)
    missing = np.isnan(values)
    return np.concatenate([np.where(missing, -np.inf, values), np.where(missing, np.inf, values)], axis=1).astype(
        np.float32
    )


def _pass(forest: CompiledForest, gather: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(rows x members) margins: walk every tree one level at a time for all rows, then sum each member's leaves
    after its base margin, sequentially in float32 (np.cumsum accumulates in order, as xgboost does)."""
    doubled = _doubled(matrix)
    flat = doubled.ravel()
    row_start = (np.arange(len(matrix)) * doubled.shape[1])[:, None]
    node = np.broadcast_to(forest.roots, (len(matrix), len(forest.roots)))
    for _ in range(forest.depth):
        goes_right = flat[row_start + gather[node]] >= forest.threshold[node]  # not (x < threshold); no NaN here
        node = np.where(goes_right, forest.right[node], forest.left[node])
    leaves = forest.leaf_value[node].reshape(len(matrix), forest.members, -1)
    base = np.broadcast_to(forest.base_margin[None, :, None], (len(matrix), forest.members, 1))
    return np.cumsum(np.concatenate([base, leaves], axis=2), axis=2, dtype=np.float32)[..., -1]
