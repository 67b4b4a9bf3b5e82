"""Optuna tuning of the xgboost Cox model on the development centres only (seeded TPE sampler).

Each trial fits every centre-grouped fold with early stopping on the validation fold's partial likelihood and
scores Harrell's C there; the trial's value is the mean over folds. The held-out centres are never seen here.

By default the study lives in memory. Given a shared study (an RDB storage URL, PostgreSQL for parallel workers,
and a name), every process that tunes the same data, folds and seed joins it: the trainer and any number of
`make tune-worker` processes on other hosts run trials into one study, and the trainer takes its best trial.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from risk_model.preprocessing import Preprocessor
from training.evaluate import harrell_c
from training.families import XGBoostCoxFamily
from training.parallel import sharing_cores, threads_per_task, tuning_jobs

MAX_ROUNDS = 600
EARLY_STOPPING_ROUNDS = 30


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial of this process, for its nested MLflow run."""

    number: int
    params: dict[str, Any]
    cv_harrell_c: float
    num_boost_round: int


@dataclass
class TuningResult:
    params: dict[str, Any]
    num_boost_round: int
    cv_harrell_c: float
    n_trials: int
    workers: int = 1  # distinct processes whose trials the study holds
    study: str | None = None  # the shared study's name; None = in memory
    jobs: int = 1  # trials at once in this process (threads)
    trials: list[TrialRecord] = field(default_factory=list)  # this process's complete trials, in trial order

    def order_tags(self, cause: str) -> dict[str, str]:
        """What a run records about its tuning: which study, how many workers and trial threads, and whether the
        order of trials (so the TPE proposals and the best trial) is reproducible from the seed."""
        if self.workers > 1:
            order = f"may differ between runs: {self.workers} workers shared the study"
        elif self.jobs > 1:
            order = (
                f"may differ between runs: {self.jobs} trials ran at once (threads), so TPE proposed each "
                "from whichever trials had finished (JOBS=1 makes it reproducible)"
            )
        else:
            order = "reproducible for the seed (one worker, seeded TPE)"
        tags = {
            f"tuning_workers_{cause}": str(self.workers),
            f"tuning_threads_{cause}": str(self.jobs),
            f"tuning_trial_order_{cause}": order,
        }
        if self.study:
            tags[f"optuna_study_{cause}"] = self.study
        return tags


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


@dataclass(frozen=True)
class EncodedFold:
    """One tuning fold's model matrices, encoded once: the encoding depends on the fold's training rows only, not
    on a trial's settings or the cause, so every trial reuses it (re-encoding was about 40 % of a trial)."""

    train_rows: np.ndarray
    valid_rows: np.ndarray
    preprocessor: Preprocessor
    train_matrix: np.ndarray
    valid_matrix: np.ndarray


def encode_folds(
    frame: pd.DataFrame, schema: TaskSchema, folds: list[tuple[np.ndarray, np.ndarray]]
) -> list[EncodedFold]:
    encoded = []
    for train_rows, valid_rows in folds:
        preprocessor = Preprocessor(impute=False).fit(frame.iloc[train_rows], schema)
        encoded.append(
            EncodedFold(
                train_rows,
                valid_rows,
                preprocessor,
                preprocessor.transform(frame.iloc[train_rows]),
                preprocessor.transform(frame.iloc[valid_rows]),
            )
        )
    return encoded


def cross_validate(
    params: dict[str, Any],
    schema: TaskSchema,
    target: Target,
    folds: list[EncodedFold],
    seed: int,
    fold_threads: int = 1,
) -> tuple[float, int]:
    """Mean validation Harrell's C and mean best number of rounds over the folds, `fold_threads` folds at once
    (each fold's fit is deterministic for the seed, so the result does not depend on how many run at once)."""
    with ThreadPoolExecutor(max_workers=fold_threads) as pool:
        scored = list(pool.map(lambda fold: _fit_fold(params, schema, target, fold, seed), folds))
    scores = [score for score, _ in scored if score is not None]
    return float(np.mean(scores)), int(np.round(np.mean([rounds for _, rounds in scored])))


