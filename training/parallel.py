"""Both cores for the training stages that repeat one independent computation: interval refits, validation folds,
metric bootstrap draws, the two families' fits (process pool), and tuning trials (threads, training/tune.py).

`parallel_map(fn, items)` yields `fn(item)` in the items' order, computed by `jobs` worker processes (joblib's
loky pool, reused between stages) or, with one job, in this process. A task's randomness must come from its
item (an index with the run's seed, or rows drawn beforehand): then the results do not depend on the number of
workers, and a run with one job is the same as the sequential code.

Workers: `JOBS=` (make), `--jobs` (command line) or the environment variable TRAIN_JOBS; default: the cores this
process may use. With N processes (or N tuning threads) each xgboost fit gets cores // N threads, and OpenMP and
BLAS in a worker as many, so the machine is not oversubscribed; alone a fit gets every core (xgboost's `hist`
gave the same trees with one thread and two in tests/training/test_parallel.py). Inside a worker everything runs
sequentially (no pool in a pool).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from risk_model.process_memory import release_freed_memory

JOBS_ENV = "TRAIN_JOBS"
# Tuning trials at once (threads). Default 1: TPE then proposes every trial from the same history, so the tuned
# settings, and with them every served number, repeat for a seed; more trials at once is faster and records that
# the order may differ.
TUNING_JOBS_ENV = "TUNING_JOBS"
IDLE_SECONDS = 3600
TASKS_PER_WORKER = 4  # items are sent in about this many chunks per worker: shared inputs travel once per chunk

Item = TypeVar("Item")
Result = TypeVar("Result")


class _State(threading.local):
    """Per thread: the xgboost threads of a fit here (None = every core) and whether this is a pool worker."""

    threads: int | None = None
    in_worker: bool = False


_state = _State()
_shared_threads: int | None = None  # set while tuning threads share the cores (they are other threads)


def cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or `taskset` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_jobs(jobs: int | None) -> None:
    """`--jobs` from the command line: it wins over TRAIN_JOBS, and subprocesses (benchmarks) inherit it."""
    if jobs is not None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        os.environ[JOBS_ENV] = str(jobs)


def _count_from_env(name: str, default: int, example: str) -> int:
    """A whole number of at least 1 from the environment variable `name`, else `default`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: give a whole number, e.g. {example}") from None
    if count < 1:
        raise ValueError(f"{name}={value!r}: at least 1")
    return count


def configured_jobs() -> int:
    """Worker processes (or tuning threads) to use: TRAIN_JOBS, else the cores; 1 inside a worker."""
    if _state.in_worker:
        return 1
    return _count_from_env(JOBS_ENV, cores(), "JOBS=2")


def tuning_jobs() -> int:
    """Optuna trials at once in this process: TUNING_JOBS, default 1 (reproducible for a seed)."""
    return _count_from_env(TUNING_JOBS_ENV, 1, "TUNING_JOBS=2")


def threads_per_task(tasks: int) -> int:
    """Cores for each of `tasks` concurrent tasks (at least one); in a pool worker, of the worker's share."""
    available = _state.threads if _state.in_worker and _state.threads else cores()
    return max(1, available // max(1, tasks))


def xgboost_threads() -> int:
    """`nthread` for an xgboost fit started here: cores // workers in a pool worker or a tuning thread, else all."""
    if _state.threads is not None:
        return _state.threads
    if _shared_threads is not None:
        return _shared_threads
    return cores()


@contextmanager
def sharing_cores(tasks: int) -> Iterator[int]:
    """While `tasks` threads of this process run fits at once (tuning trials), each fit gets its share."""
    global _shared_threads
    saved, _shared_threads = _shared_threads, threads_per_task(tasks)
    try:
        yield _shared_threads
    finally:
        _shared_threads = saved


def _chunks(items: Sequence[Item], jobs: int) -> list[Sequence[Item]]:
    size = max(1, -(-len(items) // (jobs * TASKS_PER_WORKER)))
    return [items[start : start + size] for start in range(0, len(items), size)]


def _run_chunk(
    fn: Callable[[Item], Result],
    chunk: Sequence[Item],
    threads: int,
    filters: list[Any],
) -> list[Result]:
    """In a worker: fits get `threads` threads, nothing below starts another pool, and warnings are filtered as
    the caller filters them (a worker does not inherit the trainer's filters)."""
    _state.threads, _state.in_worker = threads, True
    _keep_worker_alive()
    try:
        with warnings.catch_warnings():
            warnings.filters[:] = filters
            return [fn(item) for item in chunk]
    finally:
        # Workers live as long as the pool: without this each stays at the high-water mark of every stage before
        # (180,000 patients: gigabytes in all).
        release_freed_memory()


def _keep_worker_alive() -> None:
    """loky restarts a worker whose memory grew 300 MB past its size after its first task, taken for a leak. Here
    growth is the training stack loading (xgboost, lifelines, matplotlib) and caches, and each restart costs
    seconds of imports again, more than a stage gains: workers live as long as the pool."""
    from joblib.externals.loky import process_executor

    process_executor._MAX_MEMORY_LEAK_SIZE = 1 << 62


def parallel_map(fn: Callable[[Item], Result], items: Iterable[Item], jobs: int | None = None) -> Iterator[Result]:
    """`fn(item)` for every item, yielded in the items' order as they are ready. `fn` and the items must pickle
    (closures and lambdas do: loky uses cloudpickle). One job, one item or a call from inside a worker: this
    process, this thread, no pool."""
    items = list(items)
    jobs = min(configured_jobs() if jobs is None else jobs, len(items))
    if jobs <= 1 or _state.in_worker:
        yield from (fn(item) for item in items)
        return
    from joblib import Parallel, delayed, parallel_config

    threads = threads_per_task(jobs)
    # inner_max_num_threads caps OpenMP and BLAS in the workers (threadpoolctl), beside xgboost's nthread.
    # Workers stay up between stages (tuning in threads can outlast loky's default idle timeout of 300 s): a new
    # worker pays seconds of imports again.
    with parallel_config(backend="loky", inner_max_num_threads=threads, idle_worker_timeout=IDLE_SECONDS):
        run = Parallel(n_jobs=jobs, return_as="generator")
        filters = list(warnings.filters)
        for results in run(delayed(_run_chunk)(fn, chunk, threads, filters) for chunk in _chunks(items, jobs)):
            yield from results


def parallel_list(fn: Callable[[Item], Result], items: Iterable[Item], jobs: int | None = None) -> list[Result]:
    """`parallel_map` collected into a list."""
    return list(parallel_map(fn, items, jobs))


def parallel_tags(jobs: int | None = None) -> dict[str, Any]:
    """What a run records about its parallelism (MLflow tags)."""
    jobs = configured_jobs() if jobs is None else jobs
    return {
        "parallel_jobs": str(jobs),
        "parallel_cores": str(cores()),
        "xgboost_threads_per_worker": str(threads_per_task(jobs)),
    }
