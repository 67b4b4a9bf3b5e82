"""The `ebmt_hsct_death_cause` task folder: death from relapse vs other causes on the public EBMT extract ebmt2.
The folder registers the outcome check and the cause codes (from `dead` and `cause_of_death`), the extract and
the example patients; the targets of the endpoints then follow from task.toml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features import ebmt_registry
from features.task_spec import TaskCode, folder_attribute, load_spec
from tasks.ebmt_hsct_death_cause.rules import death_cause_outcome_problems, death_cause_target


def _example_patients(n_patients: int, seed: int) -> pd.DataFrame:
    return ebmt_registry.example_patients(n_patients, seed, load_spec(Path(__file__).parent).predictors)


def _after_relapse_death(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both causes are deaths: after a death from relapse nobody is alive (0 months, dead), so the bundle's
    overall survival is exactly 1 - CIF(death from relapse) - CIF(death from other causes)."""
    n = int(np.sum(death_cause_target(frame, allow_all_censored=True)[1] == 1))
    return np.zeros(n), np.ones(n, dtype=int)


TASK_CODE = TaskCode(
    checks={"death_cause_outcome_problems": death_cause_outcome_problems},
    cause_codes=lambda frame, allow_all_censored: death_cause_target(frame, allow_all_censored=allow_all_censored),
    generate_cohort=_example_patients,
    post_relapse_target=_after_relapse_death,
    public_extract=lambda task: ebmt_registry.public_extract(task, "ebmt2"),
)

__getattr__ = folder_attribute(__name__)  # tasks.<task>.SCHEMA
