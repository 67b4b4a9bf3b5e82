"""Operations in process: the audit trail, batches, size limits, warnings, reload without downtime, readiness,
metrics and the OpenAPI document."""

import hashlib
import hmac
import json
import shutil
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from risk_model.answers import WARNING_CODES
from serving.answers import MAX_BATCH_PATIENTS, MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS
from serving.api import create_app
from serving.audit import AuditTrail, canonical_input
from serving.champions import ChampionRegistry
from tests.sample_tasks import COMPETING, COMPETING_PATIENT, COMPETING_ROUTE, SINGLE, SINGLE_ROUTE
from tests.serving.test_api import PATIENT

KEY = "operations-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
# Recognisable values: none of them may reach the audit file.
# Four decimals: latencies in the audit file have three, so they cannot match by chance.
MARKED = {**PATIENT, "age_years": 61.2377, "treatment_years": 8.9133, "response_years": 5.4711,
          "centre": "ZQ-Hosp-7781"}
MARKERS = ("61.2377", "8.9133", "5.4711", "ZQ-Hosp-7781", "Zebra-9911", KEY)


@pytest.fixture(scope="module")
def store(served_models, tmp_path_factory) -> Path:
    """A copy of the served models/ that the reload tests may change."""
    copy = tmp_path_factory.mktemp("ops") / "models"
    shutil.copytree(served_models.models_dir, copy)
    return copy


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> AuditTrail:
    folder = tmp_path_factory.mktemp("audit")
    return AuditTrail(folder / "logs" / "audit.jsonl", folder / "secrets" / "audit_secret").prepare()


@pytest.fixture(scope="module")
def client(store, audit) -> TestClient:
    return TestClient(create_app(ChampionRegistry(store, [SINGLE, COMPETING]), {"ops": KEY}, audit,
                                 {"ops": frozenset({"predict", "admin"})}))


def audit_lines(audit: AuditTrail) -> list[dict]:
    return [json.loads(line) for line in audit.path.read_text().splitlines()]


