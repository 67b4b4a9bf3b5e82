"""Hardening in process (issue 14): key roles (reload needs `admin`), /metrics open, behind a key or off, bounded
metric labels, champion pointers confined to the models folder, short echoes of made-up field names, JSON syntax
errors located as positions, and `make serve` telling where the key is instead of printing it."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.answers import MAX_ECHOED_NAME_CHARS
from serving.api import create_app
from serving.audit import AuditTrail
from serving.auth import KeyFileError, parse_key_lines, read_keys, read_roles
from serving.champions import ChampionRegistry
from serving.launch import ensure_keys
from serving.middleware import AccessSettings, ServiceMiddleware
from tests.sample_tasks import SINGLE, SINGLE_ROUTE
from tests.serving.test_api import PATIENT

CLINIC, OPS, PROMETHEUS = "clinic-key-0123456789abc", "ops-key-0123456789abcdef", "prom-key-0123456789abcdef"
KEYS = {"clinic": CLINIC, "ops": OPS, "prometheus": PROMETHEUS}
ROLES = {"clinic": frozenset({"predict"}), "ops": frozenset({"predict", "admin"}),
         "prometheus": frozenset({"metrics"})}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "fields"} and body["message"], body
    assert len(response.headers["x-request-id"]) == 32
    return body


@pytest.fixture(scope="module")
def models(served_models, tmp_path_factory) -> Path:
    """A copy of the served models/ (the single-event sample task) that the pointer tests may change."""
    copy = tmp_path_factory.mktemp("hardening") / "models"
    shutil.copytree(served_models.models_dir / SINGLE, copy / SINGLE)
    return copy


def app_with(models_dir: Path, metrics: str = "open", audit: AuditTrail | None = None) -> TestClient:
    return TestClient(create_app(ChampionRegistry(models_dir, [SINGLE]), KEYS, audit, ROLES,
                                 AccessSettings(metrics=metrics)))


# --- keys and roles ------------------------------------------------------------------------------------------

def test_key_file_roles_are_read_and_old_lines_mean_predict(tmp_path):
    path = tmp_path / "api_keys"
    path.write_text("# comment\nclinic:AAA\nops:BBB:predict,admin\nprom:CCC: metrics \n\n")
    assert read_keys(path) == {"clinic": "AAA", "ops": "BBB", "prom": "CCC"}
    assert read_roles(path) == {"clinic": {"predict"}, "ops": {"predict", "admin"}, "prom": {"metrics"}}
    for text in ("ops:SECRET-VALUE-1:amdin\n", "ops:SECRET-VALUE-1:\n", "ops:\n", "ops:SECRET:VALUE:1\n"):
        with pytest.raises(KeyFileError) as refused:
            parse_key_lines(text)
        assert "line 1" in str(refused.value) and "SECRET" not in str(refused.value)


def test_reload_needs_a_key_marked_admin(models, tmp_path):
    audit = AuditTrail(tmp_path / "audit.jsonl", tmp_path / "secret").prepare()
    client = app_with(models, audit=audit)
    refused = client.post("/admin/reload", headers=bearer(CLINIC))
    body = assert_error_shape(refused, 403)
    assert body["code"] == "forbidden" and "`admin`" in body["message"]
    assert_error_shape(client.post("/admin/reload", headers=bearer(PROMETHEUS)), 403)
    assert_error_shape(client.post("/admin/reload"), 401)
    reloaded = client.post("/admin/reload", headers=bearer(OPS))
    assert reloaded.status_code == 200 and {t["task"] for t in reloaded.json()["tasks"]} == {SINGLE}
    # Roles apply to prediction too: a key for metrics only may not predict.
    assert client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=bearer(CLINIC)).status_code == 200
    assert_error_shape(client.post(f"{SINGLE_ROUTE}/predict", json=PATIENT, headers=bearer(PROMETHEUS)), 403)
    lines = {line["request_id"]: line for line in map(json.loads, audit.path.read_text().splitlines())}
    line = lines[refused.headers["x-request-id"]]
    assert (line["route"], line["status"], line["key_id"]) == ("/admin/reload", 403, "clinic")


# --- champion pointers -----------------------------------------------------------------------------------------

def test_a_champion_pointer_out_of_the_models_folder_is_refused(models, tmp_path):
    task_dir = models / SINGLE
    original = json.loads((task_dir / "champion.json").read_text())
    registry = ChampionRegistry(models, [SINGLE])
    assert registry.refresh(force=True)[0]["status"] == "loaded"
    outside = tmp_path / "elsewhere"
    shutil.copytree(task_dir / original["path"], outside / "5")  # a valid bundle, but not under models/
    (task_dir / "6").symlink_to(outside / "5", target_is_directory=True)
    try:
        for version, path in (("4", str(outside / "5")), ("5", "../../elsewhere/5"), ("6", "6")):
            pointer = {**original, "version": version, "path": path, "exported_at": f"2031-0{version}"}
            (task_dir / "champion.json").write_text(json.dumps(pointer))
            [report] = registry.refresh(force=True)
            assert (report["status"], report["serving_version"]) == ("failed", original["version"]), (path, report)
            assert "inside" in report["message"] and "keeps serving" in report["message"], report
            assert registry.get(SINGLE).pointer["version"] == original["version"]
        # A fresh worker whose only pointer leads out of models/ serves nothing rather than that bundle.
        assert ChampionRegistry(models, [SINGLE]).get(SINGLE) is None
    finally:
        (task_dir / "champion.json").write_text(json.dumps(original))
        (task_dir / "6").unlink()
    assert registry.refresh(force=True)[0]["status"] in ("loaded", "unchanged")


# --- /metrics access and labels ------------------------------------------------------------------------------

def test_metrics_can_be_open_behind_a_key_or_off(models):
    assert app_with(models, "open").get("/metrics").status_code == 200

    keyed = app_with(models, "key")
    assert_error_shape(keyed.get("/metrics"), 401)
    assert_error_shape(keyed.get("/metrics", headers=bearer(CLINIC)), 403)
    for key in (PROMETHEUS, OPS):
        scraped = keyed.get("/metrics", headers=bearer(key))
        assert scraped.status_code == 200 and "relapse_risk_request_duration_seconds" in scraped.text
    assert keyed.get("/openapi.json").json()["paths"]["/metrics"]["get"]["security"] == [{"apiKey": []}]

    off = app_with(models, "off")
    for headers in ({}, bearer(OPS)):
        assert assert_error_shape(off.get("/metrics", headers=headers), 404)["code"] == "not_found"
    assert "/metrics" not in off.get("/openapi.json").json()["paths"]


def test_metrics_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("METRICS_ACCESS", "key")
    monkeypatch.setenv("REQUEST_BODY_TIMEOUT_SECONDS", "4")
    assert AccessSettings.from_env() == AccessSettings(metrics="key", body_timeout_seconds=4.0)
    for name, value in (("METRICS_ACCESS", "public"), ("REQUEST_BODY_TIMEOUT_SECONDS", "soon"),
                        ("REQUEST_BODY_TIMEOUT_SECONDS", "45")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=name):
            AccessSettings.from_env()
        monkeypatch.delenv(name)


def test_metric_labels_never_carry_what_a_client_sent(models):
    client = app_with(models)
    sent = [f"/probe-{i:04d}-zq" for i in range(40)] + [f"{SINGLE_ROUTE}/probe-{i:04d}-zq" for i in range(40)]
    for path in sent:
        assert_error_shape(client.get(path), 401 if path.startswith("/v1/") else 404)
    for method in ("BREW", "PROPFIND", "X-ZQ-METHOD"):
        client.request(method, f"{SINGLE_ROUTE}/predict", headers=bearer(CLINIC))
    text = client.get("/metrics").text
    assert "-zq" not in text and "ZQ" not in text and "BREW" not in text
    durations = [line for line in text.splitlines() if line.startswith("relapse_risk_request_duration_seconds_count")]
    assert any('route="unmatched"' in line and 'status="404"' in line for line in durations), durations
    assert any('method="other"' in line for line in durations), durations


# --- the error contract --------------------------------------------------------------------------------------

def test_made_up_field_names_come_back_cut_to_a_stated_length(models):
    client = app_with(models)
    long_name = "patient_name_" + "x" * 60_000
    body = assert_error_shape(client.post(f"{SINGLE_ROUTE}/predict", json={**PATIENT, long_name: 1},
                                          headers=bearer(CLINIC)), 422)
    [field] = [f for f in body["fields"] if f["location"].startswith("body.patient_name_")]
    assert field["location"] == "body." + long_name[:MAX_ECHOED_NAME_CHARS] + "…"
    batch = client.post(f"{SINGLE_ROUTE}/predict-batch", json={"patients": [{**PATIENT, long_name: 1}]},
                        headers=bearer(CLINIC)).json()
    [location] = [f["location"] for f in batch["results"][0]["error"]["fields"]]
    assert location == "body.patients.0." + long_name[:MAX_ECHOED_NAME_CHARS] + "…"
    assert len(client.get("/openapi.json").text) < 10 ** 6 and f"{MAX_ECHOED_NAME_CHARS} characters" in (
        client.get("/openapi.json").json()["info"]["description"])


def test_a_json_syntax_error_is_located_as_a_position_not_a_field(models):
    client = app_with(models)
    broken = b'{"age_at_stop_years": 58, "sex": }'
    response = client.post(f"{SINGLE_ROUTE}/predict", content=broken,
                           headers={**bearer(CLINIC), "Content-Type": "application/json"})
    [field] = assert_error_shape(response, 422)["fields"]
    position = broken.index(b"}")
    assert field == {"location": "body", "reason": f"body is not valid JSON (expecting value at character {position})"}


def test_body_timeout_and_limits_are_stated_in_the_openapi_document(models):
    client = TestClient(create_app(ChampionRegistry(models, [SINGLE]), KEYS, None, ROLES,
                                   AccessSettings(body_timeout_seconds=7)))
    spec = client.get("/openapi.json").json()
    assert "within 7 s" in spec["info"]["description"]
    responses = spec["paths"][f"{SINGLE_ROUTE}/predict"]["post"]["responses"]
    assert {"401", "403", "408", "413", "422"} <= set(responses)


def test_audit_and_metrics_record_what_the_client_got_when_no_route_answered(tmp_path):
    """BentoML's request timeout (its own middleware, here with 0.2 s) cancels a request and answers 504; a client
    that goes away mid-body gets nothing (499). Both were recorded as 500 without a key id."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    audit = AuditTrail(tmp_path / "audit.jsonl", tmp_path / "secret").prepare()

    async def never_answers(scope, receive, send) -> None:
        await asyncio.Event().wait()

    def run(receive_messages: list[dict]) -> list[dict]:
        sent: list[dict] = []
        scope = {"type": "http", "method": "POST", "path": f"{SINGLE_ROUTE}/predict", "query_string": b"",
                 "headers": [(b"authorization", f"Bearer {CLINIC}".encode())]}
        messages = iter(receive_messages)

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        app = TimeoutMiddleware(ServiceMiddleware(never_answers, keys=KEYS, routes=[], audit=audit, roles=ROLES),
                                timeout=0.2)
        asyncio.run(app(scope, receive, send))
        return sent

    sent = run([{"type": "http.request", "body": b"{}", "more_body": False}])
    assert sent[0]["status"] == 504
    run([{"type": "http.request", "body": b'{"a"', "more_body": True}, {"type": "http.disconnect"}])
    lines = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(line["status"], line["key_id"]) for line in lines] == [(504, "clinic"), (499, "clinic")]


# --- make serve ----------------------------------------------------------------------------------------------

def test_make_serve_says_where_the_key_is_never_the_key(tmp_path):
    path = tmp_path / "secrets" / "api_keys"
    can_serve, message = ensure_keys(path, "127.0.0.1")
    key = read_keys(path)["local"]
    assert can_serve and len(key) >= 32 and key not in message
    assert str(path) in message and f"cut -d: -f2 {path}" in message
    assert read_roles(path)["local"] == {"predict", "admin"} and oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert ensure_keys(path, "127.0.0.1") == (True, "")  # an existing file is kept as it is
    assert read_keys(path)["local"] == key

    refused, message = ensure_keys(tmp_path / "absent", "0.0.0.0")
    assert not refused and "refusing" in message and not (tmp_path / "absent").exists()
    broken = tmp_path / "broken"
    broken.write_text("ops:SECRET-VALUE-9:root\n")
    refused, message = ensure_keys(broken, "127.0.0.1")
    assert not refused and "line 1" in message and "SECRET" not in message
