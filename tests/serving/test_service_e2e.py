"""The real BentoML server process on a free loopback port (shared, tests/serving/conftest.py), over HTTP: good and
bad requests."""

import json
import urllib.error
import urllib.request

import pytest

from serving import launch
from tests.sample_tasks import COMPETING_PATIENT, COMPETING_ROUTE, SINGLE, SINGLE_PATIENT, SINGLE_ROUTE
from tests.serving.conftest import LIVE_KEY

pytestmark = pytest.mark.slow  # a real server process

KEY = LIVE_KEY
PATIENT = {**SINGLE_PATIENT, "age_years": 61, "sex": "male", "risk_group": "intermediate"}


def call(url: str, body: dict | None = None, key: str | None = KEY) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(live_server):
    """The session's real server process (tests/serving/conftest.py): its base URL and its log."""
    return live_server.base, live_server.log


def test_real_server_answers_a_patient(server, served_models):
    base, _ = server
    status, body = call(f"{base}{SINGLE_ROUTE}/predict", PATIENT)
    assert status == 200
    assert body["model"]["version"] == served_models.versions[SINGLE]
    probabilities = [h["probability"] for h in body["endpoints"]["relapse"]["horizons"] if h["probability"]]
    assert all(0 <= p <= 1 for p in probabilities) and probabilities == sorted(probabilities)
    risk_12 = body["endpoints"]["relapse"]["horizons"][1]["probability"]
    total = sum(i["percentage_points"] for i in body["contributions"]["items"]) / 100
    assert total == pytest.approx(risk_12 - body["contributions"]["base_value"], abs=1e-6)


def test_real_server_answers_both_tasks(server):
    base, _ = server
    status, body = call(f"{base}{COMPETING_ROUTE}/predict", COMPETING_PATIENT)
    assert status == 200 and set(body["endpoints"]) == {"relapse", "nrm", "event_free"}
    two_years = {name: e["horizons"][1]["probability"] for name, e in body["endpoints"].items()}
    assert two_years["event_free"] + two_years["relapse"] + two_years["nrm"] == pytest.approx(1.0)
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:  # BentoML's own readiness route
        assert response.status == 200


def test_real_server_refuses_bad_requests_with_the_error_shape(server):
    base, log = server
    status, body = call(f"{base}{SINGLE_ROUTE}/predict", {**PATIENT, "risk_group": "Zebra-7731", "treatment_years": -1})
    assert status == 422
    assert {"body.risk_group", "body.treatment_years"} <= {f["location"] for f in body["fields"]}
    assert call(f"{base}{SINGLE_ROUTE}/predict", PATIENT, key=None)[0] == 401
    assert call(f"{base}{SINGLE_ROUTE}/predict", PATIENT, key="wrong")[0] == 401
    assert "Zebra-7731" not in log.read_text()  # rejected values never reach the log
    assert KEY not in log.read_text()


def test_serve_without_a_model_says_to_train(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    assert launch.main(["--port", "3999"]) == 1
    assert "make train" in capsys.readouterr().err


def test_serve_refuses_a_public_bind_without_keys(served_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELS_DIR", str(served_models.models_dir))
    monkeypatch.setenv("API_KEYS_FILE", str(tmp_path / "absent"))
    assert launch.main(["--host", "0.0.0.0", "--port", "3999"]) == 1
    assert "refusing" in capsys.readouterr().err
