"""POST /v1/<task>/explain: every predictor's contribution, adding up to the served prediction; a real PNG waterfall."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.sample_tasks import COMPETING, COMPETING_PATIENT, COMPETING_ROUTE, SINGLE, SINGLE_ROUTE, slug
from tests.serving.test_api import HEADERS, KEY, PATIENT


@pytest.fixture(scope="module")
def client(served_models) -> TestClient:
    return TestClient(create_app(ChampionRegistry(served_models.models_dir, [SINGLE]), {"local": KEY}))


@pytest.fixture(scope="module")
def competing_client(served_models) -> TestClient:
    return TestClient(create_app(ChampionRegistry(served_models.models_dir, [COMPETING]), {"local": KEY}))


def served_probability(client: TestClient, task_slug: str, patient: dict, endpoint: str, months: float) -> float:
    body = client.post(f"/v1/{task_slug}/predict", json=patient, headers=HEADERS).json()
    return next(h["probability"] for h in body["endpoints"][endpoint]["horizons"] if h["months"] == months)


def test_contributions_add_up_to_the_served_prediction(client):
    body = client.post(f"{SINGLE_ROUTE}/explain", json=PATIENT, headers=HEADERS).json()
    assert body["endpoint"] == "relapse" and body["horizon_months"] == 12 and body["kind"] == "incidence"
    assert body["probability"] == pytest.approx(served_probability(client, slug(SINGLE), PATIENT, "relapse", 12),
                                                abs=1e-12)
    total = sum(item["percentage_points"] for item in body["items"]) / 100
    assert total == pytest.approx(body["probability"] - body["base_value"], abs=1e-6)
    names = [item["feature"] for item in body["items"]]
    assert set(names) == {*PATIENT, "marker_level"}
    sizes = [abs(item["percentage_points"]) for item in body["items"]]
    assert sizes == sorted(sizes, reverse=True)
    by_name = {item["feature"]: item for item in body["items"]}
    assert by_name["treatment_years"]["value"] == PATIENT["treatment_years"]
    assert by_name["treatment_years"]["units"] == "years"
    for item in body["items"]:
        expected = "raises" if item["percentage_points"] >= 0.005 else "lowers" if item["percentage_points"] <= -0.005 \
            else "none"
        assert item["direction"] == expected
    assert body["background"]["rows"] >= 1 and body["background"]["patients"] >= 10 * body["background"]["rows"]
    assert "percentage points" in body["units"] and "relapse by 12 months" in body["explained"]


def test_another_endpoint_and_horizon_of_a_competing_risk_task(competing_client):
    patient = {**COMPETING_PATIENT, "explain": {"endpoint": "event_free", "horizon_months": 36}}
    body = competing_client.post(f"{COMPETING_ROUTE}/explain", json=patient, headers=HEADERS).json()
    assert (body["endpoint"], body["horizon_months"], body["kind"]) == ("event_free", 36, "survival")
    served = served_probability(competing_client, slug(COMPETING), COMPETING_PATIENT, "event_free", 36)
    assert body["probability"] == pytest.approx(served, abs=1e-12)
    total = sum(item["percentage_points"] for item in body["items"]) / 100
    assert total == pytest.approx(body["probability"] - body["base_value"], abs=1e-6)


def test_png_waterfall_is_a_real_chart(client):
    response = client.post(f"{SINGLE_ROUTE}/explain", json=PATIENT, headers={**HEADERS, "Accept": "image/png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(response.content))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 500
    # A chart, not a blank canvas: both bar colours (raises red, lowers blue) or at least many distinct colours.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1])[:, :3].round(2), axis=0)) > 20


def test_json_is_the_default_and_errors_keep_their_shape(client):
    response = client.post(f"{SINGLE_ROUTE}/explain", json=PATIENT, headers={**HEADERS, "Accept": "*/*"})
    assert response.headers["content-type"].startswith("application/json")
    bad = client.post(f"{SINGLE_ROUTE}/explain", json={**PATIENT, "treatment_years": 400}, headers=HEADERS)
    assert bad.status_code == 422 and bad.json()["fields"][0]["location"] == "body.treatment_years"
    assert client.post(f"{SINGLE_ROUTE}/explain", json=PATIENT).status_code == 401
    unknown = client.post(f"{SINGLE_ROUTE}/explain?x=1", json=PATIENT, headers=HEADERS)
    assert unknown.status_code == 422 and unknown.json()["fields"][0]["location"] == "query"


def test_predict_without_contributions(client):
    body = client.post(f"{SINGLE_ROUTE}/predict?contributions=false", json=PATIENT, headers=HEADERS).json()
    assert body["contributions"] is None
    assert body["endpoints"]["relapse"]["horizons"][0]["lower"] is not None


@pytest.mark.parametrize("horizon", [True, "24", None, 0.5])
def test_a_horizon_that_is_not_a_number_of_months_is_refused(client, horizon):
    """As the predictors' numbers: strict, so a boolean is not read as 1 month nor a string as a number (the
    fuzzing test found `true` answered with 200)."""
    for route in ("predict", "explain"):
        response = client.post(f"{SINGLE_ROUTE}/{route}", json={**PATIENT, "explain": {"horizon_months": horizon}},
                               headers=HEADERS)
        assert response.status_code == 422, (route, horizon, response.text[:200])
        assert response.json()["fields"][0]["location"] == "body.explain.horizon_months"
