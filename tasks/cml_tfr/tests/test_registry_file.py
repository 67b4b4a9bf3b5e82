"""Bring-your-own registry file on cml_tfr's file: CSV and Parquet load, every problem is listed, units are
converted and recorded, identifiers are refused (clarifications section 1). The loader is general; these checks stay
here because they are written on cml_tfr's own columns, units, categories and cross-field rule."""

import numpy as np
import pandas as pd
import pytest

from features.registry_file import PSEUDO_ID_COLUMN, load_registry_file
from features.task_schema import SchemaValidationError
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort

N = 40


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cml_tfr_cohort(N, seed=8)


def test_good_csv_loads(cohort, tmp_path):
    path = tmp_path / "registry.csv"
    cohort.to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert len(loaded.frame) == N
    assert loaded.unit_conversions == []
    assert set(loaded.frame.columns) == {*CML_TFR_SCHEMA.predictor_names, *CML_TFR_SCHEMA.grouping_names,
                                         *CML_TFR_SCHEMA.outcome_columns}
    np.testing.assert_allclose(loaded.frame["tki_years"], cohort["tki_years"])
    np.testing.assert_array_equal(loaded.frame["prior_interferon"], cohort["prior_interferon"].astype(float))
    assert list(loaded.frame["sokal_risk"]) == list(cohort["sokal_risk"])
    np.testing.assert_array_equal(loaded.frame[CML_TFR_SCHEMA.event_column], cohort[CML_TFR_SCHEMA.event_column])


def test_every_problem_is_named_at_once(cohort, tmp_path):
    broken = cohort.astype(object).copy()
    broken.loc[0, "age_at_stop_years"] = "sixty"  # wrong type
    broken.loc[1, "dmr_years"] = -1.0  # out of range (minimum 0 years)
    broken.loc[2, "sokal_risk"] = "very high"  # unknown category
    broken["date_of_birth"] = "1960-01-01"  # a direct identifier
    broken["patient_name"] = "Jane Doe"  # another
    broken["favourite_colour"] = "blue"  # not in the schema, not an identifier
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    problems = raised.value.problems
    by_place = {(p.row, p.column): p for p in problems}
    assert "must be a number" in by_place[(1, "age_at_stop_years")].rule
    assert by_place[(1, "age_at_stop_years")].value == "sixty"
    assert ">= 0.0" in by_place[(2, "dmr_years")].rule
    assert "unknown category" in by_place[(3, "sokal_risk")].rule
    for identifier in ("date_of_birth", "patient_name"):
        assert "direct identifier" in by_place[(None, identifier)].rule, identifier
    assert "not in the schema" in by_place[(None, "favourite_colour")].rule
    assert "direct identifier" not in by_place[(None, "favourite_colour")].rule
    message = str(raised.value)
    for text in ("'sixty'", "dmr_years", "'very high'", "date_of_birth", "patient_name", "direct identifier"):
        assert text in message, text
    # Identifier values are never echoed back.
    assert "Jane Doe" not in message and "1960-01-01" not in message


def test_months_column_is_converted_to_years_and_recorded(cohort, tmp_path):
    export = cohort.copy()
    export.insert(2, "tki_months", export.pop("tki_years") * 12)
    path = tmp_path / "months.csv"
    export.to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert "tki_months" not in loaded.frame.columns
    # 1 month = 1/12 year (UNIT_FACTORS_TO_DAYS: 365.25/12 days vs 365.25 days).
    np.testing.assert_allclose(loaded.frame["tki_years"], export["tki_months"] / 12, rtol=1e-12)
    np.testing.assert_allclose(loaded.frame["tki_years"], cohort["tki_years"], rtol=1e-9)
    assert len(loaded.unit_conversions) == 1
    assert "tki_months" in loaded.unit_conversions[0] and "tki_years" in loaded.unit_conversions[0]


def test_days_column_is_converted_and_unparseable_value_reported(cohort, tmp_path):
    export = cohort.astype(object).copy()
    days = (export.pop("dmr_years").astype(float) * 365.25).astype(object)
    days[4] = "long"
    export.insert(3, "dmr_days", days)
    path = tmp_path / "days.csv"
    export.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    [problem] = raised.value.problems
    # Reported with the original text; the column is named after the schema field it was converted to.
    assert (problem.row, problem.value) == (5, "long")
    assert problem.column in ("dmr_years", "dmr_days")
    assert "must be a number" in problem.rule


