"""The `all_frontline` task folder: the code its task.toml names (cross-field rules, the derived NCI/Rome group and
MRD log reduction) and its synthetic generator. The event column holds the cause codes (1 relapse, 2 death in
remission), so the targets follow from the spec."""

from __future__ import annotations

import pandas as pd

from features.mrd_rules import mrd_log_reduction, mrd_record_rules, mrd_rules, record_mrd_log_reduction
from features.task_spec import TaskCode, folder_attribute
from tasks.all_frontline import rules
from tasks.all_frontline.comparators import COMPARATORS


def _cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from tasks.all_frontline.generator import generate_all_frontline_cohort  # scipy only when a cohort is drawn

    return generate_all_frontline_cohort(n_patients, seed)


TASK_CODE = TaskCode(
    rules={
        **mrd_rules(),
        "genetic_subgroup_matches_lineage": rules.genetic_subgroup_matches_lineage,
        "ikzf1_deletion_only_in_b_lineage": rules.ikzf1_deletion_only_in_b_lineage,
        "nci_risk_group_matches_age_and_wbc": rules.nci_risk_group_matches_age_and_wbc,
    },
    derived={"nci_risk_group": rules.nci_risk_group, "mrd_log_reduction": mrd_log_reduction},
    record_rules={
        **mrd_record_rules(),
        "genetic_subgroup_matches_lineage": rules.genetic_subgroup_matches_lineage_record,
        "ikzf1_deletion_only_in_b_lineage": rules.ikzf1_deletion_only_in_b_lineage_record,
        "nci_risk_group_matches_age_and_wbc": rules.nci_risk_group_matches_age_and_wbc_record,
    },
    record_derived={"nci_risk_group": rules.nci_risk_group_record, "mrd_log_reduction": record_mrd_log_reduction},
    generate_cohort=_cohort,
    comparators=COMPARATORS,
)

__getattr__ = folder_attribute(__name__)  # tasks.<task>.SCHEMA
