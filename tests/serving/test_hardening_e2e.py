"""Hardening against the real server (issue 14): a thousand distinct unknown paths leave /metrics flat and
unpublished, /metrics and /admin/reload need keys with the right roles, every error (BentoML's routes' included)
has the one shape and a request id, and a body shorter than its Content-Length gets a 408 that the audit trail
records with the key id.

One server for the module, with METRICS_ACCESS=key and a 2-second body timeout (the limit itself is configurable;
the default is 10 s), over a copy of the session's served champion of the single-event sample task."""

import asyncio
import json
import secrets
import shutil
import socket

import httpx
import pytest

from benchmarks.servers import start_service
from serving.answers import MAX_ECHOED_NAME_CHARS
from tests.sample_tasks import SINGLE, SINGLE_ROUTE
from tests.serving.conftest import SAMPLE_SERVICE
from tests.serving.test_api import PATIENT

pytestmark = pytest.mark.slow  # a real server process

CLINIC, OPS, PROMETHEUS = (secrets.token_urlsafe(24) for _ in range(3))
BODY_TIMEOUT = "2"


@pytest.fixture(scope="module")
def server(served_models, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hardening_live")
    models = workdir / "models"
    shutil.copytree(served_models.models_dir / SINGLE, models / SINGLE)
    live = start_service(models, workdir, key_lines=(f"clinic:{CLINIC}", f"ops:{OPS}:predict,admin",
                                                     f"prometheus:{PROMETHEUS}:metrics"), service=SAMPLE_SERVICE,
                         METRICS_ACCESS="key", REQUEST_BODY_TIMEOUT_SECONDS=BODY_TIMEOUT)
    try:
        live.wait_until(lambda s: s.call("/readyz")[0] == 200 and s.call(f"{SINGLE_ROUTE}/model")[0] == 200)
        yield live
    finally:
        live.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scrape(server) -> str:
    response = httpx.get(server.base + "/metrics", headers=bearer(PROMETHEUS), timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def series(text: str) -> set[str]:
    """Every series (name and labels, without its value)."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def send_all(server, paths: list[str], concurrency: int = 32) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=60) as client:
            async def one(path: str) -> httpx.Response:
                async with gate:
                    return await client.get(path)

            return await asyncio.gather(*(one(path) for path in paths))

    return asyncio.run(run())


def unknown_paths(count: int) -> tuple[list[str], list[str]]:
    """(paths, the random tokens in them): unknown paths at the root, under the key-protected prefix, under the
    app's static mounts, BentoML's former routes and probes, with a random query too."""
    shapes = ("/{t}", "/v1/{t}", SINGLE_ROUTE + "/{t}", "/calculator/{t}.js", "/docs-assets/{t}", "/static_content/{t}",
              "/livez/{t}", "/metrics/{t}", "/{t}/predict?{t}=1", "/admin/{t}")
    tokens = [f"zq{secrets.token_hex(8)}" for _ in range(count)]
    return [shapes[i % len(shapes)].format(t=token) for i, token in enumerate(tokens)], tokens


def test_a_thousand_unknown_paths_leave_metrics_flat_and_unpublished(server):
    """Two rounds of 500 new paths (every shape, 50 each): the second adds no series and publishes no token. Each
    path is a new label value if the metrics keyed on paths, so 500 shows a leak as plainly as 5,000 would."""
    scrape(server)  # the scrape's own series exist from here on
    first_paths, first_tokens = unknown_paths(500)
    answers = send_all(server, first_paths)
    after_first = scrape(server)
    second_paths, second_tokens = unknown_paths(500)
    answers += send_all(server, second_paths)
    after_second = scrape(server)

    assert series(after_second) == series(after_first)  # no new series for 500 new paths
    assert abs(len(after_second) - len(after_first)) < 0.02 * len(after_first)  # values change, not the size
    published = [token for token in first_tokens + second_tokens if token in after_second]
    assert not published, published[:5]
    assert 'route="unmatched"' in after_second and "bentoml_service_request" not in after_second
    assert {response.status_code for response in answers} <= {401, 404}
    for response in answers:
        assert set(response.json()) == {"code", "message", "fields"} and len(response.headers["x-request-id"]) == 32


def test_every_error_has_the_one_shape_and_a_request_id(server):
    long_name = "made_up_" + "y" * 60_000
    cases = [
        ("GET", "/nowhere", {}, None, 404),
        ("GET", "/docs.json", {}, None, 404),
        ("POST", "/livez", {}, None, 405),
        ("DELETE", "/readyz", {}, None, 405),
        ("PUT", "/", {}, None, 405),
        ("GET", f"{SINGLE_ROUTE}/predict", bearer(CLINIC), None, 405),
        ("GET", "/v1/nowhere", bearer(CLINIC), None, 404),
        ("GET", f"{SINGLE_ROUTE}/model", {}, None, 401),
        ("POST", f"{SINGLE_ROUTE}/predict", bearer(CLINIC), b'{"sex": "female", "treatment_years": }', 422),
        ("POST", f"{SINGLE_ROUTE}/predict", bearer(CLINIC), json.dumps({**PATIENT, long_name: 1}).encode(), 422),
    ]
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for method, path, headers, body, status in cases:
            response = client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                                      content=body)
            assert response.status_code == status, (method, path, response.text[:200])
            assert response.headers["content-type"] == "application/json", (method, path)
            answer = response.json()
            assert set(answer) == {"code", "message", "fields"} and answer["message"], (method, path, answer)
            assert len(response.headers["x-request-id"]) == 32, (method, path)
            if status == 422:
                [field] = [f for f in answer["fields"] if f["location"] == "body" or "made_up" in f["location"]]
                assert field["location"] in ("body", f"body.{long_name[:MAX_ECHOED_NAME_CHARS]}…"), field
                assert field["location"] != "body" or "at character" in field["reason"], field
        for method in ("GET", "HEAD"):  # BentoML keeps its probes
            assert client.request(method, "/livez").status_code == 200


def test_a_body_shorter_than_its_content_length_gets_408_recorded_with_the_key_id(server):
    head = (f"POST {SINGLE_ROUTE}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CLINIC}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n").encode()
    received = b""
    with socket.create_connection((server.host, server.port), timeout=25) as connection:
        connection.sendall(head + b'{"age_at_stop_years": 58, "sex": "fem')  # then nothing more
        while chunk := connection.recv(65536):  # the server answers and closes the connection
            received += chunk
    head_part, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    assert status_line.split()[1] == "408", received[:300]
    answer = json.loads(body)
    assert answer["code"] == "request_timeout" and f"{BODY_TIMEOUT} s" in answer["message"], answer
    request_id = headers["x-request-id"]

    lines = [json.loads(line) for line in (server.log.parent / "logs" / "audit.jsonl").read_text().splitlines()]
    [line] = [line for line in lines if line["request_id"] == request_id]
    assert (line["status"], line["key_id"], line["route"]) == (408, "clinic", f"{SINGLE_ROUTE}/predict"), line
    counted = [row for row in scrape(server).splitlines()
               if row.startswith("relapse_risk_request_duration_seconds_count") and 'status="408"' in row]
    assert any(f'route="{SINGLE_ROUTE}/predict"' in row for row in counted), counted


def test_reload_and_metrics_need_keys_with_their_roles(server):
    with httpx.Client(base_url=server.base, timeout=30) as client:
        refused = client.post("/admin/reload", headers=bearer(CLINIC))
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert client.post("/admin/reload", headers=bearer(PROMETHEUS)).status_code == 403
        reloaded = client.post("/admin/reload", headers=bearer(OPS))
        assert reloaded.status_code == 200 and reloaded.json()["tasks"], reloaded.text
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(CLINIC)).status_code == 403
        assert client.get("/metrics", headers=bearer(OPS)).status_code == 200
    lines = [json.loads(line) for line in (server.log.parent / "logs" / "audit.jsonl").read_text().splitlines()]
    [line] = [line for line in lines if line["request_id"] == refused.headers["x-request-id"]]
    assert (line["status"], line["key_id"]) == (403, "clinic")