def _fit_fold(
    params: dict[str, Any], schema: TaskSchema, target: Target, fold: EncodedFold, seed: int
) -> tuple[float | None, int]:
    """The fold's validation Harrell's C (None without an event there) and its best number of rounds."""
    import xgboost as xgb

    model = XGBoostCoxFamily(params=params, num_boost_round=MAX_ROUNDS, seed=seed)
    train, valid = _rows(target, fold.train_rows), _rows(target, fold.valid_rows)
    best = model.fit_early_stopping(
        fold.preprocessor, (fold.train_matrix, fold.valid_matrix), schema, (train, valid), EARLY_STOPPING_ROUNDS
    )
    margin = model.booster_.predict(
        xgb.DMatrix(fold.valid_matrix, missing=np.nan), output_margin=True, iteration_range=(0, best)
    )
    return (harrell_c(valid[0], valid[1], margin) if valid[1].sum() > 0 else None), best


def tune_xgboost(
    frame: pd.DataFrame,
    schema: TaskSchema,
    target: Target,
    folds: list[tuple[np.ndarray, np.ndarray]],
    n_trials: int,
    seed: int,
    on_trial: Callable[[int, dict[str, Any], float, int], None] | None = None,
    shared: SharedStudy | None = None,
) -> TuningResult:
    """Seeded TPE over `n_trials` in memory; with `shared`, this process joins the study in the RDB instead
    (it runs trials until the study holds its budget, waits for the other workers' trials, and returns the
    study's best trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    reporting = threading.Lock()  # trials in threads report (MLflow, progress) one at a time
    encoded = encode_folds(frame, schema, folds)

    def objective(trial: Any) -> float:
        params = _suggest(trial)
        score, rounds = cross_validate(params, schema, target, encoded, seed, fold_threads)
        trial.set_user_attr("num_boost_round", rounds)
        trial.set_user_attr("worker", worker)
        if on_trial:
            with reporting:
                on_trial(trial.number, params, score, rounds)
        return score

    # Trials in threads (xgboost releases the GIL), and within a trial its folds in threads while cores are left:
    # each fit gets its share of the cores (training/parallel.py). A few thousand patients keep one fit from
    # using two cores well, while two folds at once use both.
    jobs = min(tuning_jobs(), n_trials) if shared is None else shared.jobs
    fold_threads = min(len(encoded), threads_per_task(jobs))  # in a pool worker: its share of the cores
    with sharing_cores(jobs * fold_threads):
        if shared is None:
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
            study.optimize(objective, n_trials=n_trials, n_jobs=jobs)
        else:
            study = join_study(shared, tuning_fingerprint(frame, target, folds, seed), n_trials, seed)
            run_until_budget(study, objective, shared.jobs)
            wait_for_running(study)
    return _result(study, shared, jobs, worker)


def _result(study: Any, shared: SharedStudy | None, jobs: int = 1, worker: str = "") -> TuningResult:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {study.study_name} has no complete trial (all failed or were pruned)")
    best = study.best_trial
    workers = sorted({t.user_attrs.get("worker", "?") for t in complete})
    return TuningResult(
        params=dict(best.params),
        num_boost_round=int(best.user_attrs["num_boost_round"]),
        cv_harrell_c=float(best.value),
        n_trials=len(complete),
        workers=len(workers),
        study=study.study_name if shared else None,
        jobs=jobs,
        trials=[TrialRecord(t.number, dict(t.params), float(t.value), int(t.user_attrs["num_boost_round"]))
                for t in sorted(complete, key=lambda t: t.number) if t.user_attrs.get("worker") == worker],
    )


# --- a study shared by tuning workers on several hosts (PostgreSQL through Optuna's RDB storage) ---

HEARTBEAT_SECONDS = 30  # a running trial proves it is alive this often ...
GRACE_SECONDS = 120  # ... and is marked FAIL when silent this long (its worker died), so nobody waits forever


@dataclass(frozen=True)
class SharedStudy:
    """Where the tuning workers meet: an Optuna RDB storage URL and a study name (one study per task and cause)."""

    storage: str
    name: str
    jobs: int = 1  # trial threads in this process
    # The trainer samples with the run's seed (alone on a new study it repeats the in-memory run); a tune-worker
    # samples with its own random state, or every worker would draw the same start-up trials.
    seeded: bool = True

    def for_cause(self, task: str, cause: str) -> SharedStudy:
        return replace(self, name=f"{self.name}.{task}.{cause}")

    @property
    def shown_storage(self) -> str:
        """The URL without its password (for logs, tags and messages)."""
        from sqlalchemy.engine import make_url

        return make_url(self.storage).render_as_string(hide_password=True)


def shared_study(storage: str | None, name: str | None, jobs: int = 1, seeded: bool = True) -> SharedStudy | None:
    """The configured shared study, None for the embedded default (in-memory, seeded); one without the other is
    refused rather than guessed."""
    if not storage and not name:
        return None
    if not storage or not name:
        raise ValueError(
            "a shared Optuna study needs both a storage URL (STORAGE=, --storage, OPTUNA_STORAGE) and "
            "a study name (STUDY=, --study, OPTUNA_STUDY)"
        )
    return SharedStudy(storage=storage, name=name, jobs=max(1, jobs), seeded=seeded)


def open_storage(url: str, jobs: int = 1) -> Any:
    """RDB storage whose connection pool fits this process: one connection per trial thread plus the heartbeat's,
    and as many again in overflow for bursts. PostgreSQL's max_connections (100 by default) must exceed the sum
    over the workers (README "Past one machine")."""
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if not url.startswith("sqlite"):
        engine_kwargs |= {"pool_size": jobs + 1, "max_overflow": jobs}
    # The heartbeat is marked experimental; its warning would repeat in every worker.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
            )
        except sqlalchemy.exc.DBAPIError:  # two workers creating the tables of a new database at the same moment
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def tuning_fingerprint(
    frame: pd.DataFrame, target: Target, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> str:
    """What a trial's value depends on besides its parameters: the patients, the target, the folds, the seed.
    Workers whose fingerprints differ would score trials on different problems, so they may not share a study."""
    digest = hashlib.sha256(str(seed).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    for part in (*target, *(rows for fold in folds for rows in fold)):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()[:16]


class StudyMismatchError(RuntimeError):
    """A worker's data, folds or seed differ from the ones the study was created with."""


