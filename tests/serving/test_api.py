"""The HTTP contract in process: answers that add up, one error shape for every 4xx, auth on /v1."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.tasks import TASKS
from risk_model.answers import ExplanationAnswer, PredictionAnswer
from serving.answers import BatchResult
from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.sample_tasks import SINGLE, SINGLE_PATIENT, SINGLE_ROUTE, slug

KEY = "test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
PATIENT = SINGLE_PATIENT
ROUTE = SINGLE_ROUTE


@pytest.fixture(scope="module")
def client(served_models, sample_tasks) -> TestClient:
    champions = ChampionRegistry(served_models.models_dir, [SINGLE])
    return TestClient(create_app(champions, {"local": KEY}))


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "fields"}
    assert all(set(f) == {"location", "reason"} for f in body["fields"])
    return body


def test_prediction_answer_shape_and_invariants(client, served_models):
    body = client.post(f"{ROUTE}/predict", json=PATIENT, headers=HEADERS).json()
    assert body["model"]["version"] == served_models.versions[SINGLE]
    relapse, relapse_free = body["endpoints"]["relapse"], body["endpoints"]["relapse_free"]
    assert relapse["kind"] == "incidence" and relapse_free["kind"] == "survival"
    curve = np.array(relapse_free["curve"]["probability"])
    assert curve[0] == 1.0 and np.all(np.diff(curve) <= 0) and np.all((curve >= 0) & (curve <= 1))
    assert len(curve) == 61
    for a, b in zip(relapse["horizons"], relapse_free["horizons"], strict=True):
        if a["probability"] is not None:
            assert a["probability"] + b["probability"] == pytest.approx(1.0)
    contributions = body["contributions"]
    assert contributions["horizon_months"] == 12 and contributions["endpoint"] == "relapse"
    risk_12 = next(h["probability"] for h in relapse["horizons"] if h["months"] == 12)
    total = sum(item["percentage_points"] for item in contributions["items"]) / 100
    assert total == pytest.approx(risk_12 - contributions["base_value"], abs=1e-6)
    assert {i["feature"] for i in contributions["items"]} == {*PATIENT, "marker_level"}
    assert body["risk_group"]["label"] in ("low", "intermediate", "high")
    assert body["interval_method"].startswith("bootstrap ensemble of 5 refits")  # the served bundle's own count
    for endpoint in (relapse, relapse_free):
        for h in endpoint["horizons"]:
            if h["probability"] is not None:
                assert 0 <= h["lower"] <= h["probability"] <= h["upper"] <= 1


def test_explaining_another_endpoint_and_horizon(client):
    request = {**PATIENT, "explain": {"endpoint": "relapse_free", "horizon_months": 24}}
    body = client.post(f"{ROUTE}/predict", json=request, headers=HEADERS).json()
    survival_24 = next(h["probability"] for h in body["endpoints"]["relapse_free"]["horizons"] if h["months"] == 24)
    total = sum(item["percentage_points"] for item in body["contributions"]["items"]) / 100
    assert total == pytest.approx(survival_24 - body["contributions"]["base_value"], abs=1e-6)


def test_known_risk_factor_raises_risk(client):
    def risk(patient):
        body = client.post(f"{ROUTE}/predict", json=patient, headers=HEADERS).json()
        return body["endpoints"]["relapse"]["horizons"][1]["probability"]

    # the sample generator's hazard rises with the risk group and falls with treatment and response duration
    assert risk({**PATIENT, "risk_group": "high"}) > risk(PATIENT)
    assert risk({**PATIENT, "response_years": 1.5, "treatment_years": 3.5}) > risk(PATIENT)


@pytest.mark.parametrize(("change", "field"), [
    ({"age_years": "sixty"}, "body.age_years"),  # mistyped
    ({"treatment_years": 99}, "body.treatment_years"),  # out of range
    ({"risk_group": "very high"}, "body.risk_group"),  # unknown category
    ({"hospital_number": "123"}, "body.hospital_number"),  # unknown field
    ({"response_years": 9.0, "treatment_years": 5.0}, "body.response_years"),  # cross-field rule
    ({"prior_therapy": "yes"}, "body.prior_therapy"),  # not a JSON boolean
])
def test_bad_field_gets_422_naming_it(client, change, field):
    body = assert_error_shape(client.post(f"{ROUTE}/predict", json={**PATIENT, **change}, headers=HEADERS), 422)
    assert field in {f["location"] for f in body["fields"]}


def test_missing_field_and_broken_json(client):
    patient = {k: v for k, v in PATIENT.items() if k != "sex"}
    body = assert_error_shape(client.post(f"{ROUTE}/predict", json=patient, headers=HEADERS), 422)
    assert body["fields"][0]["location"] == "body.sex"
    broken = client.post(f"{ROUTE}/predict", content=b'{"age_years": 5',
                         headers={**HEADERS, "Content-Type": "application/json"})
    assert_error_shape(broken, 422)
    assert_error_shape(client.post(f"{ROUTE}/predict", json=[1, 2], headers=HEADERS), 422)


def test_rejected_values_are_not_echoed(client):
    body = client.post(f"{ROUTE}/predict", json={**PATIENT, "risk_group": "Jane-Doe-1970"}, headers=HEADERS)
    assert "Jane-Doe-1970" not in body.text


def test_auth_and_size_limits(client):
    assert_error_shape(client.post(f"{ROUTE}/predict", json=PATIENT), 401)
    assert_error_shape(client.post(f"{ROUTE}/predict", json=PATIENT, headers={"Authorization": "Bearer no"}), 401)
    assert_error_shape(client.get(f"{ROUTE}/model"), 401)
    huge = {**PATIENT, "centre": "x" * 70_000}
    assert_error_shape(client.post(f"{ROUTE}/predict", json=huge, headers=HEADERS), 413)
    assert client.get("/livez").status_code == 200


def test_model_route_reports_identity_and_metrics(client, served_models):
    body = client.get(f"{ROUTE}/model", headers=HEADERS).json()
    assert body["model"]["version"] == served_models.versions[SINGLE]
    assert body["horizons_months"] == [6, 12, 24, 36, 60] and "uno_c" in body["metrics"]
    assert body["data_digest"] and body["schema"]["task"] == SINGLE


def test_model_route_gives_the_intended_use_and_the_words_of_the_task_spec(served_models, sample_tasks):
    """The page reads these fields (no markdown parsing); they are the task spec's own words, carried by the bundle."""
    client = TestClient(create_app(ChampionRegistry(served_models.models_dir, list(sample_tasks)), {"local": KEY}))
    for task in sample_tasks:
        spec = TASKS[task].spec
        body = client.get(f"/v1/{task.replace('_', '-')}/model", headers=HEADERS).json()
        assert body["use"] == {"intended_use": spec.use.intended_use, "users_and_limits": spec.use.users_and_limits}
        labels = body["labels"]
        assert labels["title"] == spec.title
        assert labels["endpoints"] == {e.name: {"kind": e.kind, "title": e.plot_title, "phrase": e.answer_phrase}
                                       for e in spec.endpoints}
        fields = [*spec.predictors, *spec.grouping]
        assert list(labels["predictors"]) == [p.name for p in fields]
        for p in fields:
            shown = labels["predictors"][p.name]
            assert shown["unit"] == p.unit and shown["description"] == p.description
            assert shown["label"] and p.description.startswith(shown["label"])


