"""Both cores (training/parallel.py): the stages mapped over worker processes give the same numbers with one worker
and with two, a worker's xgboost fits take their share of the cores, and tuning with one worker repeats itself for
a seed while several trial threads are recorded as not reproducible. On the test-only single-event sample task
(tests/sample_tasks/): the stages are the same for any task."""

import os
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from tests.sample_tasks import SINGLE, sample_tasks
from tests.served_models import SMALL_XGBOOST
from training import parallel
from training.bootstrap import bootstrap_headline
from training.evaluate import evaluable_horizons
from training.pipeline import fit_family
from training.replicates import fit_replicates
from training.splits import hold_out_centres, tuning_folds
from training.tune import TuningResult, cross_validate, encode_folds, tune_xgboost
from training.validation import internal_external_validation

TASK = sample_tasks()[SINGLE]
SCHEMA = TASK.schema
SMALL = replace(SMALL_XGBOOST, num_boost_round=40)  # the served models' fixed settings, fewer rounds
# A test that starts the pool's worker processes (each loads the training stack, ~5 s of CPU) is not a unit test:
# it runs in `make test`'s slow tier, not in `make test-fast`.
WORKER_PROCESSES = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    # 300 patients in eight centres: equal numbers with one and two workers need no more.
    return validate_frame(TASK.generate_cohort(300, 5), SCHEMA)


@pytest.fixture
def jobs(monkeypatch):
    """Run the body with TRAIN_JOBS set: jobs(n)."""

    def set_jobs(n: int) -> None:
        monkeypatch.setenv(parallel.JOBS_ENV, str(n))

    return set_jobs


def _threads_and_pid(_: int) -> tuple[int, int, bool]:
    return parallel.xgboost_threads(), os.getpid(), parallel.configured_jobs() == 1


@WORKER_PROCESSES
def test_parallel_map_keeps_order_and_splits_the_cores(jobs):
    jobs(2)
    assert list(parallel.parallel_map(lambda x: x * x, range(23))) == [x * x for x in range(23)]
    seen = parallel.parallel_list(_threads_and_pid, range(8))
    assert {pid for _, pid, _ in seen} != {os.getpid()}  # in worker processes
    assert {threads for threads, _, _ in seen} == {parallel.threads_per_task(2)}
    assert all(inner_is_sequential for *_, inner_is_sequential in seen)  # no pool inside a worker
    jobs(1)
    assert {pid for _, pid, _ in parallel.parallel_list(_threads_and_pid, range(3))} == {os.getpid()}
    assert parallel.xgboost_threads() == parallel.cores()  # alone, a fit has every core


def test_jobs_come_from_configuration(monkeypatch):
    monkeypatch.delenv(parallel.JOBS_ENV, raising=False)
    assert parallel.configured_jobs() == parallel.cores()
    parallel.configure_jobs(3)
    assert parallel.configured_jobs() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv(parallel.JOBS_ENV, bad)
        with pytest.raises(ValueError, match="TRAIN_JOBS"):
            parallel.configured_jobs()


def _predictions(replicates: list, frame: pd.DataFrame, months: np.ndarray) -> np.ndarray:
    from risk_model.bundle import ModelBundle

    bundles = [
        ModelBundle(
            task=TASK.schema.task,
            family=next(iter(causes.values())).family,
            outcome=TASK.outcome,
            causes=causes,
            horizons_months=list(TASK.schema.horizons_months),
            main_horizon_months=TASK.schema.main_horizon_months,
            schema=TASK.schema.to_json(),
        )
        for causes in replicates
    ]
    return np.stack([b.event_probability(frame, months) for b in bundles])


@WORKER_PROCESSES
@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_interval_refits_are_the_same_with_one_and_two_workers(cohort, jobs, family):
    tuned = dict.fromkeys(TASK.cause_targets(cohort), SMALL)
    bundle = fit_family(family, TASK, cohort, tuned, 7)
    months = np.array([6.0, 12.0, 24.0])
    results = {}
    for n in (1, 2):
        jobs(n)
        results[n] = _predictions(fit_replicates(bundle, TASK, cohort, tuned, 7, 4), cohort, months)
    assert results[1].shape[0] == 4
    np.testing.assert_allclose(results[1], results[2], rtol=0, atol=1e-12)
    assert np.ptp(results[1][:, 0, :], axis=0).max() > 0  # the replicates differ from each other


