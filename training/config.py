"""Settings of one training run, as a typed object (nothing is set up on import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
PLOT_CHOICES = ("all", "main", "none")


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
    # Which figures the run draws (`--plots`, `PLOTS=`): "all", every endpoint at every reliable horizon; "main",
    # the main horizon only; "none", no figure (the tables, metrics and model card are the same). Figures are a
    # third of a small run's time: a quick look at a registry file needs none (serving explains any horizon itself).
    plots: str = "all"
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

    def __post_init__(self) -> None:
        if self.plots not in PLOT_CHOICES:
            raise ValueError(f"plots must be one of {', '.join(PLOT_CHOICES)}, not {self.plots!r}")

    @property
    def artifact_root(self) -> Path:
        """Artifacts live beside the SQLite store (inside mlruns/ by default)."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        return Path("mlruns/artifacts").resolve()
