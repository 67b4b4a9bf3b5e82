"""The compiled forest (risk_model/forest.py) against xgboost's own margins, on boosters fitted here and on a served
boosted champion's members.

Tolerance: the forest adds each member's leaves in float32, in tree order, after the base margin, as xgboost's CPU
predictor does, so the margins are asserted equal bit for bit (a summation in another order, float64 or numpy's
pairwise float32 sum, differs from xgboost by up to ~1e-6 on 300 trees). Answers are built from the margins alone,
so equal margins give equal answers."""

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from features.task_schema import validate_frame
from features.tasks import get_task
from risk_model.bundle import ModelBundle
from risk_model.forest import compile_forest, forest_margins


def _cohort(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two numbers with missing values and a four-level category one-hot encoded against its first level (as
    risk_model/preprocessing.py encodes categories for xgboost: a missing category makes all its columns NaN)."""
    numbers = rng.normal(size=(n, 2)) * [1.0, 30.0]
    numbers[rng.uniform(size=numbers.shape) < 0.25] = np.nan
    level = rng.integers(0, 4, n)
    onehot = (level[:, None] == np.arange(1, 4)[None, :]).astype(float)
    onehot[rng.uniform(size=n) < 0.1] = np.nan
    matrix = np.column_stack([numbers, onehot])
    risk = np.nan_to_num(numbers[:, 0]) + 0.02 * np.nan_to_num(numbers[:, 1]) + 0.8 * (level == 2)
    time = rng.exponential(np.exp(-risk))
    label = np.where(rng.uniform(size=n) < 0.7, time, -time)  # negative: censored
    return matrix, label


def _boosters(depth: int, rounds: list[int]) -> tuple[list[xgb.Booster], np.ndarray]:
    """Members as the bundle's: each fitted on a bootstrap resample (so each estimates its own base score),
    saved and loaded back as serving loads them; they may differ in their number of trees."""
    rng = np.random.default_rng(depth)
    matrix, label = _cohort(rng, 600)
    members = []
    for seed, n_rounds in enumerate(rounds):
        rows = rng.integers(0, len(matrix), len(matrix))
        booster = xgb.train(
            {"objective": "survival:cox", "max_depth": depth, "eta": 0.1, "nthread": 1, "seed": seed, "subsample": 0.8},
            xgb.DMatrix(matrix[rows], label=label[rows], missing=np.nan),
            n_rounds,
        )
        members.append(xgb.Booster(model_file=bytearray(booster.save_raw("ubj"))))
    return members, matrix


def _json_models(boosters: list[xgb.Booster]) -> list[dict]:
    """xgboost's JSON model of each booster, as the bundle's cause models hand it to the compiler."""
    return [json.loads(bytes(booster.save_raw("json"))) for booster in boosters]


def _edge_rows(forest_threshold: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """Rows whose values sit exactly on split thresholds, or a float64 hair off them (the same float32): the tie
    `x < threshold` and xgboost's float32 comparison decide them."""
    thresholds = forest_threshold[forest_threshold != 0]
    rows = rng.choice(thresholds, size=(40, width)).astype(float)
    rows[20:] += rng.choice([-1e-12, 1e-12], size=(20, width))
    rows[rng.uniform(size=rows.shape) < 0.2] = np.nan
    return rows


@pytest.mark.parametrize("depth", [1, 6])
def test_margins_equal_xgboost_bit_for_bit(depth):
    members, matrix = _boosters(depth, [40, 40, 25, 40])
    forest = compile_forest(_json_models(members))
    assert forest.depth == depth
    rng = np.random.default_rng(7)
    rows = np.vstack(
        [matrix[:300], _edge_rows(forest.threshold, matrix.shape[1], rng), np.full((1, matrix.shape[1]), np.nan)]
    )
    expected = np.stack([m.inplace_predict(rows, predict_type="margin", missing=np.nan) for m in members])
    got = forest_margins(forest, rows)
    assert got.shape == (len(members), len(rows))
    np.testing.assert_array_equal(got, expected)
    # The training path's margins (DMatrix, output_margin) are the same numbers.
    np.testing.assert_array_equal(got[0], members[0].predict(xgb.DMatrix(rows, missing=np.nan), output_margin=True))


def test_members_on_their_own_columns():
    """Members fitted on different column sets read their own block of one stacked matrix."""
    members, matrix = _boosters(3, [30, 30])
    wide = np.column_stack([matrix, matrix[:, ::-1]])
    flipped = xgb.train(
        {"objective": "survival:cox", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(
            matrix[:, ::-1],
            label=np.where(np.arange(len(matrix)) % 3, 1.0, -1.0) * (1 + np.arange(len(matrix)) % 7),
            missing=np.nan,
        ),
        30,
    )
    forest = compile_forest(_json_models([members[0], flipped]), column_offsets=[0, matrix.shape[1]],
                            n_columns=wide.shape[1])
    got = forest_margins(forest, wide[:50])
    np.testing.assert_array_equal(got[0], members[0].inplace_predict(matrix[:50], predict_type="margin"))
    np.testing.assert_array_equal(got[1], flipped.inplace_predict(matrix[:50, ::-1], predict_type="margin"))


def test_categorical_splits_are_refused():
    frame = pd.DataFrame({"group": pd.Categorical(["a", "b", "c", "a"] * 25)})
    booster = xgb.train(
        {"objective": "survival:cox", "nthread": 1, "max_cat_to_onehot": 1},
        xgb.DMatrix(frame, label=np.arange(1.0, 101.0), enable_categorical=True),
        3,
    )
    with pytest.raises(ValueError, match="categorical split"):
        compile_forest(_json_models([booster]))


def _patients(task_name: str, names: list[str], n: int) -> list[dict]:
    task = get_task(task_name)
    frame = validate_frame(task.generate_cohort(task.default_cohort_size, 3), task.schema).iloc[:n]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame[names].to_dict("records")]


def test_served_boosted_champion_margins_equal_its_boosters(served_models, sample_tasks):
    """Every boosted champion's members' margins through the compiled forest, for one patient and for a batch,
    equal each member booster's own `inplace_predict` bit for bit, so every answer built from them does too."""
    boosted = [task for task, family in served_models.families.items() if family == "xgboost_cox"]
    assert boosted, "the served champions include a boosted one"
    for task_name in boosted:
        task_dir = served_models.models_dir / task_name
        folder = task_dir / json.loads((task_dir / "champion.json").read_text())["path"]
        bundle = ModelBundle.load(folder)
        assert bundle.replicates
        encoded = bundle.encode(_patients(task_name, bundle.feature_names, 300))
        ensemble = bundle._ensemble()
        for rows in (encoded[:1], encoded):
            margins = bundle.member_margins(rows, with_replicates=True)
            for cause, model in bundle.causes.items():
                if model.family != "xgboost_cox":
                    continue
                by_booster = np.stack([member[cause].margin_encoded(rows, ensemble["encoding"])
                                       for member in ensemble["members"]])
                np.testing.assert_array_equal(margins[cause], by_booster)
        assert ensemble["forests"], "the compiled forests answered"


def test_trees_whose_children_are_not_in_pairs_are_renumbered():
    """xgboost reuses a pruned node's slot, so a right child need not follow its left one: such a tree (here the
    same trees with their nodes in reverse order) is renumbered and gives the same margins."""
    [booster], matrix = _boosters(3, [20])
    model = json.loads(bytes(booster.save_raw("json")))
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        size = len(tree["left_children"])
        new_id = {old: (0 if old == 0 else size - old) for old in range(size)}  # root stays first
        order = sorted(range(size), key=lambda old: new_id[old])
        for key in ("split_indices", "split_conditions", "default_left", "split_type"):
            tree[key] = [tree[key][old] for old in order]
        for key in ("left_children", "right_children"):
            tree[key] = [-1 if tree[key][old] == -1 else new_id[tree[key][old]] for old in order]
    forest = compile_forest([model])
    np.testing.assert_array_equal(
        forest_margins(forest, matrix[:100])[0], booster.inplace_predict(matrix[:100], predict_type="margin")
    )
