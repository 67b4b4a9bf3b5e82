"""all_hsct served in process: five coherent endpoints, additive contributions, and the clinical directions
of clinical-evidence B.2 (MRD-positive relapses more; reduced intensity trades NRM for relapse)."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.served_models import VERSION, build_champion

KEY = "test-key-all-hsct"
HEADERS = {"Authorization": f"Bearer {KEY}"}
# Adult B-ALL in CR1, MRD negative, matched sibling donor, myeloablative TBI conditioning.
PATIENT = {"age_at_hct_years": 38, "sex": "male", "ph_chromosome": "negative", "tki_before_hct": False,
           "lineage": "B", "disease_stage": "CR1", "mrd_pre_hct": "negative", "donor_type": "MSD",
           "conditioning_intensity": "MAC", "tbi": True, "hct_ci": "0", "karnofsky_lt_90": False,
           "cmv_recipient_positive": True, "female_donor_to_male_recipient": False, "diagnosis_to_hct_years": 0.5,
           "transplant_year": 2018, "mrd_eoi_log10": -3.2, "mrd_eoi_detectable": True, "mrd_eoc_detectable": False,
           "mrd_assay_sensitivity_log10": -5}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    """An all_hsct champion (the boosted family: tree SHAP, Breslow baselines on its margins) built in seconds, as
    tests/served_models.py builds the sample tasks'. No test here reads an interval, so two bootstrap refits (the fewest
    an interval needs) instead of five: each refits all six causes. The cohort keeps its default size: smaller ones
    left too few patients followed to 60 months for the 5-year overall survival. No test asks for /model, where
    alone the held-out metrics are shown: they are not computed."""
    root = tmp_path_factory.mktemp("all_hsct_served")
    build_champion("all_hsct", "xgboost_cox", root / "models", root / "bundles", n_replicates=2,
                   held_out_metrics=False)
    champions = ChampionRegistry(root / "models", ["all_hsct"])
    return TestClient(create_app(champions, {"local": KEY}))


def predict(client, patient, **extra):
    response = client.post("/v1/all-hsct/predict", json={**patient, **extra}, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def at(body, endpoint, months):
    return next(h["probability"] for h in body["endpoints"][endpoint]["horizons"] if h["months"] == months)


def test_five_endpoints_are_coherent(client):
    body = predict(client, PATIENT)
    assert body["model"]["version"] == VERSION and body["task"] == "all_hsct"
    assert set(body["endpoints"]) == {"relapse", "nrm", "os", "lfs", "grfs"}
    assert [h["months"] for h in body["endpoints"]["os"]["horizons"]] == [12, 24, 36, 60]
    curves = {name: np.array(e["curve"]["probability"]) for name, e in body["endpoints"].items()}
    np.testing.assert_allclose(curves["lfs"] + curves["relapse"] + curves["nrm"], 1.0, atol=1e-9)
    assert np.all(curves["os"] >= curves["lfs"] - 1e-12) and np.all(curves["lfs"] >= curves["grfs"] - 1e-12)
    for name in ("relapse", "nrm"):
        assert np.all(np.diff(curves[name]) >= -1e-12)
    for name in ("os", "lfs", "grfs"):
        assert np.all(np.diff(curves[name]) <= 1e-12)


def test_default_contributions_explain_relapse_at_two_years(client):
    body = predict(client, PATIENT)
    contributions = body["contributions"]
    assert contributions["endpoint"] == "relapse" and contributions["horizon_months"] == 24
    total = sum(i["percentage_points"] for i in contributions["items"]) / 100
    assert total == pytest.approx(at(body, "relapse", 24) - contributions["base_value"], abs=1e-6)
    derived = next(i for i in contributions["items"] if i["feature"] == "mrd_log_reduction")
    assert derived["value"] == pytest.approx(-3.2 - (-5))  # computed by the service from the kinetics


def test_explaining_overall_survival_at_five_years(client):
    body = predict(client, PATIENT, explain={"endpoint": "os", "horizon_months": 60})
    total = sum(i["percentage_points"] for i in body["contributions"]["items"]) / 100
    assert total == pytest.approx(at(body, "os", 60) - body["contributions"]["base_value"], abs=1e-6)


def test_mrd_positive_relapses_more_than_mrd_negative(client):
    negative = predict(client, PATIENT)
    positive = predict(client, {**PATIENT, "mrd_pre_hct": "positive"})
    assert at(positive, "relapse", 36) > at(negative, "relapse", 36)


def test_reduced_intensity_trades_nrm_for_relapse(client):
    mac = predict(client, PATIENT)
    ric = predict(client, {**PATIENT, "conditioning_intensity": "RIC", "tbi": False})
    assert at(ric, "nrm", 36) < at(mac, "nrm", 36)
    assert at(ric, "relapse", 36) > at(mac, "relapse", 36)


def test_tbi_is_a_stratum_that_a_request_sends_as_true_or_false(client):
    """Conditioning x TBI are the spec's strata: MAC without TBI (chemotherapy only) reads its own baselines, with
    more relapse than MAC with TBI (B.2: HR 1.8), and its contributions still add up."""
    with_tbi = predict(client, PATIENT)
    chemotherapy_only = predict(client, {**PATIENT, "tbi": False})
    assert at(chemotherapy_only, "relapse", 36) > at(with_tbi, "relapse", 36)
    contributions = chemotherapy_only["contributions"]
    total = sum(i["percentage_points"] for i in contributions["items"]) / 100
    assert total == pytest.approx(at(chemotherapy_only, "relapse", 24) - contributions["base_value"], abs=1e-6)
    missing = {key: value for key, value in PATIENT.items() if key != "tbi"}
    response = client.post("/v1/all-hsct/predict", json=missing, headers=HEADERS)
    assert response.status_code == 422 and response.json()["fields"][0]["location"] == "body.tbi"


@pytest.mark.parametrize(("change", "field"), [
    ({"donor_type": "cousin"}, "body.donor_type"),
    ({"age_at_hct_years": 7}, "body.age_at_hct_years"),
    ({"tki_before_hct": True}, "body.tki_before_hct"),  # a TKI applies to Ph-positive ALL only
    ({"mrd_log_reduction": 2.0}, "body.mrd_log_reduction"),  # derived by the service, not sent
    ({"transplant_year": 2018.5}, "body.transplant_year"),  # a calendar year is a whole number
    ({"age_at_hct_years": 18, "diagnosis_to_hct_years": 19.5}, "body.diagnosis_to_hct_years"),  # before birth
])
def test_bad_fields_get_422(client, change, field):
    response = client.post("/v1/all-hsct/predict", json={**PATIENT, **change}, headers=HEADERS)
    assert response.status_code == 422
    assert field in {f["location"] for f in response.json()["fields"]}
