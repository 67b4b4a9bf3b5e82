"""The risk-calculator page in a real headless Chromium (Debian's, driven by playwright) against the real BentoML
server (tests/serving/conftest.py) over the champions built in seconds (tests/served_models.py: the page reads the
intended use and its words from /v1/<task>/model, so it needs no model card, which only a training run writes):
enter the key, fill a patient, read the shown risk and compare it with the API's answer for the same patient; send
a bad value and read the service's reason beside the field. The screenshots are
kept in test-artifacts/ (git-ignored).

There is no browser download here: the test uses /usr/bin/chromium (`.ci/run` installs it with apt-get) and fails,
not skips, without it.
"""

import json
import struct
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from tests.sample_tasks import COMPETING, COMPETING_ROUTE, SINGLE, SINGLE_ROUTE

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOT = ARTIFACTS / "risk-calculator.png"
# States the page settles in (body[data-state]); waited for with a selector, since the page's content policy
# forbids the string evaluation that wait_for_function would need.
SETTLED = ", ".join(f'body[data-state="{state}"]' for state in ("ready", "result", "invalid", "error", "needs-key",
                                                               "no-task"))


def shown(probability: float | None) -> str:
    """A probability as the page shows it: JavaScript's `(p * 100).toFixed(1) + " %"` (exact value, ties up)."""
    if probability is None:
        return "—"
    return f"{Decimal(probability * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


def shown_interval(lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return "no interval"
    return f"{shown(lower)[:-2]}–{shown(upper)}"


pytestmark = pytest.mark.slow  # a real server process and a browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no browser at {CHROMIUM}: install Debian's chromium (`apt-get install -y chromium`, as .ci/run "
                    "does); the page's browser test does not skip")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh tab (own sessionStorage) that records every URL it asks for and every script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.requested, tab.script_errors = [], []
    tab.on("request", lambda request: tab.requested.append(request.url))
    tab.on("pageerror", lambda error: tab.script_errors.append(str(error)))
    yield tab
    context.close()
    outside = [url for url in tab.requested if not url.startswith((live_server.base + "/", "data:"))]
    assert not outside, f"the page asked for something outside the service: {outside}"
    assert not tab.script_errors, tab.script_errors


def settle(page) -> str:
    """Wait until the page has finished what it was doing; return its state."""
    page.wait_for_selector(SETTLED, state="attached", timeout=30_000)
    return page.get_attribute("body", "data-state")


def open_with_key(page, live_server, key: str) -> str:
    page.goto(live_server.base + "/")
    page.wait_for_selector("#api-key", state="visible")
    page.fill("#api-key", key)
    page.click("#key-submit")
    return settle(page)


def request_example(live_server, task_model: str) -> dict:
    status, document, _ = live_server.call("/openapi.json", key=None)
    assert status == 200
    return document["components"]["schemas"][task_model]["examples"][0]


def fill_patient(page, patient: dict) -> None:
    for name, value in patient.items():
        selector = f"#field-{name}"
        kind = page.get_attribute(f'.field[data-field="{name}"]', "data-kind")
        if kind == "boolean":
            page.select_option(selector, "true" if value else "false")
        elif kind == "category":
            page.select_option(selector, str(value))
        else:
            page.fill(selector, str(value))


def submit(page, predict_path: str) -> tuple[str, dict]:
    """Click the button; return the page's final state and the JSON body it posted."""
    with page.expect_request(lambda r: r.url.endswith(predict_path) and r.method == "POST") as sent:
        page.click("#submit")
    state = settle(page)
    return state, json.loads(sent.value.post_data)


