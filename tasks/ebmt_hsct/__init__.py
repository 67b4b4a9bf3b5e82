"""The `ebmt_hsct` task folder: relapse-free survival on the public EBMT extract ebmt3. Its targets follow from
task.toml alone (one cause in the event column); the folder registers the extract and the example patients."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import ebmt_registry
from features.task_spec import TaskCode, folder_attribute, load_spec


def _example_patients(n_patients: int, seed: int) -> pd.DataFrame:
    return ebmt_registry.example_patients(n_patients, seed, load_spec(Path(__file__).parent).predictors)


TASK_CODE = TaskCode(generate_cohort=_example_patients,
                     public_extract=lambda task: ebmt_registry.public_extract(task, "ebmt3"))

__getattr__ = folder_attribute(__name__)  # tasks.<task>.SCHEMA