def assert_close(a, b, tolerance: float = 1e-9, where: str = "answer") -> None:
    """Equal structures, numbers equal within `tolerance`."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_close(a[key], b[key], tolerance, f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, tolerance, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool) and isinstance(b, int | float):
        assert a == pytest.approx(b, abs=tolerance), where
    else:
        assert a == b, where


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "fields"}
    assert all(set(f) == {"location", "reason"} for f in body["fields"])
    return body


# --- audit trail --------------------------------------------------------------------------------------------

def test_audit_line_per_request_without_patient_values(client, audit):
    before = len(audit_lines(audit)) if audit.path.exists() else 0
    ok = client.post(f"{SINGLE_ROUTE}/predict", json=MARKED, headers=HEADERS)
    bad = client.post(f"{SINGLE_ROUTE}/predict", json={**MARKED, "risk_group": "Zebra-9911"}, headers=HEADERS)
    batch = client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": [MARKED, {**MARKED, "treatment_years": 99}]},
                        headers=HEADERS)
    stranger = client.post(f"{SINGLE_ROUTE}/predict", json=MARKED, headers={"Authorization": "Bearer Zebra-9911"})
    assert [r.status_code for r in (ok, bad, batch, stranger)] == [200, 422, 200, 401]
    lines = audit_lines(audit)[before:]
    assert len(lines) == 4
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r in (ok, bad, batch, stranger)]
    first = lines[0]
    assert {"time", "request_id", "route", "key_id", "status", "latency_ms", "input_digest", "model"} <= set(first)
    assert first["route"] == f"{SINGLE_ROUTE}/predict" and first["key_id"] == "ops" and first["status"] == 200
    assert first["model"]["version"] == ok.json()["model"]["version"] and first["model"]["run_id"]
    assert lines[2]["route"] == f"{SINGLE_ROUTE}/predict-batch" and lines[2]["patients"] == 2
    assert lines[2]["patient_errors"] == 1
    assert lines[3]["key_id"] is None and lines[3]["status"] == 401
    # The digest is HMAC-SHA256 of the canonical JSON body with the secret kept outside the audit file.
    secret = audit.secret_path.read_bytes().strip()
    canonical = canonical_input(json.dumps(MARKED).encode())
    assert first["input_digest"] == "hmac-sha256:" + hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    assert first["input_digest"] != lines[1]["input_digest"]
    text = audit.path.read_text()
    assert not [marker for marker in MARKERS if marker in text]
    assert secret.decode() not in text
    assert stat.S_IMODE(audit.secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(audit.path.stat().st_mode) == 0o600


def test_every_answer_carries_a_request_id(client):
    ids = {client.get(path).headers.get("x-request-id") for path in ("/livez", "/readyz", "/nowhere")}
    assert None not in ids and len(ids) == 3


# --- batches and limits ----------------------------------------------------------------------------------------

def test_batch_keeps_good_patients_when_one_is_bad(client):
    patients = [PATIENT, {**PATIENT, "treatment_years": 99}, "not a patient",
                {**PATIENT, "response_years": 9.0, "treatment_years": 5.0}, {**PATIENT, "risk_group": "high"}]
    response = client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": patients}, headers=HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["count"], body["succeeded"], body["failed"]) == (5, 2, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(5))
    assert [r["answer"] is not None for r in results] == [True, False, False, False, True]
    locations = [{f["location"] for f in r["error"]["fields"]} for r in results[1:4]]
    assert locations == [{"body.patients.1.treatment_years"}, {"body.patients.2"},
                         {"body.patients.3.response_years"}]
    for result in results[1:4]:
        assert set(result["error"]) == {"code", "message", "fields"}
    # Each answer is the single-patient answer (same path); contributions only when asked for.
    for index in (0, 4):
        single = client.post(f"{SINGLE_ROUTE}/predict", json=patients[index], headers=HEADERS).json()
        answer = results[index]["answer"]
        assert answer["contributions"] is None
        assert_close(answer["endpoints"], single["endpoints"])
        assert answer["risk_group"] == single["risk_group"] and answer["warnings"] == single["warnings"]
    explained = client.post(f"{SINGLE_ROUTE}/predict-batch", headers=HEADERS,
                            json={"patients": [PATIENT], "include_contributions": True}).json()["results"][0]["answer"]
    single = client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).json()
    assert_close(explained["contributions"], single["contributions"])


def test_batches_sent_together_compute_one_at_a_time(client, monkeypatch):
    """A batch's arrays are the largest the service makes: concurrent batches wait their turn, and all answer."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import serving.api

    inside, most, lock = [0], [0], threading.Lock()
    original = serving.api.predict_patients

    def counted(*args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # long enough for the other requests to arrive while this one computes
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    # The champion loads at the first request (the service loads it at start); then the batches come together.
    client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": [PATIENT]}, headers=HEADERS)
    monkeypatch.setattr(serving.api, "predict_patients", counted)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: client.post(f"{SINGLE_ROUTE}/predict-batch",
                                                        json={"patients": [PATIENT] * 20}, headers=HEADERS),
                                  range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert all(r.json()["succeeded"] == 20 for r in responses)
    assert most[0] == 1


def test_answers_are_computed_with_the_collector_paused(client, monkeypatch):
    """Python's cyclic collector is off while answers are computed (their containers hold no cycles) and on again
    afterwards, also when requests overlap; a caller that had it off keeps it off."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    import risk_model.prediction as prediction

    seen, original = [], prediction._answers

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS)  # the champion loads at the first request
    monkeypatch.setattr(prediction, "_answers", watched)
    assert gc.isenabled()
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS),
                                  range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert seen == [False] * 8
    assert gc.isenabled()
    gc.disable()
    try:
        assert client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).status_code == 200
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_of_the_collector_end_with_the_last():
    import gc
    import threading

    from risk_model.prediction import _collector_paused

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    states = []

    def first():
        with _collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    with _collector_paused():
        thread.start()
        first_in.wait(5)
        second_in.set()
        first_out.wait(5)
        states.append(gc.isenabled())  # the first caller left; this one still computes
    thread.join(5)
    assert states == [False]
    assert gc.isenabled()


def test_batch_of_competing_risk_patients(client):
    patients = [COMPETING_PATIENT, {**COMPETING_PATIENT, "donor_type": "cousin"}]
    body = client.post(f"{COMPETING_ROUTE}/predict-batch", json={"patients": patients}, headers=HEADERS).json()
    assert (body["succeeded"], body["failed"]) == (1, 1)
    assert set(body["results"][0]["answer"]["endpoints"]) == {"relapse", "nrm", "event_free"}


def test_limits_are_stated(client):
    too_many = client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": [PATIENT] * (MAX_BATCH_PATIENTS + 1)},
                           headers=HEADERS)
    assert str(MAX_BATCH_PATIENTS) in assert_error_shape(too_many, 422)["fields"][0]["reason"]
    explained = client.post(f"{SINGLE_ROUTE}/predict-batch", json={
        "patients": [PATIENT] * (MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS + 1), "include_contributions": True},
        headers=HEADERS)
    assert str(MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS) in assert_error_shape(explained, 422)["message"]
    assert_error_shape(client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": []}, headers=HEADERS), 422)
    assert_error_shape(client.post(f"{SINGLE_ROUTE}/predict-batch", json=[PATIENT], headers=HEADERS), 422)
    large = assert_error_shape(client.post(f"{SINGLE_ROUTE}/predict", content=b" " * 70_000,
                                           headers={**HEADERS, "Content-Type": "application/json"}), 413)
    assert "65536 bytes" in large["message"]

    def chunked():  # no Content-Length: the limit holds on the bytes actually received
        for _ in range(40):
            yield b" " * 2048

    streamed = client.post(f"{SINGLE_ROUTE}/predict", content=chunked(),
                           headers={**HEADERS, "Content-Type": "application/json"})
    assert_error_shape(streamed, 413)
    batch_large = client.post(f"{SINGLE_ROUTE}/predict-batch", content=b" " * (3 * 1024 * 1024),
                              headers={**HEADERS, "Content-Type": "application/json"})
    assert "2097152 bytes" in assert_error_shape(batch_large, 413)["message"]


# --- warnings ------------------------------------------------------------------------------------------------

def test_out_of_range_age_and_far_combination_warn(client):
    body = client.post(f"{SINGLE_ROUTE}/predict", json={**PATIENT, "age_years": 99}, headers=HEADERS).json()
    assert {"code": "outside_training_range", "field": "age_years"} in [
        {k: w[k] for k in ("code", "field")} for w in body["warnings"]]
    unusual = {**PATIENT, "age_years": 21, "treatment_years": 19.5, "response_years": 19.0, "risk_group": "high",
               "prior_therapy": True, "sex": "male"}
    answer = client.post(f"{SINGLE_ROUTE}/predict", json=unusual, headers=HEADERS).json()
    codes = [w["code"] for w in answer["warnings"]]
    assert "far_from_training_data" in codes
    typical = client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).json()["warnings"]
    assert "far_from_training_data" not in [w["code"] for w in typical]
    assert set(WARNING_CODES) >= set(codes)


def test_many_imputed_predictors_warn(client, store):
    info = client.get(f"{COMPETING_ROUTE}/model", headers=HEADERS).json()
    thresholds = info["out_of_distribution"]
    assert thresholds["distance_threshold"] > 0 and 0 < thresholds["distance_quantile"] < 1
    assert thresholds["min_imputed_predictors"] >= 3
    optional = ("marker_log10", "marker_detectable", "comorbidity")  # the sample task's optional predictors
    sparse = {k: v for k, v in COMPETING_PATIENT.items() if k not in optional}
    answer = client.post(f"{COMPETING_ROUTE}/predict", json=sparse, headers=HEADERS).json()
    codes = [w["code"] for w in answer["warnings"]]
    assert "many_imputed_predictors" in codes
    full = client.post(f"{COMPETING_ROUTE}/predict", json=COMPETING_PATIENT,
                       headers=HEADERS).json()["warnings"]
    assert "many_imputed_predictors" not in [w["code"] for w in full]


def test_model_route_reports_training_date_and_thresholds(client):
    body = client.get(f"{SINGLE_ROUTE}/model", headers=HEADERS).json()
    assert body["trained_at"] and body["trained_at"][:4].isdigit()
    assert body["exported_at"] and body["data_digest"] and "uno_c" in body["metrics"]
    assert body["out_of_distribution"]["distance_threshold"] > 0
    assert set(body["warning_codes"]) == set(WARNING_CODES)


def test_bundles_from_before_the_reference_still_load_and_serve(store, tmp_path):
    from risk_model.bundle import ModelBundle
    from risk_model.prediction import predict_patient

    pointer = json.loads((store / SINGLE / "champion.json").read_text())
    old = tmp_path / "models" / SINGLE
    shutil.copytree(store / SINGLE / pointer["path"], old / pointer["path"])
    spec = json.loads((old / pointer["path"] / "bundle.json").read_text())
    assert spec.pop("ood_reference") and spec.pop("trained_at")
    # Nor the spec's wording and intended use (bundles carry them since the page stopped parsing the model card).
    assert spec["schema"].pop("endpoint_wording") and spec["schema"].pop("use") and spec["schema"].pop("title")
    for predictor in spec["schema"]["predictors"]:
        predictor.pop("label")
    (old / pointer["path"] / "bundle.json").write_text(json.dumps(spec))
    (old / "champion.json").write_text(json.dumps(pointer))
    bundle = ModelBundle.load(old / pointer["path"])
    assert bundle.ood_reference == {} and bundle.trained_at is None
    unusual = {**PATIENT, "treatment_years": 19.5, "response_years": 19.0, "age_years": 21}
    codes = [w.code for w in predict_patient(bundle, unusual).warnings]
    assert "far_from_training_data" not in codes and "outside_training_range" in codes
    app = TestClient(create_app(ChampionRegistry(tmp_path / "models", [SINGLE]), {"ops": KEY}))
    info = app.get(f"{SINGLE_ROUTE}/model", headers=HEADERS).json()
    assert info["trained_at"] is None and info["out_of_distribution"]["distance_threshold"] is None
    assert info["use"] is None  # the page then says to ask whoever trained it
    assert [e["title"] for e in info["labels"]["endpoints"].values()] == ["Relapse", "Relapse free"]
    assert info["labels"]["predictors"]["risk_group"]["label"] == "Risk group at diagnosis"


# --- reload, readiness, metrics ------------------------------------------------------------------------------

def _point_champion(store: Path, task: str, version: str) -> None:
    pointer_path = store / task / "champion.json"
    pointer = json.loads(pointer_path.read_text())
    pointer.update(version=version, path=version, exported_at=f"2030-01-01T00:00:0{version}+00:00")
    pointer_path.write_text(json.dumps(pointer))


def test_reload_switches_version_and_a_broken_one_keeps_the_old(client, store):
    original = json.loads((store / SINGLE / "champion.json").read_text())
    assert_error_shape(client.post("/admin/reload"), 401)
    shutil.copytree(store / SINGLE / original["path"], store / SINGLE / "91")
    _point_champion(store, SINGLE, "91")
    report = client.post("/admin/reload", headers=HEADERS).json()
    single = next(t for t in report["tasks"] if t["task"] == SINGLE)
    assert (single["status"], single["serving_version"]) == ("loaded", "91"), single
    assert client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).json()["model"]["version"] == "91"

    broken = store / SINGLE / "92"
    shutil.copytree(store / SINGLE / "91", broken)
    (broken / "bundle.json").write_text('{"task": SINGLE')  # a truncated export
    _point_champion(store, SINGLE, "92")
    report = client.post("/admin/reload", headers=HEADERS)
    assert report.status_code == 200
    single = next(t for t in report.json()["tasks"] if t["task"] == SINGLE)
    assert (single["status"], single["serving_version"], single["champion_version"]) == ("failed", "91", "92")
    assert "91 keeps serving" in single["message"]
    answer = client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS)
    assert answer.status_code == 200 and answer.json()["model"]["version"] == "91"
    assert client.get("/readyz").status_code == 200  # a model still serves every task with a champion

    # A version whose smoke prediction fails (loads, but cannot predict) is refused the same way.
    smoke = store / SINGLE / "93"
    shutil.copytree(store / SINGLE / "91", smoke)
    spec = json.loads((smoke / "bundle.json").read_text())
    spec["horizons_months"] = ["never"]
    (smoke / "bundle.json").write_text(json.dumps(spec))
    _point_champion(store, SINGLE, "93")
    single = next(t for t in client.post("/admin/reload", headers=HEADERS).json()["tasks"] if t["task"] == SINGLE)
    assert (single["status"], single["serving_version"]) == ("failed", "91")

    (store / SINGLE / "champion.json").write_text(json.dumps(original))
    single = next(t for t in client.post("/admin/reload", headers=HEADERS).json()["tasks"] if t["task"] == SINGLE)
    assert (single["status"], single["serving_version"]) == ("loaded", original["version"])


def test_readiness_needs_every_champion_loaded(store, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(store / SINGLE, models / SINGLE)
    (models / COMPETING).mkdir()
    (models / COMPETING / "champion.json").write_text(json.dumps({"version": "7", "path": "7", "run_id": "x"}))
    registry = ChampionRegistry(models, [SINGLE, COMPETING])
    app = TestClient(create_app(registry, {"ops": KEY}))
    assert app.get("/readyz").status_code == 503 and not registry.ready()
    assert app.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).status_code == 200
    assert_error_shape(app.post(f"{COMPETING_ROUTE}/predict", json=COMPETING_PATIENT, headers=HEADERS), 503)
    (models / COMPETING / "champion.json").unlink()
    registry.refresh(force=True)
    assert app.get("/readyz").status_code == 200


def test_metrics_have_route_latency_and_predictions_per_version(client):
    version = client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=HEADERS).json()["model"]["version"]
    text = client.get("/metrics").text
    assert 'relapse_risk_request_duration_seconds_bucket{' in text
    assert f'route="{SINGLE_ROUTE}/predict"' in text
    counts = [line for line in text.splitlines() if line.startswith("relapse_risk_predictions_total{")]
    labels = (f'model_version="{version}"', f'route="{SINGLE_ROUTE}/predict"', f'task="{SINGLE}"')
    assert any(all(label in line for label in labels) for line in counts), counts


# --- the OpenAPI document -----------------------------------------------------------------------------------

def test_openapi_documents_every_route_field_and_error(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for route in ("/livez", "/readyz", "/healthz", "/metrics", "/admin/reload", f"{SINGLE_ROUTE}/predict",
                  f"{SINGLE_ROUTE}/predict-batch", f"{SINGLE_ROUTE}/model", f"{COMPETING_ROUTE}/predict",
                  f"{COMPETING_ROUTE}/predict-batch", f"{COMPETING_ROUTE}/model"):
        assert route in paths, route
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), (path, method)
            if path.startswith(("/v1", "/admin")):
                for status in ("401", "413") if method == "post" else ("401",):
                    ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status)
            if method == "post" and path.startswith("/v1"):
                assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
                    "/ErrorBody")
    schemas = spec["components"]["schemas"]
    for name in ("SampleSinglePatient", "SampleCompetingPatient"):
        patient = schemas[name]
        assert patient["examples"], name
        for field, definition in patient["properties"].items():
            assert definition.get("description"), (name, field)
        assert "[years]" in patient["properties"]["age_years"]["description"]
    batch = schemas["SampleSingleBatch"]["properties"]["patients"]
    assert batch["maxItems"] == MAX_BATCH_PATIENTS and batch["items"]["$ref"].endswith("/SampleSinglePatient")
    probability = schemas["HorizonEstimate"]["properties"]["probability"]
    assert probability["minimum"] == 0 and probability["maximum"] == 1
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn." not in page
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_a_worker_keeps_few_malloc_arenas():
    """glibc takes the setting (so request threads share two arenas); run in a fresh process, as a worker starts."""
    import platform
    import subprocess
    import sys

    script = "from risk_model.process_memory import few_malloc_arenas; print(few_malloc_arenas())"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == str(platform.libc_ver()[0] == "glibc")
