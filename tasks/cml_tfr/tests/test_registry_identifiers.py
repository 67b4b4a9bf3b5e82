"""Identifiers in cml_tfr's file are refused by value (dates) as well as by name, and never echoed."""

import pandas as pd
import pytest

from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort


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
