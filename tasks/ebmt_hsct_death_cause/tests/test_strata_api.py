"""A stratified champion over HTTP: a patient reads its stratum's baseline, and a stratum value no training
patient had is refused with a 422 in the one error shape (the single, batch and explain routes alike), since
the model has no baseline for it. The champion is a Cox model of the ebmt2 extract fitted without its CML
patients (seconds), completed and exported as training does."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.registry_file import load_registry_file
from features.tasks import TASKS
from serving.api import create_app
from serving.champions import ChampionRegistry
from training.cli import public_extract_file
from training.pipeline import complete_bundle, fit_family
from training.promotion import export_champion

TASK = "ebmt_hsct_death_cause"
KEY = "test-key-strata-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
PATIENT = {
    "disease_subclass": "AML",
    "age_class": "20-40",
    "donor_recipient_gender_mismatch": False,
    "t_cell_depletion": False,
    "transplant_year_class": "1995-1998",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    root = tmp_path_factory.mktemp("strata_champion")
    task = TASKS[TASK]
    frame = load_registry_file(public_extract_file(TASK, root / "data"), task.schema).frame
    development = frame[frame["disease_subclass"] != "CML"].sample(3000, random_state=0).reset_index(drop=True)
    bundle = complete_bundle(fit_family("cox_ph", task, development, {}, seed=0), development, task.schema, 0)
    bundle.lineage = {"version": "1", "run_id": "no-mlflow-run-strata"}
    export_champion(bundle.save(root / "bundle"), root / "models", TASK, "1", "no-mlflow-run-strata", "digest")
    return TestClient(create_app(ChampionRegistry(root / "models", [TASK]), {"local": KEY}))


def refused_fields(response) -> list[dict]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"code", "message", "fields"} and body["code"] == "invalid_request"
    return body["fields"]


def test_a_stratum_seen_in_training_is_answered_with_its_own_baseline(client):
    answers = {}
    for disease in ("AML", "ALL"):
        response = client.post(
            "/v1/ebmt-hsct-death-cause/predict", json={**PATIENT, "disease_subclass": disease}, headers=HEADERS
        )
        assert response.status_code == 200, response.text
        answers[disease] = [h["probability"] for h in response.json()["endpoints"]["death_from_relapse"]["horizons"]]
        contributions = response.json()["contributions"]
        total = sum(item["percentage_points"] for item in contributions["items"]) / 100
        risk = dict(zip([12, 24, 36, 60], answers[disease], strict=True))[contributions["horizon_months"]]
        assert total == pytest.approx(risk - contributions["base_value"], abs=1e-6)
    assert not np.allclose(answers["AML"], answers["ALL"])


def test_a_stratum_no_training_patient_had_is_refused_on_every_route(client):
    unseen = {**PATIENT, "disease_subclass": "CML"}
    for route in ("predict", "explain"):
        [field] = refused_fields(client.post(f"/v1/ebmt-hsct-death-cause/{route}", json=unseen, headers=HEADERS))
        assert field["location"] == "body.disease_subclass" and "no training patient" in field["reason"]
        assert "CML" not in field["reason"]  # a 422 never echoes a value
    response = client.post(
        "/v1/ebmt-hsct-death-cause/predict-batch", json={"patients": [PATIENT, unseen]}, headers=HEADERS
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["succeeded"] == 1 and body["failed"] == 1
    [error] = [item["error"] for item in body["results"] if item["error"]]
    assert error["fields"][0]["location"] == "body.patients.1.disease_subclass"
