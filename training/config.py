"""Settings of one training run, as a typed object (nothing is set up on import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


@dataclass(frozen=True)
class TrainSettings:
    task: str = "cml_tfr"
    data_path: str | None = None  # a registry file; None = the default synthetic cohort
    n_patients: int | None = None  # synthetic cohort size (task default when None)
    seed: int = 42
    n_trials: int = 30
    n_folds: int = 5
    held_out_fraction: float = 0.25
    n_replicates: int = 30  # bootstrap refits behind the 95 % intervals (training/replicates.py)
    # Explanation plots at the main horizon only (a quick run's plots; serving explains any horizon itself);
    # default: every reliable horizon of every endpoint.
    explain_main_horizon_only: bool = False
    tracking_uri: str = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    models_dir: Path = Path("models")
    data_dir: Path = Path("data")
    quiet: bool = False
    # How a CSV registry file is written; None = detected by the loader (features/file_format.py).
    separator: str | None = None
    decimal: str | None = None
    encoding: str | None = None
    # Predictors the model must not use (`--drop-predictor`, `DROP=`): e.g. one that is constant in the file.
    drop_predictors: tuple[str, ...] = ()
    # A shared Optuna study (training/tune.py): RDB storage URL and study name; None = in memory, seeded.
    optuna_storage: str | None = os.environ.get("OPTUNA_STORAGE") or None
    optuna_study: str | None = os.environ.get("OPTUNA_STUDY") or None

    @property
    def artifact_root(self) -> Path:
        """Artifacts live beside the SQLite store (inside mlruns/ by default)."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        return Path("mlruns/artifacts").resolve()