def test_every_answer_is_the_documented_model(client):
    """The prediction path returns the typed answers the OpenAPI document shows, route by route."""
    document = client.get("/openapi.json").json()
    routes = {"predict": PredictionAnswer, "explain": ExplanationAnswer, "predict-batch": BatchResult}
    for route, model in routes.items():
        body = {"patients": [PATIENT]} if route == "predict-batch" else PATIENT
        answer = client.post(f"{ROUTE}/{route}", json=body, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        responses = document["paths"][f"{ROUTE}/{route}"]["post"]["responses"]["200"]
        assert responses["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model.__name__}")
        model.model_validate_json(answer.text)  # raises when the answer strays from it


def test_a_champion_without_a_model_card_gets_404_in_the_error_shape(client):
    # The quickly built champion has no card (only a training run writes one): the route says so, never a 500.
    body = assert_error_shape(client.get(f"{ROUTE}/model-card", headers=HEADERS), 404)
    assert body["code"] == "no_model_card"
    assert_error_shape(client.get(f"{ROUTE}/model-card?format=pdf", headers=HEADERS), 422)


@pytest.mark.slow
def test_model_card_route(trained_store):
    # The card is what the training run wrote into the bundle, so this one serves the trained champion.
    assert trained_store.summary.promoted, trained_store.summary.reason
    task = trained_store.settings.task  # whichever task the session's store trained
    client = TestClient(create_app(ChampionRegistry(trained_store.models_dir, [task]), {"local": KEY}))
    response = client.get(f"/v1/{slug(task)}/model-card", headers=HEADERS)
    assert response.status_code == 200 and "text/markdown" in response.headers["content-type"]
    assert "Intended use" in response.text or "intended use" in response.text.lower()
    html = client.get(f"/v1/{slug(task)}/model-card?format=html", headers=HEADERS)
    assert html.status_code == 200 and "<h1" in html.text.lower()
