"""Identifiers are refused by name or by value (dates), never echoed; event-time columns convert by unit suffix."""

import numpy as np
import pandas as pd
import pytest

from features.ebmt_registry import example_patients
from features.registry_file import date_valued_rows, is_identifier_like, load_registry_file
from features.task_schema import DAYS_PER_YEAR, SchemaValidationError
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort
from tasks.ebmt_hsct import SCHEMA as EBMT_HSCT_SCHEMA

IDENTIFIER_NAMES = ["first_name", "surname", "patient_name", "initials", "date_of_birth", "dob", "birth_year",
                    "nhs_number", "ssn", "national_id", "hospital_number", "hospital_id", "mrn",
                    "medical_record_number", "insurance_number", "passport_no", "address", "postcode", "phone",
                    "email", "transplant_date", "date_of_stop", "last_pcr_dt"]
INNOCUOUS_NAMES = ["favourite_colour", "tki_at_stop", "sokal_risk", "age_class", "disease_subclass", "comment"]


@pytest.mark.parametrize("name", IDENTIFIER_NAMES)
def test_identifier_like_names(name):
    assert is_identifier_like(name)


@pytest.mark.parametrize("name", INNOCUOUS_NAMES)
def test_innocuous_names(name):
    assert not is_identifier_like(name)


def test_date_values_are_recognised_but_classes_and_numbers_are_not():
    values = pd.Series(["2019-03-04", "04.03.2019", "4/3/19", "04-Mar-2019", "2019-03-04T10:22:00", None])
    assert date_valued_rows(values) == [1, 2, 3, 4, 5]
    not_dates = pd.Series(["1995-1998", "20-40", "<=20", "1-2", "12.5", "0.46", "MR4.5", "e14a2"])
    assert date_valued_rows(not_dates) == []
    assert date_valued_rows(pd.Series(pd.to_datetime(["2019-03-04", None]))) == [1]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cml_tfr_cohort(30, seed=4)


def test_a_date_valued_column_with_an_innocuous_name_is_refused_as_an_identifier(cohort, tmp_path):
    export = cohort.copy()
    export["visit"] = "2019-03-04"
    export["note"] = "ok"
    path = tmp_path / "visit.csv"
    export.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    by_column = {p.column: p for p in raised.value.problems}
    assert "direct identifier" in by_column["visit"].rule and "exact dates" in by_column["visit"].rule
    assert "not in the schema" in by_column["note"].rule
    assert "2019-03-04" not in str(raised.value)


def test_parquet_datetime_column_is_refused(cohort, tmp_path):
    export = cohort.copy()
    export["stop"] = pd.Timestamp("2020-01-15")
    path = tmp_path / "stop.parquet"
    export.to_parquet(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    [problem] = raised.value.problems
    assert problem.column == "stop" and "exact dates" in problem.rule


def test_dates_inside_a_schema_column_are_named(cohort, tmp_path):
    export = cohort.astype(object).copy()
    export.loc[3, "tki_years"] = "2012-05-01"  # a start date where the schema wants a duration
    path = tmp_path / "dated.csv"
    export.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    rules = [p.rule for p in raised.value.problems if p.column == "tki_years"]
    assert any("holds exact dates" in rule and "row 4" in rule for rule in rules)
    assert any("must be a number" in rule for rule in rules)


def test_event_time_in_days_or_years_is_converted_and_recorded(tmp_path):
    file = example_patients(40, 1, EBMT_HSCT_SCHEMA.predictors)
    rng = np.random.default_rng(1)
    days = rng.uniform(10, 2000, 40)
    for suffix, values in (("days", days), ("years", days / DAYS_PER_YEAR)):
        export = file.assign(**{f"rfs_{suffix}": values, "rfs_event": rng.integers(0, 2, 40)})
        path = tmp_path / f"rfs_{suffix}.csv"
        export.to_csv(path, index=False)
        loaded = load_registry_file(path, EBMT_HSCT_SCHEMA)
        np.testing.assert_allclose(loaded.frame["rfs_months"], days / (DAYS_PER_YEAR / 12), rtol=1e-9)
        assert len(loaded.unit_conversions) == 1 and loaded.unit_conversions[0].startswith(f"rfs_{suffix} -> ")
