"""cml_tfr served in process, with its stop-timing route: every route that answers with a probability gives the
patient the warnings /predict gives, and is counted.

/stop-timing used to answer a 0.7 % relapse risk with no warning for a patient /predict warns about four times, and
offered projections past the schema's own limits (age 101.9, TKI 41.9 years); /explain gave no warning about the
patient at all; only /predict and /predict-batch were counted in /metrics.
"""

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from risk_model.answers import StopTimingAnswer
from risk_model.stop_timing import ADVANCED_WITH_TIME
from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.served_models import build_champion

TASK = "cml_tfr"
KEY = "test-key-cml-tfr"
HEADERS = {"Authorization": f"Bearer {KEY}"}
PATIENT = {"age_at_stop_years": 58, "sex": "female", "tki_years": 7.4, "dmr_years": 4.3, "depth_at_stop": "MR4.5",
           "sokal_risk": "low", "transcript_type": "e14a2", "prior_interferon": False, "tki_at_stop": "imatinib",
           "prior_resistance": False, "more_than_one_tki_line": False}

# At the schema's edges (age <= 100, TKI and deep response <= 40 years) and far outside the training data.
EXTREME = {**PATIENT, "tki_years": 39.9, "dmr_years": 39.5, "age_at_stop_years": 99.9}
ABOUT_THE_PATIENT = {"outside_training_range", "rare_category", "far_from_training_data", "many_imputed_predictors"}


@pytest.fixture(scope="module")
def champions(tmp_path_factory) -> ChampionRegistry:
    """A cml_tfr champion built in seconds, as tests/served_models.py builds the sample tasks', on half the default
    cohort (background and replicates grow with the patients): the routes take the same paths, and the warnings these
    tests compare come from the patient against whatever range the model was trained on. No test asks for /model,
    where alone the held-out metrics are shown: they are not computed."""
    root = tmp_path_factory.mktemp("cml_tfr_served")
    build_champion(TASK, "cox_ph", root / "models", root / "bundles", n_patients=1000, held_out_metrics=False)
    return ChampionRegistry(root / "models", [TASK])


@pytest.fixture(scope="module")
def client(champions) -> TestClient:
    return TestClient(create_app(champions, {"local": KEY}))


def about_the_patient(warnings: list[dict]) -> list[tuple]:
    """The warnings about the patient's own values (horizon warnings belong to each route's own horizons)."""
    return [(w["code"], w["field"], w["message"]) for w in warnings if w["code"] in ABOUT_THE_PATIENT]


