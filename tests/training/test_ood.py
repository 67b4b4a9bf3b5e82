"""The out-of-distribution reference: a stated distance with a training-quantile threshold, and the imputed-predictor
count, on a small synthetic cohort (no model needed)."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from risk_model.ood import combination_warnings, distances, imputed_predictors, out_of_distribution_reference

PREDICTORS = [
    {"name": "age", "kind": "number", "categories": [], "required": True},
    {"name": "treatment_years", "kind": "number", "categories": [], "required": True},
    {"name": "response_years", "kind": "number", "categories": [], "required": True},
    {"name": "risk", "kind": "category", "categories": ["low", "intermediate", "high"], "required": True},
    {"name": "resistant", "kind": "boolean", "categories": [], "required": True},
    {"name": "marker_a", "kind": "number", "categories": [], "required": False},
    {"name": "marker_b", "kind": "boolean", "categories": [], "required": False},
    {"name": "marker_c", "kind": "category", "categories": ["x", "y"], "required": False},
    {"name": "rarely_known", "kind": "number", "categories": [], "required": False},
]
BUNDLE = SimpleNamespace(schema={"predictors": PREDICTORS})


def cohort(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treatment = rng.uniform(3, 15, n)
    frame = pd.DataFrame({
        "age": rng.normal(55, 12, n).clip(18, 90),
        "treatment_years": treatment,
        "response_years": treatment * rng.uniform(0.4, 0.9, n),  # strongly tied to treatment years
        "risk": rng.choice(["low", "intermediate", "high"], n, p=[0.5, 0.35, 0.15]).astype(object),
        "resistant": (rng.random(n) < 0.1).astype(float),
        "marker_a": rng.normal(0, 1, n),
        "marker_b": (rng.random(n) < 0.5).astype(float),
        "marker_c": rng.choice(["x", "y"], n).astype(object),
        "rarely_known": rng.normal(0, 1, n),
    })
    frame.loc[rng.random(n) < 0.2, ["marker_a", "marker_b", "marker_c"]] = np.nan  # missing together
    frame.loc[rng.random(n) < 0.9, "rarely_known"] = np.nan
    return frame


@pytest.fixture(scope="module")
def reference() -> dict:
    return out_of_distribution_reference(cohort(), BUNDLE)


def test_threshold_is_the_stated_training_quantile(reference):
    training = distances(reference, cohort())
    assert reference["distance_quantile"] == 0.99
    assert np.mean(training > reference["distance_threshold"]) == pytest.approx(0.01, abs=0.002)
    fresh = distances(reference, cohort(seed=1))  # new patients from the same population
    assert np.mean(fresh > reference["distance_threshold"]) < 0.03
    assert np.isfinite(training).all()
    json.dumps(reference, allow_nan=False)  # plain JSON, as the bundle stores it


def test_a_combination_far_from_training_warns_though_each_value_is_in_range(reference):
    typical = {"age": 55.0, "treatment_years": 9.0, "response_years": 6.0, "risk": "low", "resistant": False,
               "marker_a": 0.0, "marker_b": True, "marker_c": "x", "rarely_known": None}
    odd = {**typical, "treatment_years": 3.2, "response_years": 12.5}  # response longer than treatment
    frame = pd.DataFrame([typical, odd])
    near, far = distances(reference, frame)
    assert near < reference["distance_threshold"] < far
    warnings = combination_warnings(reference, frame, [typical, odd])
    assert warnings[0] == [] and [w.code for w in warnings[1]] == ["far_from_training_data"]
    assert "99 % of training patients" in warnings[1][0].message


def test_many_imputed_predictors(reference):
    # The three markers are usually known (80 %) but missing together in a fifth of the patients, so missing all
    # three is not rare in training: the threshold moves above the default of 3 and they alone do not warn.
    assert reference["observed_share"]["rarely_known"] < 0.5 <= reference["observed_share"]["marker_a"]
    patient = {"age": 55.0, "treatment_years": 9.0, "response_years": 6.0, "risk": "low", "resistant": False,
               "marker_a": None, "marker_b": None, "marker_c": None, "rarely_known": None}
    assert imputed_predictors(reference, patient) == ["marker_a", "marker_b", "marker_c"]
    assert reference["min_imputed_predictors"] == 4
    assert combination_warnings(reference, pd.DataFrame([patient]), [patient]) == [[]]
    lowered = {**reference, "min_imputed_predictors": 3}
    [[warning]] = combination_warnings(lowered, pd.DataFrame([patient]), [patient])
    assert warning.code == "many_imputed_predictors" and "marker_a, marker_b, marker_c" in warning.message


def test_rarely_missing_markers_keep_the_default_threshold():
    frame = cohort()
    rng = np.random.default_rng(4)
    frame["marker_a"] = rng.normal(0, 1, len(frame))
    frame["marker_b"] = (rng.random(len(frame)) < 0.5).astype(float)
    frame["marker_c"] = rng.choice(["x", "y"], len(frame)).astype(object)
    frame[["marker_a", "marker_b", "marker_c"]] = frame[["marker_a", "marker_b", "marker_c"]].where(
        rng.random((len(frame), 3)) > 0.02)  # each missing on its own, rarely
    assert out_of_distribution_reference(frame, BUNDLE)["min_imputed_predictors"] == 3


def test_no_reference_no_warning():
    patient = {"age": 200.0}
    assert combination_warnings({}, pd.DataFrame([patient]), [patient]) == [[]]


def test_serving_columns_from_the_patient_encoding_equal_the_frame_encoding(reference):
    """Serving computes the reference's columns as one product with the shared patient encoding; it must give the
    distances the frame path gives, missing values (filled) included."""
    from risk_model.ood import _distance, encode, encoded_columns
    from risk_model.preprocessing import PatientEncoding

    patients = cohort(200, seed=5)
    encoding = PatientEncoding.of(PREDICTORS)
    records = patients.astype(object).where(patients.notna(), None).to_dict("records")
    served = encoding.records(records) @ encoded_columns(reference, encoding)
    np.testing.assert_allclose(served, encode(patients, reference["columns"]), atol=1e-12)
    np.testing.assert_allclose(_distance(reference, served), distances(reference, patients), atol=1e-9)
