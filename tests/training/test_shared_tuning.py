"""Tuning workers on one Optuna study in a real PostgreSQL (Debian's package on loopback, tests/postgres.py).

Two `tune-worker` processes fill one study: every trial COMPLETE, numbers 0..n-1 without gap or repeat, each
trial reported by exactly one worker, the budget met (at most one over: both may start a last trial at once).
A trainer alone on a new shared study repeats the in-memory seeded run; a worker on other folds is refused.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import running_postgres

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    yield from running_postgres()


PATIENTS, SEED, BUDGET = 600, 7, 8


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    from training.config import TrainSettings
    from training.tune_worker import tuning_problem

    settings = TrainSettings(n_patients=PATIENTS, seed=SEED, data_dir=tmp_path_factory.mktemp("data"))
    problem = tuning_problem(settings)
    (cause, target), *_ = problem.task.cause_targets(problem.development).items()
    return settings, problem, cause, target


def _worker(settings, storage: str, study: str, folder: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "training.cli",
        "tune-worker",
        "--task",
        settings.task,
        "--patients",
        str(PATIENTS),
        "--seed",
        str(SEED),
        "--trials",
        str(BUDGET),
        "--study",
        study,
        "--storage",
        storage,
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_worker_processes_fill_one_study_without_lost_or_duplicated_trials(postgres, problem, tmp_path):
    import optuna
    from optuna.trial import TrialState

    settings, _, cause, _ = problem
    storage = postgres.create_database("two_workers")
    workers = [_worker(settings, storage, "shared", tmp_path) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    study = optuna.load_study(study_name=f"shared.{settings.task}.{cause}", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))
    assert BUDGET <= len(trials) <= BUDGET + 1
    reported = [{int(n) for n in re.findall(rf"{cause} trial (\d+):", out)} for out in outputs]
    assert reported[0].isdisjoint(reported[1]), "a trial was reported by both workers"
    assert reported[0] | reported[1] == set(numbers), "a trial in the study was run by neither worker, or lost"
    assert all(reported), f"one worker ran no trial: {outputs}"
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    # Both workers end on the same best trial, the study's.
    best = f"best CV Harrell C {study.best_value:.3f}"
    assert all(best in out for out in outputs), outputs


def test_trainer_alone_on_a_new_shared_study_repeats_the_seeded_in_memory_run(postgres, problem):
    from training.tune import shared_study, tune_xgboost

    _, tuning, _, target = problem
    args = (tuning.development, tuning.schema, target, tuning.folds, 3, SEED)
    in_memory = tune_xgboost(*args)
    shared = shared_study(postgres.create_database("alone"), "alone")
    in_study = tune_xgboost(*args, shared=shared)
    assert in_study.params == in_memory.params
    assert in_study.cv_harrell_c == in_memory.cv_harrell_c
    assert in_study.workers == 1 and in_memory.workers == 1
    assert "reproducible" in in_study.order_tags("c")["tuning_trial_order_c"]
    # A second run on the full study runs no trial and takes the study's best.
    again = tune_xgboost(*args, shared=shared)
    assert again.params == in_study.params and again.n_trials == 3


def test_a_worker_on_other_folds_may_not_join(postgres, problem):
    from training.tune import StudyMismatchError, join_study, shared_study, tuning_fingerprint

    _, tuning, _, target = problem
    shared = shared_study(postgres.create_database("mismatch"), "mismatch")
    join_study(shared, tuning_fingerprint(tuning.development, target, tuning.folds, SEED), 3, SEED)
    with pytest.raises(StudyMismatchError, match="other data, folds or seed"):
        join_study(shared, tuning_fingerprint(tuning.development, target, tuning.folds[1:], SEED), 3, SEED)