def test_pseudo_id_is_accepted_and_dropped(cohort, tmp_path):
    export = cohort.copy()
    export.insert(0, PSEUDO_ID_COLUMN, [f"p{i:04d}" for i in range(N)])
    path = tmp_path / "with_id.csv"
    export.to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert PSEUDO_ID_COLUMN not in loaded.frame.columns
    assert len(loaded.frame) == N
    assert not loaded.frame.astype(str).isin(["p0001"]).any().any()


def test_parquet_loads_like_csv(cohort, tmp_path):
    csv_path, parquet_path = tmp_path / "r.csv", tmp_path / "r.parquet"
    cohort.to_csv(csv_path, index=False)
    cohort.to_parquet(parquet_path, index=False)
    from_csv = load_registry_file(csv_path, CML_TFR_SCHEMA).frame
    from_parquet = load_registry_file(parquet_path, CML_TFR_SCHEMA)
    assert from_parquet.source.endswith("r.parquet")
    pd.testing.assert_frame_equal(from_parquet.frame, from_csv, check_dtype=False)


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_registry_file(tmp_path / "absent.csv", CML_TFR_SCHEMA)
    other = tmp_path / "registry.xlsx"
    other.write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        load_registry_file(other, CML_TFR_SCHEMA)


def test_names_and_labels_differing_in_case_or_spaces_are_matched_and_noted(cohort, tmp_path):
    export = cohort.rename(columns={"sokal_risk": " Sokal_Risk ", "tki_years": "TKI_Years"})
    export["tki_at_stop"] = export["tki_at_stop"].str.upper()
    export["depth_at_stop"] = " " + export["depth_at_stop"].str.lower() + " "
    path = tmp_path / "cases.csv"
    export.to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert list(loaded.frame["sokal_risk"]) == list(cohort["sokal_risk"])
    assert list(loaded.frame["tki_at_stop"]) == list(cohort["tki_at_stop"])
    assert list(loaded.frame["depth_at_stop"]) == list(cohort["depth_at_stop"])
    np.testing.assert_allclose(loaded.frame["tki_years"], cohort["tki_years"])
    notes = "\n".join(loaded.notes)
    assert "column ' Sokal_Risk ' read as 'sokal_risk'" in notes and "column 'TKI_Years' read as 'tki_years'" in notes
    imatinib = int((cohort["tki_at_stop"] == "imatinib").sum())
    assert f"tki_at_stop: 'IMATINIB' read as 'imatinib' in {imatinib} row(s)" in notes
    assert "depth_at_stop: ' mr4.5 ' read as 'MR4.5'" in notes


def test_near_misses_get_a_did_you_mean(cohort, tmp_path):
    export = cohort.astype(object).rename(columns={"sokal_risk": "sokal_rsik"})
    export.loc[2, "tki_at_stop"] = "imatinb"
    export.loc[3, "tki_at_stop"] = "aspirin"
    path = tmp_path / "typos.csv"
    export.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    by_place = {(p.row, p.column): p.rule for p in raised.value.problems}
    assert "did you mean 'sokal_risk'?" in by_place[(None, "sokal_rsik")]
    assert "did you mean 'imatinib'?" in by_place[(3, "tki_at_stop")]
    assert "did you mean" not in by_place[(4, "tki_at_stop")]


def test_two_columns_that_differ_only_in_case_are_a_problem(cohort, tmp_path):
    export = cohort.assign(Sex=cohort["sex"])
    path = tmp_path / "twice.csv"
    export.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    [problem] = raised.value.problems
    assert problem.column == "sex" and "keep one" in problem.rule


def test_the_report_prints_plain_numbers(cohort, tmp_path):
    export = cohort.copy()
    export.loc[4, ["tki_years", "dmr_years"]] = [17.45, 20.0]  # deep response longer than the TKI
    export.loc[5, "age_at_stop_years"] = 117.5  # out of range
    path = tmp_path / "numbers.parquet"
    export.to_parquet(path, index=False)  # typed columns: the values come back as numpy scalars
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    message = str(raised.value)
    assert "np.float64" not in message and "np." not in message
    assert "row 5, column 'dmr_years,tki_years', values dmr_years=20.0, tki_years=17.45:" in message
    assert "row 6, column 'age_at_stop_years', value 117.5: must be <= 100" in message
