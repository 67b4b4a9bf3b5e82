"""The prediction tasks the project knows, each a schema plus its default synthetic cohort."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.cml_tfr_schema import CML_TFR_SCHEMA
from features.task_schema import TaskSchema


@dataclass(frozen=True)
class Task:
    schema: TaskSchema
    generate_cohort: Callable[..., pd.DataFrame]
    default_cohort_size: int


def _cml_tfr_cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from features.synthetic_cml_tfr import generate_cml_tfr_cohort

    return generate_cml_tfr_cohort(n_patients, seed)


TASKS: dict[str, Task] = {
    "cml_tfr": Task(CML_TFR_SCHEMA, _cml_tfr_cohort, default_cohort_size=2000),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