def assert_shown_answer(page, answer: dict) -> None:
    for endpoint, estimate in answer["endpoints"].items():
        for horizon in estimate["horizons"]:
            where = f'[data-endpoint="{endpoint}"][data-months="{horizon["months"]}"]'
            assert page.inner_text(f".probability{where}") == shown(horizon["probability"]), (endpoint, horizon)
            if horizon["probability"] is not None:
                assert page.inner_text(f".interval{where}") == shown_interval(horizon["lower"], horizon["upper"])
        assert page.locator(f'#curve-chart polyline[data-endpoint="{endpoint}"]').count() == 1
    assert page.inner_text("#result-model-name") == answer["model"]["name"]
    assert page.inner_text("#result-model-version") == answer["model"]["version"]
    assert page.get_attribute("#risk-group", "data-label") == answer["risk_group"]["label"]
    contributions = answer["contributions"]
    rows = page.locator("#waterfall-chart g.waterfall-row")
    assert rows.count() == len(contributions["items"]) + 2  # base value, one bar per predictor, this patient
    features = page.eval_on_selector_all("#waterfall-chart g[data-feature]", "gs => gs.map(g => g.dataset.feature)")
    assert sorted(features) == sorted(item["feature"] for item in contributions["items"])
    # Red ("worse") is bad news for the patient: raising an incidence, lowering a survival probability.
    survival = answer["endpoints"][contributions["endpoint"]]["kind"] == "survival"
    kinds = page.eval_on_selector_all("#waterfall-chart g[data-feature]",
                                      "gs => gs.map(g => [g.dataset.feature, g.dataset.kind])")
    points = {item["feature"]: item["percentage_points"] for item in contributions["items"]}
    assert all(kind == ("worse" if (points[feature] >= 0) != survival else "better") for feature, kind in kinds)
    explained = next(h["probability"] for h in answer["endpoints"][contributions["endpoint"]]["horizons"]
                     if h["months"] == contributions["horizon_months"])
    assert rows.last.locator("text").last.text_content() == shown(explained)
    warnings = page.locator("#warnings li[data-code]")
    assert warnings.count() == len(answer["warnings"])
    assert [warnings.nth(i).get_attribute("data-code") for i in range(warnings.count())] == \
        [w["code"] for w in answer["warnings"]]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 900 and len(data) > 30_000, (width, height, len(data))


def test_real_server_serves_the_page_not_bentoml_index(live_server):
    with urllib.request.urlopen(live_server.base + "/", timeout=10) as response:
        page = response.read().decode()
        headers = dict(response.headers)
    assert "<title>Relapse-risk calculator</title>" in page
    assert "googletagmanager" not in page.lower() and "BentoML" not in page
    assert "default-src 'none'" in headers["content-security-policy"]
    with urllib.request.urlopen(live_server.base + "/calculator/calculator.js", timeout=10) as response:
        assert response.status == 200 and b"renderWaterfall" in response.read()


