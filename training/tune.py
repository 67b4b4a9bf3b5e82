"""Optuna tuning of the xgboost Cox model on the development centres only (seeded TPE sampler).

Each trial fits every centre-grouped fold with early stopping on the validation fold's partial likelihood and
scores Harrell's C there; the trial's value is the mean over folds. The held-out centres are never seen here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from training.evaluate import harrell_c
from training.families import XGBoostCoxFamily

MAX_ROUNDS = 600
EARLY_STOPPING_ROUNDS = 30


@dataclass
class TuningResult:
    params: dict[str, Any]
    num_boost_round: int
    cv_harrell_c: float
    n_trials: int


def _suggest(trial: Any) -> dict[str, Any]:
    return {
        "eta": trial.suggest_float("eta", 0.01, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 1, 4),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bynode": trial.suggest_float("colsample_bynode", 0.5, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-2, 50.0, log=True),
        "alpha": trial.suggest_float("alpha", 1e-3, 10.0, log=True),
    }


Target = tuple[np.ndarray, np.ndarray]


def _rows(target: Target, rows: np.ndarray) -> Target:
    return target[0][rows], target[1][rows]


def cross_validate(params: dict[str, Any], frame: pd.DataFrame, schema: TaskSchema, target: Target,
                   folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> tuple[float, int]:
    """Mean validation Harrell's C and mean best number of rounds over the folds."""
    import xgboost as xgb

    scores, rounds = [], []
    for train_rows, valid_rows in folds:
        train, valid = frame.iloc[train_rows], frame.iloc[valid_rows]
        model = XGBoostCoxFamily(params=params, num_boost_round=MAX_ROUNDS, seed=seed)
        best = model.fit_early_stopping(train, valid, schema, (_rows(target, train_rows), _rows(target, valid_rows)),
                                        EARLY_STOPPING_ROUNDS)
        matrix = model.preprocessor_.transform(valid)
        margin = model.booster_.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True,
                                        iteration_range=(0, best))
        valid_time, valid_event = _rows(target, valid_rows)
        if valid_event.sum() > 0:
            scores.append(harrell_c(valid_time, valid_event, margin))
        rounds.append(best)
    return float(np.mean(scores)), int(np.round(np.mean(rounds)))


def tune_xgboost(frame: pd.DataFrame, schema: TaskSchema, target: Target,
                 folds: list[tuple[np.ndarray, np.ndarray]], n_trials: int, seed: int,
                 on_trial: Callable[[int, dict[str, Any], float, int], None] | None = None) -> TuningResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        params = _suggest(trial)
        score, rounds = cross_validate(params, frame, schema, target, folds, seed)
        trial.set_user_attr("num_boost_round", rounds)
        if on_trial:
            on_trial(trial.number, params, score, rounds)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = study.best_trial
    rounds = int(best.user_attrs["num_boost_round"])
    params = dict(best.params)
    return TuningResult(params=params, num_boost_round=rounds, cv_harrell_c=float(best.value), n_trials=n_trials)
