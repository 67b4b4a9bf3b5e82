"""The all_hsct schema, its derived MRD feature, the registry checks of the raw outcome columns and the endpoints
the loader derives from them (clarifications sections 1 and 2). Small, exact, hand-made cases."""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import SchemaValidationError, validate_frame
from tasks.all_hsct import SCHEMA as ALL_HSCT_SCHEMA
from tasks.all_hsct.generator import generate_all_hsct_cohort
from tasks.all_hsct.rules import (
    ALL_HSCT_OUTCOME_COLUMNS,
    derive_endpoints,
    mrd_log_reduction,
    outcome_problems_all_hsct,
)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_all_hsct_cohort(400, seed=3)


def test_schema_contract():
    schema = ALL_HSCT_SCHEMA
    assert schema.task == "all_hsct" and schema.time_zero == "the day of the allogeneic stem-cell transplant"
    assert (schema.time_column, schema.event_column) == ("months_to_relapse_or_last_contact", "relapsed")
    assert schema.horizons_months == (12, 24, 36, 60) and schema.main_horizon_months == 24
    assert schema.endpoint_names == {"relapse": "incidence", "nrm": "incidence", "os": "survival",
                                     "lfs": "survival", "grfs": "survival"}
    assert ALL_HSCT_OUTCOME_COLUMNS == ("months_to_relapse_or_last_contact", "relapsed",
                                        "months_to_death_or_last_contact", "dead", "months_to_agvhd34",
                                        "months_to_systemic_cgvhd")
    assert set(schema.outcome_columns) <= set(ALL_HSCT_OUTCOME_COLUMNS)
    assert not set(schema.predictor_names) & {*ALL_HSCT_OUTCOME_COLUMNS, *schema.grouping_names}
    assert schema.grouping_names == ["centre", "country"]
    assert all(g.kind == "text" and not g.required for g in schema.grouping)
    for p in schema.predictors:
        if p.kind == "number":  # the request model states every range
            assert p.minimum is not None and p.maximum is not None, p.name
        if p.required:
            assert p.example is not None, p.name


def test_synthetic_cohort_passes_its_own_schema(cohort):
    clean = validate_frame(cohort, ALL_HSCT_SCHEMA)
    assert len(clean) == len(cohort)
    assert set(clean.columns) == {*ALL_HSCT_SCHEMA.predictor_names, *ALL_HSCT_SCHEMA.grouping_names,
                                  *ALL_HSCT_SCHEMA.outcome_columns}
    assert outcome_problems_all_hsct(cohort) == []
    # The typed frame (booleans as 1/0) still satisfies the derived-feature rule.
    np.testing.assert_allclose(mrd_log_reduction(clean), clean["mrd_log_reduction"], atol=1e-9)


def test_every_problem_is_reported_with_row_column_value_and_rule(cohort):
    broken = cohort.astype(object).copy()
    broken.loc[0, "donor_type"] = "MUD_10_10"  # unknown category
    broken.loc[1, "age_at_hct_years"] = 12  # out of range
    broken.loc[2, ["ph_chromosome", "tki_before_hct"]] = ["negative", True]  # TKI is for Ph+ only
    broken.loc[3, ["sex", "female_donor_to_male_recipient"]] = ["female", True]
    broken.loc[4, ["mrd_eoi_log10", "mrd_eoi_detectable"]] = [-3.0, False]  # a level but "undetectable"
    broken.loc[5, ["mrd_eoc_log10", "mrd_eoc_detectable", "mrd_assay_sensitivity_log10"]] = [-5.5, True, -4.0]
    broken.loc[6, ["mrd_eoi_log10", "mrd_eoi_detectable", "mrd_eoc_log10", "mrd_eoc_detectable",
                   "mrd_assay_sensitivity_log10", "mrd_log_reduction"]] = [-2.0, True, -3.0, True, -4.0, 3.0]
    broken.loc[7, "months_to_relapse_or_last_contact"] = -1  # negative time
    broken.loc[8, "disease_stage"] = None  # required missing
    with pytest.raises(SchemaValidationError) as raised:
        validate_frame(broken, ALL_HSCT_SCHEMA)
    found = {(p.row, p.column) for p in raised.value.problems}
    assert {(1, "donor_type"), (2, "age_at_hct_years"), (3, "tki_before_hct,ph_chromosome"),
            (4, "female_donor_to_male_recipient,sex"), (5, "mrd_eoi_log10,mrd_eoi_detectable"),
            (6, "mrd_eoc_log10,mrd_assay_sensitivity_log10"), (8, "months_to_relapse_or_last_contact"),
            (9, "disease_stage")} <= found
    assert any(p.row == 7 and p.column.startswith("mrd_log_reduction") for p in raised.value.problems)
    assert "'MUD_10_10'" in str(raised.value) and "nothing was trained" in str(raised.value)


