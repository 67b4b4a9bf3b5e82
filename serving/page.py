"""The risk-calculator page at `GET /`: one HTML file, a script and a style sheet shipped in `serving/static/`.

No build step, no CDN, no external request: the page reads the OpenAPI document (open) to find the tasks and their
request models, then `/v1/<task>/model` with the API key the clinician enters (kept in sessionStorage): its `use`
and `labels` fields give the intended use and every word the page shows about the task (endpoint titles and
phrases, predictor labels and units), from the task spec. It draws the curves and the contributions' waterfall as
inline SVG.

BentoML adds its own index page at `/` (with a Google Tag Manager snippet) to the server's router. `AppFirst`
(serving/middleware.py), which the service adds with `add_asgi_middleware`, hands every request but BentoML's probes
straight to our app, so the page does not depend on the order of BentoML's routes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/calculator"
PAGE_HEADERS = {
    # The page may load nothing but its own files and call nothing but this service.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_page(app: FastAPI) -> None:
    """`GET /` (the page) and `GET /calculator/<file>` (its script and style sheet)."""
    index = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(index, headers=PAGE_HEADERS)

    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC), name="calculator")