def predict(client: TestClient, patient: dict) -> dict:
    response = client.post("/v1/cml-tfr/predict", json=patient, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def test_stop_timing_warns_as_predict_does_and_offers_nothing_past_the_schema(client):
    expected = about_the_patient(predict(client, EXTREME)["warnings"])
    assert {code for code, _, _ in expected} >= {"outside_training_range", "far_from_training_data"}
    response = client.post("/v1/cml-tfr/stop-timing", json=EXTREME, headers=HEADERS)
    assert response.status_code == 200, response.text
    answer = StopTimingAnswer.model_validate(response.json()).model_dump()
    assert about_the_patient(answer["warnings"]) == expected
    now, *later = answer["options"]
    assert now["stop_after_months"] == 0 and now["offered"] and about_the_patient(now["warnings"]) == expected
    for option in later:  # each of these would take age past 100 and TKI past 40 years
        assert not option["offered"] and option["relapse_risk"] is None
        refused = {w["field"] for w in option["warnings"] if w["code"] == "projection_outside_schema_range"}
        assert {"age_at_stop_years", "tki_years"} <= refused
        assert all("not offered" in w["message"] for w in option["warnings"])
    assert answer["comparison"]["better_options"] == [] and not any(o["called_better"] for o in answer["options"])


def test_each_option_carries_its_projected_patients_own_warnings_and_risk(client, champions):
    summary = champions.get(TASK).bundle.training_summary
    # Just inside the training range of TKI duration today, so waiting 6 months or more leaves it.
    tki = summary["tki_years"]["max"] - 0.2
    patient = {**PATIENT, "tki_years": round(tki, 2), "dmr_years": round(tki - 3, 2)}
    answer = client.post("/v1/cml-tfr/stop-timing", json=patient, headers=HEADERS).json()
    assert all(option["offered"] for option in answer["options"])
    by_delay = {option["stop_after_months"]: option for option in answer["options"]}
    assert "tki_years" not in {w["field"] for w in by_delay[0]["warnings"]}
    for delay in (6, 12, 24):
        assert ("outside_training_range", "tki_years") in {(w["code"], w["field"]) for w in by_delay[delay]["warnings"]}
    for option in answer["options"]:
        projected = {**patient, **option["projected"]}
        assert projected["tki_years"] == pytest.approx(patient["tki_years"] + option["stop_after_months"] / 12)
        served = predict(client, projected)
        assert about_the_patient(option["warnings"]) == about_the_patient(served["warnings"])
        relapse = {h["months"]: h["probability"] for h in served["endpoints"]["relapse"]["horizons"]}
        for risk in option["relapse_risk"]:
            assert risk["probability"] == pytest.approx(relapse[risk["months_after_stop"]], abs=1e-9)


def test_explain_and_batch_warn_as_predict_does(client):
    expected = about_the_patient(predict(client, EXTREME)["warnings"])
    explained = client.post("/v1/cml-tfr/explain", json=EXTREME, headers=HEADERS).json()
    assert about_the_patient(explained["warnings"]) == expected
    batch = client.post("/v1/cml-tfr/predict-batch", json={"patients": [PATIENT, EXTREME]}, headers=HEADERS).json()
    assert about_the_patient(batch["results"][1]["answer"]["warnings"]) == expected
    assert about_the_patient(batch["results"][0]["answer"]["warnings"]) == \
        about_the_patient(predict(client, PATIENT)["warnings"])


def test_the_waterfall_png_names_the_warning_codes(client):
    response = client.post("/v1/cml-tfr/explain", json=EXTREME, headers={**HEADERS, "Accept": "image/png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    codes = set(response.headers["x-warning-codes"].split(",")) - {"horizon_beyond_follow_up"}
    assert codes == {code for code, _, _ in about_the_patient(predict(client, EXTREME)["warnings"])}


def predictions_counted(client: TestClient) -> dict[str, float]:
    """relapse_risk_predictions_total by route, as /metrics publishes it."""
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "relapse_risk_predictions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    route = sample.labels["route"]
                    counted[route] = counted.get(route, 0.0) + sample.value
    return counted


def test_every_route_that_predicts_is_counted_once_per_patient(client):
    before = predictions_counted(client)
    client.post("/v1/cml-tfr/predict", json=PATIENT, headers=HEADERS)
    client.post("/v1/cml-tfr/predict-batch", json={"patients": [PATIENT, EXTREME, {**PATIENT, "tki_years": 99}]},
                headers=HEADERS)  # two answered, one refused
    client.post("/v1/cml-tfr/explain", json=PATIENT, headers=HEADERS)
    client.post("/v1/cml-tfr/explain", json=PATIENT, headers={**HEADERS, "Accept": "image/png"})
    client.post("/v1/cml-tfr/stop-timing", json=PATIENT, headers=HEADERS)  # one patient, four options
    client.post("/v1/cml-tfr/stop-timing", json={**PATIENT, "tki_years": 99}, headers=HEADERS)  # refused: 422
    after = predictions_counted(client)
    # Other modules' apps count into the same process-wide metrics: only the routes that moved are compared.
    added = {route: after[route] - before.get(route, 0.0) for route in after if after[route] != before.get(route, 0.0)}
    assert added == {"/v1/cml-tfr/predict": 1, "/v1/cml-tfr/predict-batch": 2, "/v1/cml-tfr/explain": 2,
                     "/v1/cml-tfr/stop-timing": 1}
    help_text = next(line for line in client.get("/metrics").text.splitlines()
                     if line.startswith("# HELP relapse_risk_predictions_total"))
    assert all(route in help_text for route in ("predict", "predict-batch", "explain", "stop-timing"))


def test_stop_timing_answer_is_documented(client):
    document = client.get("/openapi.json").json()
    answer = document["paths"]["/v1/cml-tfr/stop-timing"]["post"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/StopTimingAnswer")
    schemas = document["components"]["schemas"]
    assert {"warnings", "options", "comparison", "statement"} <= set(schemas["StopTimingAnswer"]["properties"])
    assert {"offered", "warnings", "relapse_risk", "difference_from_stopping_now", "called_better"} <= \
        set(schemas["StopOption"]["properties"])
    assert "margin_percentage_points" in schemas["StopComparison"]["properties"]
    assert "projection_outside_schema_range" in schemas["Warning_"]["properties"]["code"]["description"]
    assert set(ADVANCED_WITH_TIME) == set(schemas["ProjectedValues"]["properties"])


def test_stop_timing_route_answers_with_the_projection_statement(client):
    body = client.post("/v1/cml-tfr/stop-timing", json={**PATIENT, "tki_years": 4.0, "dmr_years": 2.0},
                       headers=HEADERS)
    assert body.status_code == 200, body.text
    answer = body.json()
    assert [o["stop_after_months"] for o in answer["options"]] == [0, 6, 12, 24]
    for caveat in ("not a causal estimate", "respond better (selection)", "losing the deep response while waiting "
                   "is not modelled"):
        assert caveat in answer["statement"]
    assert answer["comparison"]["margin_percentage_points"] == 5.0
    assert f"{answer['comparison']['margin_percentage_points']:g} percentage points" in answer["comparison"]["rule"]
    for option in answer["options"]:
        for estimate in option["relapse_risk"]:
            assert 0 <= estimate["lower"] <= estimate["probability"] <= estimate["upper"] <= 1
    assert client.post("/v1/cml-tfr/stop-timing", json={**PATIENT, "tki_years": 99}, headers=HEADERS).status_code == 422