@WORKER_PROCESSES
def test_validation_folds_are_the_same_with_one_and_two_workers(cohort, jobs):
    # Four of the eight centres: still leave-one-centre-out, folds spread over both workers, half the refits.
    centres = sorted(cohort["centre"].unique())[:4]
    frame = cohort[cohort["centre"].isin(centres)].reset_index(drop=True)
    tuned = dict.fromkeys(TASK.cause_targets(frame), SMALL)
    results = {}
    for n in (1, 2):
        jobs(n)
        results[n] = internal_external_validation(
            frame,
            TASK,
            lambda family, train: fit_family(family, TASK, train, tuned, 3),
            ("cox_ph", "xgboost_cox"),
            seed=0,
        )
    pd.testing.assert_frame_equal(results[1].per_cluster, results[2].per_cluster, check_exact=False, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(results[1].pooled, results[2].pooled, check_exact=False, rtol=0, atol=1e-12)
    for family, by_endpoint in results[1].risks.items():
        for endpoint, risk in by_endpoint.items():
            np.testing.assert_allclose(risk, results[2].risks[family][endpoint], rtol=0, atol=1e-12)
    assert results[1].design.kind == "leave-one-centre-out" and len(results[1].per_cluster["cluster"].unique()) == 4


@WORKER_PROCESSES
def test_metric_bootstrap_is_the_same_with_one_and_two_workers(cohort, jobs):
    bundle = fit_family("cox_ph", TASK, cohort, {}, 0)
    targets = TASK.endpoint_targets(cohort)
    horizons = list(TASK.schema.horizons_months)
    evaluable = {e: evaluable_horizons(np.asarray(t.months, float), horizons)[0] for e, t in targets.items()}
    results = {}
    for n in (1, 2):
        jobs(n)
        # 16 draws in 8 chunks over the two workers: enough for every interval, as 40 were, at 40 % of the cost.
        results[n] = bootstrap_headline(bundle, cohort, targets, evaluable, 16, 11)
    assert results[1].values.keys() == results[2].values.keys() and results[1].values
    assert all(np.isfinite(interval).all() for interval in results[1].intervals.values())
    for name, values in results[1].values.items():
        np.testing.assert_allclose(values, results[2].values[name], rtol=0, atol=1e-12, equal_nan=True)
    assert results[1].intervals == results[2].intervals


def _tune(frame: pd.DataFrame, seed: int = 1) -> TuningResult:
    split = hold_out_centres(frame, SCHEMA.event_column, seed=1)
    development = frame.iloc[split.development].reset_index(drop=True)
    folds = tuning_folds(development, SCHEMA.event_column, 3, 1)
    target = next(iter(TASK.cause_targets(development).values()))
    return tune_xgboost(development, SCHEMA, target, folds, 4, seed)


@WORKER_PROCESSES
def test_studies_tuned_side_by_side_in_workers_run_the_trials_of_one_process(cohort, jobs):
    """`make train` tunes a task's causes side by side in the worker processes (training/pipeline.py), each study
    one trial at a time with its share of the cores: every trial, and so the tuned settings, must be what this
    process alone gives (two seeds stand in for two causes)."""
    jobs(2)
    in_workers = parallel.parallel_list(partial(_tune, cohort), [1, 2])
    jobs(1)
    alone = [_tune(cohort, seed) for seed in (1, 2)]
    for worker, here in zip(in_workers, alone, strict=True):
        assert len(here.trials) == 4 and [t.number for t in here.trials] == [0, 1, 2, 3]
        assert worker.trials == here.trials
        assert (worker.params, worker.num_boost_round, worker.cv_harrell_c) == (
            here.params, here.num_boost_round, here.cv_harrell_c)
    assert in_workers[0].trials != in_workers[1].trials  # the seeds made two different studies


def test_tuning_with_one_worker_repeats_itself_and_several_say_the_order_may_differ(cohort, jobs, monkeypatch):
    jobs(2)  # worker processes do not change tuning: its trials run one at a time unless TUNING_JOBS says more
    first, second = _tune(cohort), _tune(cohort)
    assert (first.params, first.num_boost_round, first.cv_harrell_c) == (
        second.params,
        second.num_boost_round,
        second.cv_harrell_c,
    )
    assert first.order_tags("relapse")["tuning_trial_order_relapse"].startswith("reproducible")
    monkeypatch.setenv("TUNING_JOBS", "2")
    threaded = _tune(cohort)
    assert threaded.n_trials == 4 and threaded.jobs == 2
    tags = threaded.order_tags("relapse")
    assert tags["tuning_threads_relapse"] == "2" and tags["tuning_trial_order_relapse"].startswith("may differ")


def test_a_trials_folds_at_once_score_as_one_at_a_time(cohort):
    """Tuning runs a trial's folds in threads when cores are free: the trial's score and rounds must not change."""
    split = hold_out_centres(cohort, SCHEMA.event_column, seed=1)
    development = cohort.iloc[split.development].reset_index(drop=True)
    encoded = encode_folds(development, SCHEMA, tuning_folds(development, SCHEMA.event_column, 3, 1))
    target = next(iter(TASK.cause_targets(development).values()))
    params = {
        "eta": 0.1,
        "max_depth": 3,
        "min_child_weight": 2.0,
        "subsample": 0.8,
        "colsample_bynode": 0.8,
        "lambda": 1.0,
        "alpha": 0.01,
    }
    one_at_a_time = cross_validate(params, SCHEMA, target, encoded, 1, fold_threads=1)
    with parallel.sharing_cores(3):
        at_once = cross_validate(params, SCHEMA, target, encoded, 1, fold_threads=3)
    assert one_at_a_time == at_once
    assert 0.5 < one_at_a_time[0] < 1 and one_at_a_time[1] >= 1


@WORKER_PROCESSES
def test_a_task_folder_outside_tasks_reaches_the_workers(jobs, tmp_path):
    """A registry's folder imported from its own path: its rule runs in worker processes (sent by value)."""
    from features.tasks import load_task
    from tests.training.test_comparators import three_cause_frame, write_task_folder

    rule = load_task(write_task_folder(tmp_path / "elsewhere")).comparators["risk_group_rule"]
    frames = [three_cause_frame(50, seed) for seed in range(4)]
    jobs(2)
    in_workers = parallel.parallel_list(lambda frame: (os.getpid(), list(rule(frame))), frames)
    assert {pid for pid, _ in in_workers} != {os.getpid()}
    assert [groups for _, groups in in_workers] == [list(frame["risk_group"]) for frame in frames]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:  # size, resident, ... in pages
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_freed_heap_memory_goes_back_to_the_system():
    """Workers and the trainer live through every stage: what a stage freed must not stay resident (glibc keeps
    freed heap pages for later use unless told). 200 MB of small buffers, one in 50 kept so the heap cannot simply
    shrink from its top."""
    buffers = [bytearray(1000) for _ in range(200_000)]
    kept = buffers[::50]
    del buffers
    before = _resident_bytes()
    parallel.release_freed_memory()
    assert before - _resident_bytes() > 100 * 2**20
    assert len(kept) == 4000