def test_optional_predictors_may_be_missing(cohort):
    frame = cohort.copy()
    kinetics = ["mrd_eoi_log10", "mrd_eoi_detectable", "mrd_eoc_log10", "mrd_eoc_detectable",
                "mrd_assay_sensitivity_log10", "mrd_log_reduction"]
    frame[kinetics] = None
    frame[["mrd_pre_hct", "hct_ci"]] = None
    clean = validate_frame(frame, ALL_HSCT_SCHEMA)
    assert clean[kinetics + ["mrd_pre_hct", "hct_ci"]].isna().all().all()


# --- mrd_log_reduction: eoi - eoc, the assay sensitivity for an undetectable value ----------------------------

MRD_CASES = {
    # name: (eoi log10, eoi detectable, eoc log10, eoc detectable, sensitivity, expected)
    "both_detectable": (-2.0, True, -3.5, True, -4.0, 1.5),
    "falls_below_detection": (-2.5, True, None, False, -5.0, 2.5),
    "undetectable_twice_is_zero": (None, False, None, False, -4.0, 0.0),
    "reappears_after_induction": (None, False, -3.0, True, -4.0, -1.0),
    "level_without_flag_counts_as_detectable": (-3.0, None, -3.25, None, -5.0, 0.25),
    "detectable_but_not_quantified": (None, True, -4.0, True, -5.0, np.nan),
    "undetectable_without_sensitivity": (-2.0, True, None, False, None, np.nan),
    "end_of_consolidation_missing": (-2.0, True, None, None, -4.0, np.nan),
    "nothing_recorded": (None, None, None, None, None, np.nan),
}


@pytest.mark.parametrize("case", MRD_CASES.values(), ids=MRD_CASES.keys())
def test_mrd_log_reduction_by_hand(case):
    eoi, eoi_flag, eoc, eoc_flag, sensitivity, expected = case
    row = {"mrd_eoi_log10": eoi, "mrd_eoi_detectable": eoi_flag, "mrd_eoc_log10": eoc,
           "mrd_eoc_detectable": eoc_flag, "mrd_assay_sensitivity_log10": sensitivity}
    got = mrd_log_reduction(pd.DataFrame([row])).iloc[0]
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_mrd_log_reduction_reads_every_boolean_spelling():
    # One frame per spelling a file or a request may carry: bools, 1.0/0.0 (validated frames), text.
    for detectable, undetectable in ((True, False), (1.0, 0.0), ("true", "false"), ("yes", "no")):
        frame = pd.DataFrame({"mrd_eoi_log10": [-2.0], "mrd_eoi_detectable": [detectable],
                              "mrd_eoc_log10": [np.nan], "mrd_eoc_detectable": [undetectable],
                              "mrd_assay_sensitivity_log10": [-4.0]})
        assert mrd_log_reduction(frame).iloc[0] == pytest.approx(2.0), detectable


# --- raw outcome columns -------------------------------------------------------------------------------------

def outcome_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ALL_HSCT_OUTCOME_COLUMNS))


NAN = np.nan
HAND_MADE = outcome_frame([
    # relapse months, relapsed, death months, dead, aGVHD III-IV months, systemic cGVHD months
    (10.0, 1, 15.0, 1, NAN, NAN),  # relapse at 10, dies of it at 15
    (4.0, 0, 4.0, 1, 2.0, NAN),  # aGVHD at 2, non-relapse death at 4
    (30.0, 0, 30.0, 0, 8.0, 8.0),  # both GVHD on the same day, alive at 30
    (12.0, 1, 20.0, 0, NAN, 14.0),  # relapse at 12, cGVHD after it, alive at 20
    (6.0, 0, 9.0, 0, 7.0, NAN),  # relapse follow-up ends at 6, aGVHD at 7, alive at 9
])


def test_derive_endpoints_by_hand():
    endpoints = derive_endpoints(HAND_MADE)
    assert set(endpoints) == {"competing", "os", "grfs", "post_relapse"}
    expected = {
        "competing": ([10, 4, 30, 12, 6], [1, 2, 0, 1, 0]),
        "os": ([15, 4, 30, 20, 9], [1, 1, 0, 0, 0]),
        # first of relapse (1), NRM (2), aGVHD (3), cGVHD (4); a tie goes to the lower code; GVHD after the end
        # of relapse follow-up (row 5) does not enter.
        "grfs": ([10, 2, 8, 12, 6], [1, 3, 3, 1, 0]),
        "post_relapse": ([5, 8], [1, 0]),  # rows 1 and 4, the relapsed ones
    }
    for name, (months, code) in expected.items():
        np.testing.assert_allclose(endpoints[name][0], months, err_msg=name)
        np.testing.assert_array_equal(endpoints[name][1], code, err_msg=name)
        assert endpoints[name][0].dtype == float and endpoints[name][1].dtype.kind == "i"


