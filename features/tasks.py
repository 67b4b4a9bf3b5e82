"""The prediction tasks the project knows: schema, default synthetic cohort, and the survival targets the
loader derives from the task's raw outcome columns (design contract 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.all_hsct_schema import ALL_HSCT_SCHEMA, derive_endpoints
from features.cml_tfr_schema import CML_TFR_SCHEMA
from features.survival_target import check_survival_target
from features.task_schema import TaskSchema


@dataclass(frozen=True)
class EndpointTarget:
    """What an endpoint is judged against: months, event code (0 censored), the code of interest, and
    whether other codes are competing events (then incidences are compared with Aalen-Johansen)."""

    months: np.ndarray
    code: np.ndarray
    event_of_interest: int = 1
    competing: bool = False


# cause name -> (months, 0/1 event of that cause; other causes censor it)
CauseTargets = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Task:
    schema: TaskSchema
    generate_cohort: Callable[..., pd.DataFrame]
    default_cohort_size: int
    outcome: str  # "single_event" or "competing_risks"
    cause_targets: Callable[[pd.DataFrame], CauseTargets]
    endpoint_targets: Callable[[pd.DataFrame], dict[str, EndpointTarget]]
    # months from relapse to death or last contact, 0/1 death, for relapsed patients (competing tasks)
    post_relapse_target: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None


def _cml_tfr_cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from features.synthetic_cml_tfr import generate_cml_tfr_cohort

    return generate_cml_tfr_cohort(n_patients, seed)


def _single_event(schema: TaskSchema) -> Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]:
    def target(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return check_survival_target(frame[schema.time_column], frame[schema.event_column])

    return target


_cml_target = _single_event(CML_TFR_SCHEMA)


def _all_hsct_cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from features.synthetic_all_hsct import generate_all_hsct_cohort

    return generate_all_hsct_cohort(n_patients, seed)


def _all_hsct_causes(frame: pd.DataFrame) -> CauseTargets:
    """Cause-specific targets: relapse and NRM, and the four causes whose first ends GVHD-free survival."""
    endpoints = derive_endpoints(frame)
    months, code = endpoints["competing"]
    grfs_months, grfs_code = endpoints["grfs"]
    causes = {"relapse": (months, (code == 1).astype(int)), "nrm": (months, (code == 2).astype(int))}
    for number, name in enumerate(("grfs_relapse", "grfs_nrm", "grfs_agvhd", "grfs_cgvhd"), start=1):
        causes[name] = (grfs_months, (grfs_code == number).astype(int))
    return causes


def _all_hsct_endpoints(frame: pd.DataFrame) -> dict[str, EndpointTarget]:
    endpoints = derive_endpoints(frame, allow_all_censored=True)
    months, code = endpoints["competing"]
    grfs_months, grfs_code = endpoints["grfs"]
    return {
        "relapse": EndpointTarget(months, code, 1, competing=True),
        "nrm": EndpointTarget(months, code, 2, competing=True),
        "os": EndpointTarget(*endpoints["os"]),
        "lfs": EndpointTarget(months, (code > 0).astype(int)),
        "grfs": EndpointTarget(grfs_months, (grfs_code > 0).astype(int)),
    }

TASKS: dict[str, Task] = {
    "cml_tfr": Task(
        CML_TFR_SCHEMA, _cml_tfr_cohort, default_cohort_size=2000, outcome="single_event",
        cause_targets=lambda frame: {"relapse": _cml_target(frame)},
        endpoint_targets=lambda frame: {"relapse": EndpointTarget(*_cml_target(frame))},
    ),
    "all_hsct": Task(
        ALL_HSCT_SCHEMA, _all_hsct_cohort, default_cohort_size=4000, outcome="competing_risks",
        cause_targets=_all_hsct_causes, endpoint_targets=_all_hsct_endpoints,
        post_relapse_target=lambda frame: derive_endpoints(frame, allow_all_censored=True)["post_relapse"],
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
