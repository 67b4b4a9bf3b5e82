"""The bootstrap replicates behind the 95 % intervals (risk_model/intervals.py reads them at prediction).

Each replicate refits every cause-specific model, with the same settings, on a bootstrap resample of the
development patients, with the point model's spline knots (so every member reads the same encoding) and its
baseline estimator.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import Task
from risk_model.bundle import CauseModel, ModelBundle
from risk_model.intervals import N_REPLICATES
from training.families import CoxFamily, XGBoostCoxFamily, baseline_ties
from training.parallel import parallel_list


def fit_replicates(bundle: ModelBundle, task: Task, development: pd.DataFrame, tuned: dict[str, Any], seed: int,
                   n_replicates: int = N_REPLICATES) -> list[dict[str, CauseModel]]:
    rng = np.random.default_rng(seed + 101)
    # Rows drawn here, in order, and replicate `number` seeded by seed + number: the same for any worker count.
    samples = [rng.integers(0, len(development), len(development)) for _ in range(n_replicates)]
    # The point model's knots and baseline, so that every replicate is built like it.
    knots = next(iter(bundle.causes.values())).preprocessor.knots()
    refit = partial(_fit_replicate, bundle.family, task, development, tuned, seed, knots)
    return parallel_list(refit, enumerate(samples))


def _fit_replicate(family: str, task: Task, development: pd.DataFrame, tuned: dict[str, Any], seed: int,
                   knots: Any, numbered: tuple[int, np.ndarray]) -> dict[str, CauseModel]:
    number, rows = numbered
    sample = development.iloc[rows].reset_index(drop=True)
    ties = baseline_ties(task.outcome)
    causes = {}
    for cause, target in task.cause_targets(sample).items():
        if family == "cox_ph":
            causes[cause] = CoxFamily(ties=ties, knots=knots).fit(sample, task.schema, target).cause_model()
        else:
            settings = tuned[cause]
            causes[cause] = XGBoostCoxFamily(settings.params, settings.num_boost_round, seed + number,
                                             ties=ties, knots=knots).fit(sample, task.schema, target).cause_model()
    return causes
