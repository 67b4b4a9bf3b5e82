"""The small training settings and the trained-store record that the session fixtures (conftest.py at the root)
and the pipeline tests share. The session's stores train the test-only sample tasks (tests/sample_tasks/)."""

import atexit
import shutil
import tempfile
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from tests.sample_tasks import COMPETING, SINGLE

# The smallest settings that still exercise what the slow tests assert: both families tuned (3 trials, so the
# trial count is not the default) on 2 centre-grouped folds, bootstrap intervals on 10 replicates, figures at
# the main horizon only (the one the tests read; each horizon's figures cost as much; `quick_settings`: none), and
# the promotion gates of training/promotion_gates.toml with 50 bootstrap draws instead of 200 (no test reads an
# interval's width). The single-event task's
# default cohort (1,200 patients over 8 centres) keeps its first run above every promotion gate, which the
# promotion tests need; the competing one is only read for what its run reports, and 800 patients still give each
# of its 8 centres over 50 patients and 10 events (so leave-one-centre-out, as a registry would be validated).
N_TRIALS = 3
COMPETING_PATIENTS = 800
BOOTSTRAP_DRAWS = 50


@dataclass
class TrainedStore:
    root: Path
    tracking_uri: str
    models_dir: Path
    summary: object
    settings: object
    gates: object


def small_settings(root: Path, seed: int = 42, task: str = SINGLE):
    from training.config import TrainSettings

    return TrainSettings(
        task=task,
        n_patients=None,
        seed=seed,
        n_trials=N_TRIALS,
        n_folds=2,
        tracking_uri=f"sqlite:///{root}/mlruns/mlflow.db",  # a run into a new root starts it: tracking_store
        models_dir=root / "models",
        n_replicates=10,
        data_dir=root / "data",
        quiet=True,
        plots="main",
    )


@cache
def _blank_store() -> Path:
    """An MLflow SQLite store with its tables made and nothing in them, once per test process. MLflow makes a new
    store's tables by running its schema migrations, about 5 s each time; a copy of this file takes 0.1 s and holds
    the same rows (MLflow's Default experiment points into the working directory, the same for both)."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="blank_mlflow_store_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # each test process leaves no copy behind in /tmp
    database = folder / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


def tracking_store(root: Path) -> str:
    """The tracking URI of `root`'s store, root/mlruns/mlflow.db, started as a copy of a blank store (a test that
    trains into a new root calls this first; settings alone make no store, so a test that never logs pays nothing)."""
    database = root / "mlruns" / "mlflow.db"
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_blank_store(), database)
    return f"sqlite:///{database}"


def quick_settings(root: Path, **changes):
    """`small_settings` for a run whose tests read no figure: it draws none (a third of a small run's time)."""
    return replace(small_settings(root), plots="none", **changes)


def small_gates(path: Path | None = None):
    """The promotion gates of `path` (default: training/promotion_gates.toml) with BOOTSTRAP_DRAWS draws."""
    from training.promotion import load_gates

    return replace(load_gates(path), bootstrap_draws=BOOTSTRAP_DRAWS)


def competing_settings(root: Path):
    return replace(small_settings(root, task=COMPETING), n_patients=COMPETING_PATIENTS)
