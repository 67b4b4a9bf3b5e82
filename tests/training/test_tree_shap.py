"""Interventional TreeSHAP with one reference row against brute-force Shapley values of the booster itself."""

import json
from itertools import product
from math import factorial

import numpy as np
import pytest
import xgboost as xgb

from risk_model.tree_shap import leaf_conditions, reference_shapley, references


@pytest.mark.parametrize("depth", [1, 3])
def test_reference_shapley_is_exact_and_adds_up(depth):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[rng.uniform(size=x.shape) < 0.2] = np.nan  # missing values follow the trees' default directions
    label = np.where(rng.uniform(size=400) < 0.5, rng.exponential(5, 400), -rng.exponential(5, 400))
    booster = xgb.train({"objective": "survival:cox", "max_depth": depth, "eta": 0.1, "nthread": 1},
                        xgb.DMatrix(x, label=label, missing=np.nan), 60)

    def margin(rows: np.ndarray) -> np.ndarray:
        return booster.predict(xgb.DMatrix(rows, missing=np.nan), output_margin=True).astype(float)

    conditions = leaf_conditions(json.loads(bytes(booster.save_raw("json"))), 5)
    patient, reference_rows = x[0], x[1:31]
    reference_side = references(conditions, reference_rows)
    shapley = reference_shapley(conditions, patient, reference_side)
    # Several patients at once give each one's values (patients x references x columns).
    np.testing.assert_array_equal(reference_shapley(conditions, x[[3, 0]], reference_side)[1], shapley)
    np.testing.assert_allclose(shapley.sum(axis=1), margin(patient[None, :])[0] - margin(reference_rows), atol=1e-5)
    for reference, expected_row in ((x[1], shapley[0]), (x[8], shapley[7])):
        masks = list(product([False, True], repeat=5))
        values = dict(zip(masks, margin(np.array([np.where(m, patient, reference) for m in masks])), strict=True))
        brute = np.zeros(5)
        for mask, value in values.items():
            size = sum(mask)
            for j in (j for j in range(5) if not mask[j]):
                joined = tuple(True if k == j else mask[k] for k in range(5))
                brute[j] += factorial(size) * factorial(4 - size) / factorial(5) * (values[joined] - value)
        np.testing.assert_allclose(expected_row, brute, atol=1e-5)
