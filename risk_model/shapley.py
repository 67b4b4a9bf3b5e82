"""Exact interventional Shapley values of an endpoint's probability at a horizon (the reference path).

v(S) = sum_k w_k f(x_S, b_k) over the weighted background; phi_i is the Shapley average of v(S + i) - v(S) over
all coalitions S. It costs 2^M coalitions x background rows model evaluations, so it checks the fast path
(`ModelBundle.contributions`) on models with few predictors or a small background, and is not served.
"""

from __future__ import annotations

from itertools import product
from math import factorial

import numpy as np
import pandas as pd

from risk_model.bundle import ModelBundle

MAX_EXACT_EVALUATIONS = 2_000_000


def exact_contributions(bundle: ModelBundle, patient: pd.DataFrame, horizon_months: float,
                        endpoint: str | None = None) -> tuple[np.ndarray, float]:
    """Shapley values (probability units, one per predictor) for one patient, and the background mean."""
    endpoint = endpoint or bundle.main_endpoint
    names = bundle.feature_names
    background = pd.DataFrame(bundle.background)[names]
    weights = np.asarray(bundle.background_weights, dtype=float)
    weights = weights / weights.sum()
    m, k = len(names), len(background)
    if 2**m * k > MAX_EXACT_EVALUATIONS:
        raise ValueError(f"exact Shapley values need {2**m * k} evaluations; use fewer predictors or rows")
    masks = np.array(list(product([False, True], repeat=m)))  # coalition x predictor, True = from the patient
    rows = pd.DataFrame(np.repeat(background.to_numpy(dtype=object), len(masks), axis=0), columns=names)
    mask_rows = np.tile(masks, (k, 1))
    patient_values = patient[names].iloc[0].to_numpy(dtype=object)
    for j, name in enumerate(names):
        rows.loc[mask_rows[:, j], name] = patient_values[j]
    rows = rows.infer_objects()
    f = bundle.endpoint_probabilities(rows, np.array([float(horizon_months)]), only=endpoint)[endpoint][:, 0]
    value = weights @ f.reshape(k, len(masks))  # v(S) for every coalition
    index = {tuple(mask): i for i, mask in enumerate(masks)}
    shapley = np.zeros(m)
    for i, mask in enumerate(masks):
        size = int(mask.sum())
        for j in np.flatnonzero(~mask):
            with_j = mask.copy()
            with_j[j] = True
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            shapley[j] += weight * (value[index[tuple(with_j)]] - value[i])
    return shapley, float(value[index[tuple([False] * m)]])
