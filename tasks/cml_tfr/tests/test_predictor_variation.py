"""Which of cml_tfr's predictors count as constant: one value, category, flag or an empty cell for 99 % or more of
the rows (values compared as the schema reads them)."""

import pandas as pd
import pytest

from features.predictor_variation import constant_predictor_problems, near_constant_predictors
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cml_tfr_cohort(400, seed=3).astype(object)


def test_a_varied_cohort_has_no_constant_predictor(cohort):
    assert constant_predictor_problems(cohort, CML_TFR_SCHEMA) == []


def test_a_number_held_by_99_percent_is_reported_written_as_the_schema_reads_it(cohort):
    frame = cohort.copy()
    frame["tki_years"] = ["7", "7.0", " 7 ", 7.0] * 100  # the same number, written four ways
    frame.loc[0, "tki_years"] = "8"  # 1 of 400 differs: 99.75 %
    [found] = near_constant_predictors(frame, CML_TFR_SCHEMA)
    assert (found.predictor, found.value, found.count) == ("tki_years", 7.0, 399)
    assert found.describe() == "the same value (7) for 99.8 % of the 400 patients"
    frame.loc[:3, "tki_years"] = "8"  # 4 of 400 differ: 99.0 % -- still at the threshold
    assert [v.predictor for v in near_constant_predictors(frame, CML_TFR_SCHEMA)] == ["tki_years"]
    frame.loc[:4, "tki_years"] = "8"  # 5 of 400: 98.75 %, varies enough
    assert near_constant_predictors(frame, CML_TFR_SCHEMA) == []


def test_flags_compare_as_booleans_and_an_empty_column_is_constant(cohort):
    frame = cohort.copy()
    frame["prior_interferon"] = ["yes", "TRUE", "1", True] * 100
    frame["nk_cell_level"] = None  # optional, empty for everyone
    found = {v.predictor: v for v in near_constant_predictors(frame, CML_TFR_SCHEMA)}
    assert set(found) == {"prior_interferon", "nk_cell_level"}
    assert found["prior_interferon"].describe() == "the same value (true) for all 400 patients"
    assert found["nk_cell_level"].describe() == "empty for all 400 patients"


def test_an_absent_optional_column_counts_as_empty_an_absent_required_one_is_left_to_the_schema(cohort):
    frame = cohort.drop(columns=["nk_cell_level", "tki_years"])
    assert [v.predictor for v in near_constant_predictors(frame, CML_TFR_SCHEMA)] == ["nk_cell_level"]


def test_dropped_names_are_skipped_and_unknown_ones_reported(cohort):
    frame = cohort.assign(sokal_risk="low")
    assert [p.column for p in constant_predictor_problems(frame, CML_TFR_SCHEMA)] == ["sokal_risk"]
    assert constant_predictor_problems(frame, CML_TFR_SCHEMA, ("sokal_risk",)) == []
    [unknown] = constant_predictor_problems(frame, CML_TFR_SCHEMA, ("sokal_risk", "sokal"))
    assert unknown.column == "sokal" and "names no predictor of cml_tfr" in unknown.rule
    everything = constant_predictor_problems(frame, CML_TFR_SCHEMA, CML_TFR_SCHEMA.predictor_names)
    assert any("every predictor is dropped" in p.rule for p in everything)
