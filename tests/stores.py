"""The small training settings and the trained-store record that the session fixtures (conftest.py at the root)
and the pipeline tests share."""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainedStore:
    root: Path
    tracking_uri: str
    models_dir: Path
    summary: object
    settings: object


def small_settings(root: Path, seed: int = 42):
    from training.config import TrainSettings

    return TrainSettings(
        task="cml_tfr",
        n_patients=2000,
        seed=seed,
        n_trials=3,
        n_folds=3,
        tracking_uri=f"sqlite:///{root}/mlruns/mlflow.db",
        models_dir=root / "models",
        n_replicates=10,
        data_dir=root / "data",
        quiet=True,
    )
