"""The `cml_tfr` task folder: the code its task.toml names (cross-field rules) and its synthetic generator."""

from __future__ import annotations

import pandas as pd

from features.task_spec import TaskCode, folder_attribute
from tasks.cml_tfr.rules import dmr_within_tki, dmr_within_tki_record, tki_within_age, tki_within_age_record


def _cohort(n_patients: int, seed: int) -> pd.DataFrame:
    from tasks.cml_tfr.generator import generate_cml_tfr_cohort  # scipy fitting only when a cohort is drawn

    return generate_cml_tfr_cohort(n_patients, seed)


TASK_CODE = TaskCode(rules={"dmr_within_tki": dmr_within_tki, "tki_within_age": tki_within_age},
                     record_rules={"dmr_within_tki": dmr_within_tki_record, "tki_within_age": tki_within_age_record},
                     generate_cohort=_cohort, routes=("stop_timing",))

__getattr__ = folder_attribute(__name__)  # tasks.<task>.SCHEMA
