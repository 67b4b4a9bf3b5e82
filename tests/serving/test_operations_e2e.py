"""Operations against the real server process: an audit trail and a server log without patient values, BentoML's
/readyz carrying the service's readiness, /metrics the service's metrics, a batch, and a champion reload under load
with no failed request."""

import json
import os
import shutil
import threading
import time
import urllib.request

import pytest

from features.tasks import TASKS
from tests.sample_tasks import SINGLE, SINGLE_ROUTE
from tests.serving.conftest import LIVE_KEY
from tests.serving.test_api import PATIENT

pytestmark = pytest.mark.slow  # a real server process

# Recognisable values: none may reach the audit file or the server log.
# Four decimals: latencies in the audit file and the access log have three, so they cannot match by chance.
MARKED = {**PATIENT, "age_years": 59.6137, "treatment_years": 9.3771, "response_years": 6.1219,
          "centre": "QX-Clinic-5521"}
MARKERS = ("59.6137", "9.3771", "6.1219", "QX-Clinic-5521", "Okapi-4410", LIVE_KEY)


def test_audit_and_server_log_hold_no_patient_values(live_server):
    answers = [
        live_server.call(f"{SINGLE_ROUTE}/predict", MARKED),
        live_server.call(f"{SINGLE_ROUTE}/predict", {**MARKED, "risk_group": "Okapi-4410"}),
        live_server.call(f"{SINGLE_ROUTE}/predict-batch", {"patients": [MARKED, {**MARKED, "sex": "Okapi-4410"}]}),
        live_server.call(f"{SINGLE_ROUTE}/predict", MARKED, key="Okapi-4410"),
    ]
    assert [status for status, _, _ in answers] == [200, 422, 200, 401]
    request_ids = [headers["x-request-id"] for _, _, headers in answers]
    lines = {line["request_id"]: line for line in map(json.loads, live_server.audit.read_text().splitlines())}
    assert set(request_ids) <= set(lines)
    first = lines[request_ids[0]]
    assert first["route"] == f"{SINGLE_ROUTE}/predict" and first["key_id"] == "ci" and first["status"] == 200
    assert first["model"]["version"] == answers[0][1]["model"]["version"]
    assert first["input_digest"].startswith("hmac-sha256:") and first["latency_ms"] > 0
    assert lines[request_ids[2]]["patient_errors"] == 1 and lines[request_ids[3]]["key_id"] is None
    time.sleep(0.5)  # let the access log reach the file
    for name, text in (("audit file", live_server.audit.read_text()), ("server log", live_server.log.read_text())):
        assert not [marker for marker in MARKERS if marker in text], name
    assert live_server.audit_secret.read_text().strip() not in live_server.audit.read_text()


def test_health_readiness_and_metrics_on_the_real_server(live_server):
    assert live_server.call("/livez", key=None)[0] == 200
    status, body, _ = live_server.call("/readyz", key=None)
    assert status == 200 and body == {}  # BentoML's own route, with the service's __is_ready__
    version = live_server.call(f"{SINGLE_ROUTE}/predict", PATIENT)[1]["model"]["version"]
    with urllib.request.urlopen(live_server.base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    # BentoML's request series (labelled with the raw path) are off; the service's own bounded ones replace them.
    assert "bentoml_service_request" not in text and "relapse_risk_requests_in_progress" in text
    histogram = [line for line in text.splitlines() if line.startswith("relapse_risk_request_duration_seconds_bucket")]
    assert any(f'route="{SINGLE_ROUTE}/predict"' in line for line in histogram)
    counts = [line for line in text.splitlines() if line.startswith("relapse_risk_predictions_total")]
    assert any(f'model_version="{version}"' in line and f'task="{SINGLE}"' in line for line in counts)

    # A task with a champion that never loaded makes the server not ready; ready again once it is gone.
    untrained = next((task for task in TASKS if not (live_server.models_dir / task).exists()), None)
    if untrained is None:
        return
    pointer = live_server.models_dir / untrained / "champion.json"
    pointer.parent.mkdir()
    pointer.write_text(json.dumps({"task": untrained, "version": "1", "path": "1", "run_id": "none"}))
    try:
        assert _eventually(lambda: live_server.call("/readyz", key=None)[0] == 503)
    finally:
        shutil.rmtree(pointer.parent)
    assert _eventually(lambda: live_server.call("/readyz", key=None)[0] == 200)


def test_batch_on_the_real_server(live_server):
    status, body, _ = live_server.call(f"{SINGLE_ROUTE}/predict-batch",
                                       {"patients": [PATIENT, {**PATIENT, "treatment_years": -3}, PATIENT]})
    assert status == 200 and (body["succeeded"], body["failed"]) == (2, 1)
    assert body["results"][1]["error"]["fields"][0]["location"] == "body.patients.1.treatment_years"


def test_reload_switches_version_without_a_failed_request(live_server):
    task_dir = live_server.models_dir / SINGLE
    original = json.loads((task_dir / "champion.json").read_text())
    stop, seen = threading.Event(), []

    def clinic() -> None:  # a clinical tool calling all along
        while not stop.is_set():
            status, body, _ = live_server.call(f"{SINGLE_ROUTE}/predict", PATIENT)
            seen.append((status, body.get("model", {}).get("version")))

    caller = threading.Thread(target=clinic)
    caller.start()
    try:
        assert _eventually(lambda: seen and seen[-1][1] == original["version"])
        shutil.copytree(task_dir / original["path"], task_dir / "71")
        _point(task_dir, original, "71")
        report = live_server.call("/admin/reload", {})[1]
        # "unchanged" when a request's once-a-second check got there first
        assert _task(report, SINGLE)["serving_version"] == "71", report
        assert _eventually(lambda: seen and seen[-1][1] == "71")

        shutil.copytree(task_dir / "71", task_dir / "72")
        (task_dir / "72" / "bundle.json").write_text("{")  # a broken export
        _point(task_dir, original, "72")
        report = live_server.call("/admin/reload", {})[1]
        single = _task(report, SINGLE)
        assert (single["status"], single["serving_version"]) == ("failed", "71")
        assert "keeps serving" in single["message"]
        time.sleep(1.5)  # the once-a-second check must not retry it either
        assert live_server.call(f"{SINGLE_ROUTE}/model")[1]["model"]["version"] == "71"
    finally:
        _point(task_dir, original, original["version"])
        restored = live_server.call("/admin/reload", {})[1]
        _eventually(lambda: seen and seen[-1][1] == original["version"])
        stop.set()
        caller.join(timeout=30)
    assert _task(restored, SINGLE)["serving_version"] == original["version"]
    assert len(seen) > 5 and {status for status, _ in seen} == {200}, seen[:20]
    versions = [version for _, version in seen]
    assert versions[0] == versions[-1] == original["version"] and "71" in versions


def _point(task_dir, original: dict, version: str) -> None:
    """Rewrite champion.json atomically, as promotion does."""
    pointer = {**original, "version": version, "path": version,
               "exported_at": original["exported_at"] if version == original["version"] else f"2031-{version}"}
    temporary = task_dir / ".champion.json.tmp"
    temporary.write_text(json.dumps(pointer))
    os.replace(temporary, task_dir / "champion.json")


def _task(report: dict, task: str) -> dict:
    return next(t for t in report["tasks"] if t["task"] == task)


def _eventually(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
