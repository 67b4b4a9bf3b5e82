"""Schema validation on the cml_tfr schema: every problem of a file is reported at once, with row, column, value and
rule, including its own cross-field rules (DMR within the TKI, the TKI within the age)."""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import SchemaValidationError, validate_frame
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cml_tfr_cohort(200, seed=3)


def test_synthetic_cohort_passes_its_own_schema(cohort):
    clean = validate_frame(cohort, CML_TFR_SCHEMA)
    assert len(clean) == len(cohort)
    assert set(clean.columns) == {*CML_TFR_SCHEMA.predictor_names, *CML_TFR_SCHEMA.grouping_names,
                                  *CML_TFR_SCHEMA.outcome_columns}


def test_every_problem_is_reported_with_row_column_value_and_rule(cohort):
    broken = cohort.astype(object).copy()
    broken.loc[0, "age_at_stop_years"] = "sixty"  # wrong type
    broken.loc[1, "tki_years"] = 55  # out of range
    broken.loc[2, "sokal_risk"] = "very high"  # unknown category
    broken.loc[3, "sex"] = None  # required missing
    broken.loc[4, "months_to_relapse_or_last_pcr"] = -2  # negative time
    broken.loc[5, "dmr_years"] = 30.0  # longer than the TKI itself
    with pytest.raises(SchemaValidationError) as raised:
        validate_frame(broken, CML_TFR_SCHEMA)
    found = {(p.row, p.column) for p in raised.value.problems}
    assert {(1, "age_at_stop_years"), (2, "tki_years"), (3, "sokal_risk"), (4, "sex"),
            (5, "months_to_relapse_or_last_pcr"), (6, "dmr_years,tki_years")} <= found
    message = str(raised.value)
    assert "'very high'" in message and "unknown category" in message and "nothing was trained" in message


def test_optional_predictors_may_be_missing(cohort):
    frame = cohort.copy()
    frame["bcr_abl1_halving_time_days"] = np.nan
    assert validate_frame(frame, CML_TFR_SCHEMA)["bcr_abl1_halving_time_days"].isna().all()


def test_missing_required_column_is_named(cohort):
    with pytest.raises(SchemaValidationError, match="'sokal_risk'.*required column is missing"):
        validate_frame(cohort.drop(columns=["sokal_risk"]), CML_TFR_SCHEMA)


def test_tki_longer_than_the_patients_life_is_refused(cohort):
    broken = cohort.copy()
    broken.loc[7, ["age_at_stop_years", "tki_years", "dmr_years"]] = [30.0, 39.9, 5.0]
    with pytest.raises(SchemaValidationError) as raised:
        validate_frame(broken, CML_TFR_SCHEMA)
    [problem] = raised.value.problems
    assert (problem.row, problem.column) == (8, "tki_years,age_at_stop_years")
    assert "cannot be longer than the patient's age" in problem.rule
