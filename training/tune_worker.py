"""`make tune-worker`: join a task's shared Optuna studies (one per cause) from any host and run trials.

A worker rebuilds the trainer's tuning problem from the same inputs: the cohort (the same DATA= file, or the
synthetic cohort of the same size and seed), the centre split and the tuning folds, all derived from the data and
the seed alone. Its fingerprint of patients, target, folds and seed must match the one the study was created
with (training/tune.py refuses otherwise), so no worker scores trials on another problem.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.predictor_variation import without_predictors
from features.task_schema import TaskSchema
from features.tasks import Task, get_task
from training.config import TrainSettings
from training.splits import hold_out_centres, tuning_folds
from training.tune import SharedStudy, TuningResult, tune_xgboost


@dataclass
class TuningProblem:
    task: Task
    schema: TaskSchema
    development: pd.DataFrame
    folds: list[tuple[np.ndarray, np.ndarray]]


def tuning_problem(settings: TrainSettings) -> TuningProblem:
    """The development patients and tuning folds exactly as `training.pipeline.run_training` builds them."""
    from training.pipeline import load_cohort

    task = get_task(settings.task)
    frame = load_cohort(settings, task.schema).frame
    task = replace(task, schema=without_predictors(task.schema, settings.drop_predictors))
    schema = task.schema
    split = hold_out_centres(frame, schema.event_column, settings.held_out_fraction, settings.seed)
    development = frame.iloc[split.development].reset_index(drop=True)
    folds = tuning_folds(development, schema.event_column, settings.n_folds, settings.seed)
    return TuningProblem(task, schema, development, folds)


def run_worker(settings: TrainSettings, shared: SharedStudy) -> dict[str, TuningResult]:
    """Tune every cause of the task in its study, in the trainer's order; returns each study's best."""
    problem = tuning_problem(settings)
    results = {}
    for cause, target in problem.task.cause_targets(problem.development).items():
        study = shared.for_cause(settings.task, cause)
        print(f"joining {study.name} at {study.shown_storage}", flush=True)

        def report(number: int, params: dict, score: float, rounds: int, cause: str = cause) -> None:
            print(f"  {cause} trial {number}: CV Harrell C {score:.3f} ({rounds} rounds)", flush=True)

        results[cause] = tune_xgboost(
            problem.development, problem.schema, target, problem.folds, settings.n_trials, settings.seed, report, study
        )
        best = results[cause]
        print(
            f"{cause}: {best.n_trials} complete trials from {best.workers} workers, best CV Harrell C "
            f"{best.cv_harrell_c:.3f}",
            flush=True,
        )
    return results