def test_derive_endpoints_refuses_an_all_censored_file_unless_allowed():
    censored = outcome_frame([(5.0, 0, 5.0, 0, NAN, NAN), (7.0, 0, 8.0, 0, NAN, NAN)])
    with pytest.raises(ValueError, match="all patients are censored"):
        derive_endpoints(censored)
    assert derive_endpoints(censored, allow_all_censored=True)["post_relapse"][0].size == 0


def test_registry_outcome_checks_flag_every_bad_row():
    broken = outcome_frame([
        (10.0, 1, 8.0, 1, NAN, NAN),  # row 1: death before the recorded relapse
        (-3.0, 0, 5.0, 0, NAN, NAN),  # row 2: negative time
        (5.0, 2, 5.0, 0, NAN, NAN),  # row 3: relapsed is not 0/1
        (5.0, 0, 5.0, NAN, NAN, NAN),  # row 4: dead missing
        (5.0, 0, 6.0, 0, 7.5, NAN),  # row 5: aGVHD after last contact
        (12.0, 0, 10.0, 1, NAN, 11.0),  # row 6: relapse follow-up after death, cGVHD after death
        (NAN, 0, 10.0, 1, NAN, NAN),  # row 7: relapse time missing
        (4.0, 1, 9.0, 1, "soon", NAN),  # row 8: GVHD time is not a number
    ])
    found = {(p.row, p.column) for p in outcome_problems_all_hsct(broken)}
    assert found == {
        (1, "months_to_death_or_last_contact"), (2, "months_to_relapse_or_last_contact"), (3, "relapsed"),
        (4, "dead"), (5, "months_to_agvhd34"), (6, "months_to_death_or_last_contact"),
        (6, "months_to_relapse_or_last_contact"), (6, "months_to_systemic_cgvhd"),
        (7, "months_to_relapse_or_last_contact"), (8, "months_to_agvhd34"),
    }
    death_first = [p for p in outcome_problems_all_hsct(broken) if p.row == 1]
    assert "cannot come before relapse" in death_first[0].rule
    assert outcome_problems_all_hsct(HAND_MADE) == []


def test_registry_outcome_checks_name_missing_columns_and_no_events():
    problems = outcome_problems_all_hsct(HAND_MADE.drop(columns=["dead"]))
    assert [(p.row, p.column) for p in problems] == [(None, "dead")]
    no_events = outcome_frame([(5.0, 0, 5.0, 0, NAN, NAN)])
    assert [p.rule for p in outcome_problems_all_hsct(no_events)] == ["no relapse and no death: nothing to learn from"]
    # GVHD columns are optional: a file without them is checked on the four core columns only.
    assert outcome_problems_all_hsct(HAND_MADE.drop(columns=["months_to_agvhd34", "months_to_systemic_cgvhd"])) == []


def test_diagnosis_before_birth_and_fractional_calendar_years_are_refused(cohort):
    broken = cohort.astype(object).copy()
    broken.loc[0, ["age_at_hct_years", "diagnosis_to_hct_years"]] = [18.0, 19.5]
    broken.loc[1, "transplant_year"] = 2018.5
    broken.loc[2, ["age_at_hct_years", "diagnosis_to_hct_years", "transplant_year"]] = [19.0, 19.0, 2018.0]
    with pytest.raises(SchemaValidationError) as raised:
        validate_frame(broken, ALL_HSCT_SCHEMA)
    found = {(p.row, p.column): p.rule for p in raised.value.problems}
    assert set(found) == {(1, "diagnosis_to_hct_years,age_at_hct_years"), (2, "transplant_year")}
    assert "cannot be longer than the patient's age" in found[(1, "diagnosis_to_hct_years,age_at_hct_years")]
    assert found[(2, "transplant_year")] == "must be a whole number (calendar year)"


def test_requests_meet_the_same_rules():
    """The serving path builds its request model and its cross-field checks from this schema."""
    from pydantic import ValidationError

    from serving.api import prepare_patients
    from serving.request_models import patient_request_model

    model = patient_request_model(ALL_HSCT_SCHEMA)
    patient = {p.name: p.example for p in ALL_HSCT_SCHEMA.predictors if p.example is not None}
    model.model_validate({**patient, "transplant_year": 2018})
    with pytest.raises(ValidationError, match="multiple of 1"):
        model.model_validate({**patient, "transplant_year": 2018.5})
    request = model.model_validate({**patient, "age_at_hct_years": 18, "diagnosis_to_hct_years": 19.5})
    [(predictors, problems)] = prepare_patients(ALL_HSCT_SCHEMA, [request.model_dump(exclude={"explain"})])
    assert predictors is None
    assert problems == [{"location": "body.diagnosis_to_hct_years",
                         "reason": ALL_HSCT_SCHEMA.cross_field_rules[2].name}]
