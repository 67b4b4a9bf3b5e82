"""The `all_hsct` task folder: the code its task.toml names (rules, the derived MRD log reduction, the outcome
check) and the targets of its five endpoints, derived from six raw outcome columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from features.mrd_rules import mrd_log_reduction, mrd_record_rules, mrd_rules, record_mrd_log_reduction
from features.task_spec import TaskCode, folder_attribute
from tasks.all_hsct import rules

if TYPE_CHECKING:
    from features.tasks import CauseTargets, EndpointTarget


def _cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from tasks.all_hsct.generator import generate_all_hsct_cohort  # scipy fitting only when a cohort is drawn

    return generate_all_hsct_cohort(n_patients, seed)


def _causes(frame: pd.DataFrame) -> CauseTargets:
    """Cause-specific targets: relapse and NRM, and the four causes whose first ends GVHD-free survival."""
    endpoints = rules.derive_endpoints(frame)
    months, code = endpoints["competing"]
    grfs_months, grfs_code = endpoints["grfs"]
    causes = {"relapse": (months, (code == 1).astype(int)), "nrm": (months, (code == 2).astype(int))}
    for number, name in enumerate(("grfs_relapse", "grfs_nrm", "grfs_agvhd", "grfs_cgvhd"), start=1):
        causes[name] = (grfs_months, (grfs_code == number).astype(int))
    return causes


def _endpoints(frame: pd.DataFrame) -> dict[str, EndpointTarget]:
    from features.tasks import EndpointTarget  # the registry imports this folder while it builds

    endpoints = rules.derive_endpoints(frame, allow_all_censored=True)
    months, code = endpoints["competing"]
    grfs_months, grfs_code = endpoints["grfs"]
    return {
        "relapse": EndpointTarget(months, code, 1, competing=True),
        "nrm": EndpointTarget(months, code, 2, competing=True),
        "os": EndpointTarget(*endpoints["os"]),
        "lfs": EndpointTarget(months, (code > 0).astype(int)),
        "grfs": EndpointTarget(grfs_months, (grfs_code > 0).astype(int)),
    }


TASK_CODE = TaskCode(
    rules={
        "tki_only_for_ph_positive": rules.tki_only_for_ph_positive,
        "female_donor_to_male_needs_male": rules.female_donor_to_male_needs_male,
        "diagnosis_not_before_birth": rules.diagnosis_not_before_birth,
        **mrd_rules(),
    },
    derived={"mrd_log_reduction": mrd_log_reduction},
    record_rules={**rules.record_rules(), **mrd_record_rules()},
    record_derived={"mrd_log_reduction": record_mrd_log_reduction},
    checks={"outcome_problems_all_hsct": rules.outcome_problems_all_hsct},
    generate_cohort=_cohort,
    cause_targets=_causes,
    endpoint_targets=_endpoints,
    post_relapse_target=lambda frame: rules.derive_endpoints(frame, allow_all_censored=True)["post_relapse"],
)

__getattr__ = folder_attribute(__name__)  # tasks.<task>.SCHEMA