def join_study(shared: SharedStudy, fingerprint: str, n_trials: int, seed: int) -> Any:
    """Create or load the study. Its first worker records the fingerprint and the trial budget; later workers
    must match the fingerprint and take the recorded budget."""
    import optuna

    storage = open_storage(shared.storage, shared.jobs)
    study = optuna.create_study(study_name=shared.name, storage=storage, direction="maximize", load_if_exists=True)
    if "fingerprint" not in study.user_attrs and not study.trials:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("n_trials", n_trials)
        study.set_user_attr("seed", seed)
    recorded = study.user_attrs.get("fingerprint")
    if recorded != fingerprint:
        raise StudyMismatchError(
            f"study {shared.name} in {shared.shown_storage} was created for other data, folds or seed "
            f"(fingerprint {recorded}, this worker {fingerprint}): give the same DATA=, seed and options as the "
            "trainer, or another STUDY= name"
        )
    study.sampler = optuna.samplers.TPESampler(seed=seed if shared.seeded else None)
    return study


def budget(study: Any) -> int:
    return int(study.user_attrs["n_trials"])


def run_until_budget(study: Any, objective: Callable[[Any], float], jobs: int = 1) -> None:
    """Run trials until the study holds its budget (counting the other workers' running trials). Workers that
    start their last trials at the same moment may each start one: at most workers - 1 trials over budget."""
    from optuna.study import MaxTrialsCallback

    if len(study.get_trials(deepcopy=False)) >= budget(study):
        return
    study.optimize(objective, n_jobs=jobs, callbacks=[MaxTrialsCallback(budget(study), states=None)])


def wait_for_running(study: Any, poll_seconds: float = 2.0) -> None:
    """Wait until no trial of the study is running: the other workers' last trials count towards the best.
    A trial whose worker died stops beating and is marked FAIL after the grace period."""
    import optuna
    from optuna.trial import TrialState

    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll_seconds)
