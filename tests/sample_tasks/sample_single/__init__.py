"""The test-only single-event sample task: one cross-field rule and a small deterministic generator: an exponential
relapse hazard that falls with treatment (with a step down at 5 years of it) and response duration and rises with
the risk group; age has no effect; uniform censoring; eight centres in two countries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.mrd_rules import absent
from features.task_spec import TaskCode


def response_within_treatment(frame: pd.DataFrame) -> pd.Series:
    response, treatment = frame["response_years"], frame["treatment_years"]
    return response.isna() | treatment.isna() | (response <= treatment + 1e-9)


def response_within_treatment_record(record: Mapping[str, Any]) -> bool:
    response, treatment = record.get("response_years"), record.get("treatment_years")
    return absent(response) or absent(treatment) or bool(response <= treatment + 1e-9)


def generate(n_patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treatment = rng.uniform(3, 12, n_patients).round(1)
    response = (treatment * rng.uniform(0.3, 0.9, n_patients)).round(1)
    risk = rng.choice(["low", "intermediate", "high"], n_patients, p=[0.5, 0.3, 0.2])
    log_hazard = (
        np.log(0.012)
        + 0.5 * (risk == "intermediate")
        + 1.0 * (risk == "high")
        - 0.15 * (response - 4)
        - 0.05 * (treatment - 7)
        - 0.6 * (treatment >= 5)
    )
    event_time = rng.exponential(1 / np.exp(log_hazard))
    censor = rng.uniform(12, 72, n_patients)
    centre = rng.integers(1, 9, n_patients)
    marker = rng.uniform(1, 100, n_patients).round(1)
    return pd.DataFrame(
        {
            "age_years": rng.uniform(25, 85, n_patients).round(1),
            "sex": rng.choice(["female", "male"], n_patients),
            "treatment_years": treatment,
            "response_years": response,
            "risk_group": risk,
            "prior_therapy": rng.random(n_patients) < 0.2,
            "marker_level": np.where(rng.random(n_patients) < 0.3, np.nan, marker),
            "centre": [f"S{c:02d}" for c in centre],
            "country": np.where(centre <= 4, "AA", "BB"),
            "months_to_relapse_or_last_visit": np.minimum(event_time, censor).round(2),
            "relapsed": (event_time <= censor).astype(int),
        }
    )


TASK_CODE = TaskCode(
    rules={"response_within_treatment": response_within_treatment},
    record_rules={"response_within_treatment": response_within_treatment_record},
    generate_cohort=generate,
)
