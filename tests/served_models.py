"""Champions for the serving tests, built in seconds: the task's synthetic cohort split as training splits it, one
family fitted with fixed small settings (no tuning, no MLflow, no validation across centres), completed as training
completes it, a few bootstrap replicates for the intervals, its held-out metrics, and exported with champion.json
by the same function promotion exports with.

What these champions do not have is what only the training run makes: an MLflow run and registered version, and
the model card (its figures come from the validation the run does). Tests of those use `trained_store`."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from features.task_schema import validate_frame
from features.tasks import get_task
from tests.sample_tasks import COMPETING, SINGLE, registered
from training.evaluate import evaluate_bundle
from training.pipeline import complete_bundle, data_digest, fit_family
from training.promotion import export_champion
from training.replicates import fit_replicates
from training.splits import hold_out_centres
from training.tune import TuningResult

SEED = 42
VERSION = "1"
N_REPLICATES = 5
# Settings inside the tuning search space, fixed so that no trial runs.
SMALL_XGBOOST = TuningResult(
    params={
        "eta": 0.1,
        "max_depth": 2,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bynode": 0.8,
        "lambda": 1.0,
        "alpha": 0.01,
    },
    num_boost_round=100,
    cv_harrell_c=float("nan"),
    n_trials=0,
)
# The test-only sample tasks (tests/sample_tasks/), one family each so that the served path of each is exercised: Cox
# on the single-event task, the boosted model (tree SHAP, Breslow baselines on its margins) on the competing-risk one.
# A task folder's own tests build their task's champion with `build_champion` (tasks/<task>/tests/).
FAMILIES = {SINGLE: "cox_ph", COMPETING: "xgboost_cox"}
# Half the sample tasks' default cohorts (1,200 and 1,500): a session builds these once, each on one test worker,
# and the build (background, held-out metrics, replicates) grows with the patients; the held-out centres keep events
# of every cause, and the served answers take the same code paths as on the full cohorts.
SIZES = {SINGLE: 600, COMPETING: 750}


@dataclass
class ServedModels:
    models_dir: Path
    versions: dict[str, str]
    families: dict[str, str]


def build_champion(
    task_name: str,
    family: str,
    models_dir: Path,
    scratch: Path,
    n_patients: int | None = None,
    n_replicates: int = N_REPLICATES,
    held_out_metrics: bool = True,
) -> str:
    """Fit, complete and export one champion on `n_patients` of the task's synthetic cohort (default: the task's
    default size) with `n_replicates` bootstrap refits for its intervals (each a full refit of every cause: a test
    that reads no interval may ask for fewer) and, unless `held_out_metrics` is off (a test that never asks for
    /model: they are only shown there), its metrics on the held-out centres; returns its run id as champion.json
    records it."""
    task = get_task(task_name)
    schema = task.schema
    frame = validate_frame(task.generate_cohort(n_patients or task.default_cohort_size, SEED), schema)
    split = hold_out_centres(frame, schema.event_column, seed=SEED)
    development = frame.iloc[split.development].reset_index(drop=True)
    held_out = frame.iloc[split.held_out].reset_index(drop=True)
    tuned = dict.fromkeys(task.cause_targets(development), SMALL_XGBOOST)
    bundle = complete_bundle(fit_family(family, task, development, tuned, SEED), development, schema, SEED)
    bundle.replicates = fit_replicates(bundle, task, development, tuned, SEED, n_replicates)
    if held_out_metrics:
        bundle.metrics = evaluate_bundle(bundle, held_out, task.endpoint_targets(held_out)).metrics
    digest = data_digest(frame)
    # No MLflow run made this bundle: the id says so rather than pointing at a run that does not exist.
    run_id = f"no-mlflow-run-{task_name}-seed{SEED}"
    bundle.lineage = {
        "version": VERSION,
        "run_id": run_id,
        "data_digest": digest,
        "split_design": split.design,
        "data_source": f"synthetic {task_name} cohort, n={len(frame)}, seed={SEED}",
    }
    bundle_dir = scratch / task_name
    bundle.save(bundle_dir)
    export_champion(bundle_dir, models_dir, task_name, VERSION, run_id, digest)
    return run_id


def build_served_models(root: Path) -> ServedModels:
    """Built once in `root`, each champion under a lock of its own: the processes given the same root (pytest-xdist
    workers) start on different champions (the order turns with the worker's number), so two workers build the two
    at once instead of one building both while the other waits; a champion already built is reused."""
    root.mkdir(parents=True, exist_ok=True)
    models_dir, names = root / "models", list(FAMILIES)
    turn = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % len(names)
    for task_name in names[turn:] + names[:turn]:
        with (root / f".{task_name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            built = root / f"{task_name}.built"
            if not built.exists():
                with registered():
                    build_champion(task_name, FAMILIES[task_name], models_dir, root / "bundles", SIZES[task_name])
                built.touch()
    return ServedModels(models_dir, dict.fromkeys(FAMILIES, VERSION), dict(FAMILIES))