def test_a_clinician_gets_the_api_answer_and_sees_errors_beside_the_field(page, live_server):
    assert open_with_key(page, live_server, live_server.key) == "ready"
    tasks = page.eval_on_selector_all("#task-select option", "options => options.map(o => o.value)")
    assert {SINGLE, COMPETING} <= set(tasks)
    page.select_option("#task-select", SINGLE)
    assert settle(page) == "ready"

    # The model's identity, its intended-use statement and each field's unit and range are on the page.
    _, info, _ = live_server.call(f"{SINGLE_ROUTE}/model", key=live_server.key)
    assert page.inner_text("#model-name") == info["model"]["name"]
    assert page.inner_text("#model-version") == info["model"]["version"]
    shown_use = page.inner_text("#intended-use")
    assert info["use"]["intended_use"] in shown_use and info["use"]["users_and_limits"] in shown_use
    for predictor in info["schema"]["predictors"]:
        if predictor["kind"] == "number" and page.locator(f"#field-{predictor['name']}-meta").count():
            meta = page.inner_text(f"#field-{predictor['name']}-meta")
            assert predictor["unit"] in meta and " to " in meta, meta
            assert page.get_attribute(f"#field-{predictor['name']}", "max") is not None
        if page.locator(f"#field-{predictor['name']}").count():
            label = page.inner_text(f'.field[data-field="{predictor["name"]}"] label')
            assert label.startswith(info["labels"]["predictors"][predictor["name"]]["label"]), label
    marked = page.eval_on_selector_all(".field .required-mark", "marks => marks.length")
    _, document, _ = live_server.call("/openapi.json", key=None)
    assert marked == len(document["components"]["schemas"]["SampleSinglePatient"]["required"])

    # The example patient of the request model: the page shows the API's answer for the body it sent.
    patient = request_example(live_server, "SampleSinglePatient")
    fill_patient(page, patient)
    state, sent = submit(page, f"{SINGLE_ROUTE}/predict")
    assert state == "result", page.inner_text("#form-error")
    assert {k: v for k, v in sent.items() if k != "explain"} == patient
    status, answer, _ = live_server.call(f"{SINGLE_ROUTE}/predict", sent, key=live_server.key)
    assert status == 200
    assert_shown_answer(page, answer)
    for name, words in info["labels"]["endpoints"].items():  # the task spec's words, not the page's own
        assert page.inner_text(f'#risk-table tr[data-endpoint="{name}"] th').startswith(words["title"])
    explained = info["labels"]["endpoints"][answer["contributions"]["endpoint"]]
    assert f"the probability of {explained['phrase']} by" in page.inner_text("#waterfall-caption")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert_png(SCREENSHOT)

    # A value out of range passes the browser (the form does not validate) and comes back beside its field.
    page.fill("#field-age_years", "150")
    assert page.is_visible("#stale-note")  # the shown estimate no longer matches the fields
    state, sent = submit(page, f"{SINGLE_ROUTE}/predict")
    assert state == "invalid"
    status, refusal, _ = live_server.call(f"{SINGLE_ROUTE}/predict", sent, key=live_server.key)
    assert status == 422
    reasons = [f["reason"] for f in refusal["fields"] if f["location"] == "body.age_years"]
    assert reasons and page.inner_text("#error-age_years") == "; ".join(reasons)
    assert "invalid" in page.get_attribute('.field[data-field="age_years"]', "class")
    assert page.get_attribute("#field-age_years", "aria-invalid") == "true"
    assert page.inner_text("#error-treatment_years") == ""  # only the field that caused it
    assert page.is_hidden("#results")  # no stale estimate beside a refused patient
    page.screenshot(path=str(ARTIFACTS / "risk-calculator-error.png"), full_page=True)

    # A cross-field rule is shown beside the field the service names.
    page.fill("#field-age_years", str(patient["age_years"]))
    page.fill("#field-response_years", str(float(patient["treatment_years"]) + 1))
    state, sent = submit(page, f"{SINGLE_ROUTE}/predict")
    assert state == "invalid"
    _, refusal, _ = live_server.call(f"{SINGLE_ROUTE}/predict", sent, key=live_server.key)
    field = refusal["fields"][0]
    assert page.inner_text(f"#error-{field['location'].removeprefix('body.')}") == field["reason"]


def test_a_competing_risk_answer_is_shown_for_every_endpoint(page, live_server):
    assert open_with_key(page, live_server, live_server.key) == "ready"
    page.select_option("#task-select", COMPETING)
    assert settle(page) == "ready"
    assert "causes compete" in page.inner_text("#intended-use")
    patient = request_example(live_server, "SampleCompetingPatient")
    fill_patient(page, patient)
    state, sent = submit(page, f"{COMPETING_ROUTE}/predict")
    assert state == "result", page.inner_text("#form-error")
    status, answer, _ = live_server.call(f"{COMPETING_ROUTE}/predict", sent, key=live_server.key)
    assert status == 200 and set(answer["endpoints"]) == {"relapse", "nrm", "event_free"}
    assert_shown_answer(page, answer)
    page.screenshot(path=str(ARTIFACTS / "risk-calculator-competing.png"), full_page=True)


def test_a_wrong_key_is_asked_for_again(page, live_server):
    assert open_with_key(page, live_server, "not-a-key-0000000000") == "needs-key"
    assert "refused" in page.inner_text("#key-message")
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    assert open_with_key(page, live_server, live_server.key) == "ready"
    assert page.evaluate("Object.keys(sessionStorage)") == ["relapse-risk-api-key"]
