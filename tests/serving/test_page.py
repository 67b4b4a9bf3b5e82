"""The risk-calculator page in process: `/` and its assets come from the bare app, load nothing from outside, and
`AppFirst` keeps `/` ours in front of a router that has its own `/` (as BentoML's has)."""

import re

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from features.tasks import TASKS
from serving.api import create_app
from serving.champions import ChampionRegistry
from serving.middleware import AppFirst
from serving.page import ASSETS_PATH, STATIC
from tests.sample_tasks import SINGLE_ROUTE

# XML namespace names are identifiers that a browser never fetches; no other URL may appear in the page's files.
NAMESPACES = {"http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The bare app with no champion at all: the page itself needs none."""
    return create_app(ChampionRegistry(tmp_path_factory.mktemp("no_models"), list(TASKS)), {"local": "k" * 20})


def test_root_serves_the_page_with_a_strict_content_policy(app):
    response = TestClient(app).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Relapse-risk calculator</title>" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "googletagmanager" not in response.text.lower()


def test_every_asset_the_page_names_is_served(app):
    client = TestClient(app)
    page = client.get("/").text
    named = re.findall(r'(?:src|href)="([^"]+)"', page)
    assets = [name for name in named if not name.startswith("data:")]
    assert not [name for name in assets if name.startswith(("//", "http:", "https:", "/"))], assets  # same origin
    assert {"calculator/calculator.js", "calculator/calculator.css"} <= set(assets)
    for name in assets:
        response = client.get("/" + name)
        assert response.status_code == 200, name
    assert client.get(f"{ASSETS_PATH}/calculator.js").headers["content-type"].startswith("text/javascript")
    assert client.get(f"{ASSETS_PATH}/calculator.css").headers["content-type"].startswith("text/css")
    assert client.get(f"{ASSETS_PATH}/missing.js").status_code == 404


def test_assets_name_no_external_url():
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "calculator.js", "calculator.css"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"https?://[^\s\"'`)<>]+", text, flags=re.IGNORECASE))
        assert urls <= NAMESPACES, f"{path.name} names {sorted(urls - NAMESPACES)}"
        assert "@import" not in text and "url(" not in text.replace('url("data:', ""), path.name


def test_the_page_needs_no_key_and_stays_out_of_the_api_document(app):
    client = TestClient(app)
    assert client.get("/").status_code == 200  # the page asks for the key itself
    assert client.get(f"{SINGLE_ROUTE}/model").status_code == 401
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith(ASSETS_PATH) for p in paths)


def test_app_first_answers_root_before_a_router_with_its_own_index(app):
    async def bento_index(_):
        return PlainTextResponse("bentoml index with a tag manager")

    async def probe(_):
        return PlainTextResponse("bentoml probe")

    router = Starlette(routes=[Route("/", bento_index), Route("/livez", probe)])
    client = TestClient(AppFirst(router, own_app=app))
    assert "Relapse-risk calculator" in client.get("/").text
    assert client.get(f"{ASSETS_PATH}/calculator.js").status_code == 200
    assert client.get("/livez").text == "bentoml probe"  # BentoML keeps its probes
    assert TestClient(router).get("/").text.startswith("bentoml index")  # what AppFirst is there for


def test_the_service_adds_app_first_around_bentoml():
    import serving.service as service

    assert (AppFirst, {"own_app": service.app}) in service.RelapseRiskService.middlewares
