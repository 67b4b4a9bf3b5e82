"""The HTTP layer: a FastAPI app (mounted in the BentoML service) with one answer and one error shape.

Every 4xx body is `{"code", "message", "fields": [{"location", "reason"}]}`; rejected values are never echoed
or logged. `/v1/...` and `/admin/...` routes need `Authorization: Bearer <key>`; health routes stay open.
Answers come from `risk_model.prediction.predict_patients`, the one prediction path (also behind `make score`).
"""


import os
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, WithJsonSchema, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from features.task_schema import TaskSchema
from features.tasks import TASKS
from risk_model.answers import WARNING_CODES, ExplanationAnswer, PredictionAnswer, StopTimingAnswer
from risk_model.bundle import ModelBundle
from risk_model.prediction import explain_patient, predict_patients
from risk_model.process_memory import release_freed_memory
from risk_model.stop_timing import STATEMENT, StopTimingSettings, stop_timing
from risk_model.wording import intended_use, model_labels
from serving.answers import (
    MAX_BATCH_BODY_BYTES,
    MAX_BATCH_PATIENTS,
    MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS,
    MAX_BODY_BYTES,
    MAX_ECHOED_NAME_CHARS,
    BatchItem,
    BatchResult,
    ErrorBody,
    ModelInfo,
    ReloadReport,
    error,
)
from serving.audit import AuditTrail
from serving.champions import ChampionRegistry, LoadedChampion
from serving.metrics import exposition, service_metrics
from serving.middleware import METRICS_PATH, NOT_FOUND, PROTECTED_PREFIXES, AccessSettings, ServiceMiddleware
from serving.page import add_page
from serving.request_models import patient_request_model

# The 4xx/5xx answers each kind of route can give, all in the error shape.
_ERRORS = {401: "missing or wrong API key", 403: "the key lacks the role this route needs (`admin` for /admin)",
           408: "the body did not arrive within the stated time",
           413: "request body over the route's size limit (the message states it)",
           422: "invalid request: each bad field and why (values are never echoed)",
           404: "the champion has no model card", 503: "no champion model loaded for this task"}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _ERRORS[status]} for status in statuses}


def _text(description: str, *extra: int) -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {200: {"description": description,
                                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}
    for status in extra:
        answers[status] = {"description": "not ready: a task's champion is not loaded",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}
    return answers


DESCRIPTION = """
Individual relapse-risk estimates from registry-trained survival models: the probability of each endpoint at
the clinical horizons, monthly curves, a risk group, contributions in percentage points and warnings.

**Authentication.** Every `/v1` route needs `Authorization: Bearer <key>` of a key with the role `predict`, every
`/admin` route one with the role `admin` (keys: `key_id:key[:roles]` lines in the file named by `API_KEYS_FILE`;
401 without a known key, 403 without the role). Health routes (`/livez`, `/readyz`, `/healthz`) are open;
`/metrics` is {metrics}.

**Errors.** Every 4xx (and the 503 without a model) answers `{{"code", "message", "fields": [{{"location",
"reason"}}]}}`, unknown paths and methods included; a rejected value is never echoed, and a field name the
schema does not know is echoed cut to {MAX_ECHOED_NAME_CHARS} characters. Every answer of these routes carries an
`X-Request-ID` header, which the audit trail records beside the key id, the model and a keyed digest of the input
(never a patient value).

**Limits.** Request bodies: {MAX_BODY_BYTES} bytes ({MAX_BATCH_BODY_BYTES} for `predict-batch`; 413 past it),
arriving whole within {body_timeout} s of the request (408 past it, for instance a body shorter than its
Content-Length). Batches: at most {MAX_BATCH_PATIENTS} patients, or {MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS} with
`include_contributions` (422 past it).

**Units.** Event times and horizons in months; treatment and response durations in years; BCR-ABL1 halving
time in days; MRD as log10 of the leukaemic-cell fraction. Probabilities lie in [0, 1]; contributions are in
percentage points.

**Warnings** (the answer stands, but treat it with caution):
"""
_METRICS_ACCESS = {"open": "open", "key": "served only to a key with the role `metrics` or `admin`",
                   "off": "not served"}


def _description(settings: AccessSettings) -> str:
    return DESCRIPTION.format(
        metrics=_METRICS_ACCESS[settings.metrics], body_timeout=f"{settings.body_timeout_seconds:g}",
        MAX_BODY_BYTES=MAX_BODY_BYTES, MAX_BATCH_BODY_BYTES=MAX_BATCH_BODY_BYTES,
        MAX_BATCH_PATIENTS=MAX_BATCH_PATIENTS, MAX_ECHOED_NAME_CHARS=MAX_ECHOED_NAME_CHARS,
        MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS=MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS,
    ) + "\n".join(f"- `{code}`: {text}" for code, text in WARNING_CODES.items())


def _swagger_assets() -> Path | None:
    """Swagger UI's files as shipped inside the bentoml package (the page needs no CDN)."""
    try:
        import bentoml._internal.server as bentoml_server
    except ImportError:  # pragma: no cover - bentoml is a dependency
        return None
    folder = Path(bentoml_server.__file__).parent / "static_content"
    return folder if (folder / "swagger-ui-bundle.js").exists() else None


# --- request preparation shared by /predict and /predict-batch -----------------------------------------------

def _echoed(part: Any) -> str:
    """A part of a location; a name a client made up (an unknown field) is cut to a stated length."""
    text = str(part)
    return text if len(text) <= MAX_ECHOED_NAME_CHARS else text[:MAX_ECHOED_NAME_CHARS] + "…"


def _location(loc: tuple[Any, ...] | list[Any], prefix: str = "", issue: dict[str, Any] | None = None) -> str:
    if issue is not None and issue.get("type") == "json_invalid":
        return prefix or "body"  # its loc ends with a character offset, which would read as a field name
    return ".".join([prefix, *(_echoed(part) for part in loc)] if prefix else [_echoed(p) for p in loc]) or "body"


def _reason(issue: dict[str, Any]) -> str:
    if issue.get("type") == "json_invalid":
        loc = issue.get("loc") or ()
        what = str((issue.get("ctx") or {}).get("error") or "syntax error").lower()
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return f"body is not valid JSON ({what}{where})"
    return str(issue.get("msg", "invalid value"))


def prepare_patients(schema: TaskSchema, requests: list[dict[str, Any]]
                     ) -> list[tuple[dict[str, Any] | None, list[dict[str, str]]]]:
    """For each validated request: its predictors (derived ones computed by the schema's own functions, as in
    training) or the cross-field rules it breaks, as (predictors, []) or (None, problems). One request, when the
    task registers one-record versions of its rules and derived predictors, is prepared without pandas (a one-row
    frame cost milliseconds of fixed overhead); the same answers either way (tests/features/test_record_rules.py)."""
    if len(requests) == 1 and schema.prepares_records:
        return [_prepare_record(schema, requests[0])]
    return _prepare_frame(schema, requests)


def _prepare_frame(schema: TaskSchema, requests: list[dict[str, Any]]
                   ) -> list[tuple[dict[str, Any] | None, list[dict[str, str]]]]:
    """`prepare_patients` through one DataFrame of the requests (the rules and derived predictors as files run)."""
    frame = schema.add_derived(pd.DataFrame(requests))
    # A rule holds where it says so; a missing value never breaks a rule (NaN counts as holding).
    failing = [(rule, ~rule.holds(frame).fillna(True).astype(bool).to_numpy()) for rule in schema.cross_field_rules]
    derived = [name for name, _ in schema.derived_predictors]
    prepared = []
    for row, request in enumerate(requests):
        problems = [{"location": f"body.{rule.columns[0]}", "reason": rule.name} for rule, bad in failing if bad[row]]
        if problems:
            prepared.append((None, problems))
            continue
        values = {**request, **{name: _derived_value(frame[name].iloc[row]) for name in derived}}
        prepared.append(({p.name: values.get(p.name) for p in schema.predictors}, []))
    return prepared


def _prepare_record(schema: TaskSchema, request: dict[str, Any]
                    ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    values, broken = schema.prepare_record(request)
    if broken:
        return None, [{"location": f"body.{rule.columns[0]}", "reason": rule.name} for rule in broken]
    values.update({name: _derived_value(values[name]) for name, _ in schema.derived_predictors})
    return {p.name: values.get(p.name) for p in schema.predictors}, []


def _derived_value(value: Any) -> Any:
    """A derived predictor as the request would carry it: a number as float, a category as its text."""
    if value is None or pd.isna(value):
        return None
    return value if isinstance(value, str) else float(value)


def _explain_options(request: BaseModel) -> tuple[str | None, float | None]:
    explain = getattr(request, "explain", None)
    return (explain.endpoint, explain.horizon_months) if explain else (None, None)


# --- the app -------------------------------------------------------------------------------------------

def create_app(champions: ChampionRegistry, keys: dict[str, str], audit: AuditTrail | None = None,
               roles: dict[str, frozenset[str]] | None = None, settings: AccessSettings | None = None) -> FastAPI:
    """`keys` and `roles` (key id -> roles; `predict` for a key not in it) are read at each request, so a service
    may fill them after building the app. Without `audit` no audit line is written (the service always passes
    one). `settings` default to METRICS_ACCESS and REQUEST_BODY_TIMEOUT_SECONDS from the environment."""
    settings = settings or AccessSettings.from_env()
    app = FastAPI(title="Relapse-risk prediction service", description=_description(settings), version="1",
                  docs_url=None, redoc_url=None,
                  openapi_tags=[{"name": "health", "description": "open: liveness, readiness, Prometheus metrics"},
                                {"name": "admin", "description": "operations (API key needed)"},
                                *({"name": t.schema.task, "description": t.schema.title} for t in TASKS.values())])
    app.state.champions = champions
    # One batch computes at a time in a worker: its arrays (members x patients x event times) and its answer
    # objects are the largest the service makes, and eight 1,000-patient all_hsct batches at once took the worker
    # to 822 MiB. The others wait their turn; the CPU they would share is the same.
    app.state.batch_slot = threading.Semaphore(1)
    app.add_middleware(ServiceMiddleware, keys=keys, routes=app.router.routes, audit=audit, roles=roles,
                       settings=settings)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        fields = [{"location": _location(issue.get("loc", ()), issue=issue), "reason": _reason(issue)}
                  for issue in exc.errors()]
        return error(422, "invalid_request", f"{len(fields)} field(s) failed validation", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # a body FastAPI cannot parse (e.g. not UTF-8): the error contract says 422
            return error(422, "invalid_request", "the body could not be parsed",
                         [{"location": "body", "reason": "body is not valid JSON (UTF-8)"}])
        code, message = {404: ("not_found", NOT_FOUND), 405: ("method_not_allowed", "this route does not take "
                                                           "this method (the Allow header lists those it takes)")
                         }.get(exc.status_code, ("http_error", str(exc.detail)))
        return error(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    _add_operational_routes(app, champions)
    add_page(app)  # the risk-calculator page at / and its assets
    for task in TASKS.values():
        _add_task_routes(app, champions, task.schema, task.routes, task.spec.routes if task.spec else {})

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the API-key scheme on every route that needs it."""
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes, tags=app.openapi_tags)
            document.setdefault("components", {})["securitySchemes"] = {"apiKey": {
                "type": "http", "scheme": "bearer", "description": "an API key: the `key` of a `key_id:key[:roles]` "
                                                                  "line in the file named by API_KEYS_FILE"}}
            if settings.metrics == "off":
                document["paths"].pop(METRICS_PATH, None)
            for path, operations in document["paths"].items():
                keyed = path.startswith(PROTECTED_PREFIXES) or (path == METRICS_PATH and settings.metrics == "key")
                for method, operation in operations.items():
                    if keyed:
                        operation["security"] = [{"apiKey": []}]
                    # Answered by the middleware for every route: a key without the role, a body that never came.
                    for status in ((401, 403) if keyed else ()) + ((408,) if method in ("post", "put") else ()):
                        operation["responses"].setdefault(str(status), _error_response(status))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_operational_routes(app: FastAPI, champions: ChampionRegistry) -> None:
    # On the real server BentoML answers GET /livez, /healthz and /readyz itself (the service's __is_ready__ hook
    # gives /readyz the same meaning); these serve the bare app and document the routes. /metrics is always ours.
    @app.get("/livez", tags=["health"], summary="liveness: the process answers", response_class=PlainTextResponse,
             responses=_text("alive"))
    def livez() -> str:
        return "\n"

    @app.get("/healthz", tags=["health"], summary="liveness (alias of /livez)", response_class=PlainTextResponse,
             responses=_text("alive"))
    def healthz() -> str:
        return "\n"

    @app.get("/readyz", tags=["health"], response_class=PlainTextResponse, responses=_text("ready", 503),
             summary="readiness: every task that has a champion has it loaded")
    def readyz() -> Response:
        if champions.ready():
            return PlainTextResponse("\n")
        return PlainTextResponse("not ready: a task with a champion has no model loaded\n", status_code=503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             responses=_text("Prometheus text format: relapse_risk_request_duration_seconds (per route), "
                             "relapse_risk_requests_in_progress, relapse_risk_predictions_total (per task and "
                             "model version), relapse_risk_prediction_warnings_total, "
                             "relapse_risk_model_reloads_total"),
             summary="Prometheus metrics (open, behind a key or off: METRICS_ACCESS)")
    def metrics() -> Response:
        content, media_type = exposition()
        return Response(content, media_type=media_type)

    assets = _swagger_assets()
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title,
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-light-32x32.png")

    @app.post("/admin/reload", tags=["admin"], response_model=ReloadReport, responses=_responses(401, 403, 413),
              summary="check champion.json now and load a new champion; a broken one leaves the old serving")
    def reload(request: Request) -> Any:
        reports = champions.refresh(force=True)
        service_metrics().count_reloads(reports)
        request.state.audit = {"reload": {r["task"]: r["status"] for r in reports}}
        return {"worker_pid": os.getpid(), "tasks": reports}


def _add_task_routes(app: FastAPI, champions: ChampionRegistry, schema: TaskSchema, routes: tuple[str, ...] = (),
                     route_settings: dict[str, dict[str, Any]] | None = None) -> None:
    # One-patient routes are `async`: their work (about a millisecond of numpy) runs on the event loop instead of
    # hopping to a thread pool, which cost latency and, at 32 concurrent clients, ~50 MB of per-thread buffers.
    # The batch route stays a plain function (a thread) so a long batch does not hold up other requests.
    slug = schema.task.replace("_", "-")
    request_model = patient_request_model(schema, not_learned=lambda: champions.not_learned(schema.task))
    batch_model = _batch_request_model(schema, request_model)

    def champion() -> tuple[LoadedChampion | None, Response | None]:
        loaded = champions.get(schema.task)
        if loaded is None:
            return None, error(503, "no_model", f"no champion for {schema.task}: run `make train TASK={schema.task}`")
        return loaded, None

    def note(request: Request, loaded: LoadedChampion, **extra: Any) -> None:
        identity = loaded.identity
        request.state.audit = {"model": {k: identity[k] for k in ("name", "version", "run_id")}, **extra}

    def one_patient(patient: BaseModel, request: Request, allowed_query: set[str] | frozenset[str] = frozenset()
                    ) -> tuple[LoadedChampion | None, dict[str, Any] | None, Response | None]:
        """The champion and the patient's predictors (derived ones computed), or the error answer."""
        failure = _unknown_query(request, allowed_query)
        if failure:
            return None, None, failure
        loaded, failure = champion()
        if failure:
            return None, None, failure
        note(request, loaded)
        [(predictors, problems)] = prepare_patients(schema, [patient.model_dump(exclude={"explain"})])
        problems = problems or loaded.bundle.unseen_stratum_problems(predictors)
        if problems:
            return None, None, error(422, "invalid_request", f"{len(problems)} field(s) failed validation", problems)
        return loaded, predictors, None

    @app.post(f"/v1/{slug}/predict", response_model=PredictionAnswer, tags=[schema.task],
              responses=_responses(401, 413, 422, 503), name=f"predict_{schema.task}",
              summary=f"{schema.title}: one patient's risk at each horizon, curves, contributions and warnings")
    async def predict(patient: request_model, request: Request,  # type: ignore[valid-type]
                contributions: Annotated[bool, Query(description="false: answer without contributions (faster; "
                                                                 "`contributions` is null)")] = True) -> Any:
        loaded, predictors, failure = one_patient(patient, request, allowed_query={"contributions"})
        if failure:
            return failure
        [answer] = predict_patients(loaded.bundle, [predictors], explain=[_explain_options(patient)],
                                    with_contributions=contributions, model_identity=loaded.identity)
        service_metrics().count_answers(f"/v1/{slug}/predict", [answer])
        return _answer(answer)

    @app.post(f"/v1/{slug}/predict-batch", response_model=BatchResult, tags=[schema.task],
              responses=_responses(401, 413, 422, 503), name=f"predict_batch_{schema.task}",
              summary=f"{schema.title}: up to {MAX_BATCH_PATIENTS} patients, each validated on its own",
              description=f"Each patient is the body of `/v1/{slug}/predict`. A patient that fails validation gets "
                          "its own error entry and does not spoil the others; the request fails as a whole (422) "
                          f"only when it is not a list of 1 to {MAX_BATCH_PATIENTS} patients "
                          f"({MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS} with `include_contributions`).")
    def predict_batch(batch: batch_model, request: Request) -> Any:  # type: ignore[valid-type]
        loaded, failure = champion()
        if failure:
            return failure
        if batch.include_contributions and len(batch.patients) > MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS:
            return error(422, "too_many_patients",
                         f"at most {MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS} patients per request with "
                         f"include_contributions (at most {MAX_BATCH_PATIENTS} without)",
                         [{"location": "body.patients", "reason": f"more than "
                                                                  f"{MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS} patients"}])
        with request.app.state.batch_slot:  # the answers live only inside: what leaves is their JSON
            response = batch_answer(batch, request, loaded)
        release_freed_memory()
        return response

    def batch_answer(batch: BaseModel, request: Request, loaded: LoadedChampion) -> Response:
        results, valid = _validate_batch(schema, request_model, batch.patients, loaded.bundle)
        answers = predict_patients(loaded.bundle, [v[1] for v in valid], explain=[v[2] for v in valid],
                                   with_contributions=batch.include_contributions, model_identity=loaded.identity)
        for (index, _, _), answer in zip(valid, answers, strict=True):
            results[index] = BatchItem(index=index, answer=answer, error=None)
        service_metrics().count_answers(f"/v1/{slug}/predict-batch", answers)
        note(request, loaded, patients=len(results), patient_errors=len(results) - len(answers))
        return _answer(BatchResult(task=schema.task, model=loaded.identity, count=len(results),
                                   succeeded=len(answers), failed=len(results) - len(answers), results=results))

    @app.get(f"/v1/{slug}/model", response_model=ModelInfo, tags=[schema.task], name=f"model_{schema.task}",
             responses=_responses(401, 503),
             summary="identity, training date, lineage, horizons, validated metrics, warning thresholds, schema, "
                     "intended use and the labels every surface shows")
    def model_info(request: Request) -> Any:
        loaded, failure = champion()
        if failure:
            return failure
        note(request, loaded)
        bundle = loaded.bundle
        reference = getattr(bundle, "ood_reference", None) or {}
        return {"model": loaded.identity, "trained_at": getattr(bundle, "trained_at", None),
                "exported_at": loaded.pointer.get("exported_at"), "data_digest": loaded.pointer.get("data_digest"),
                "horizons_months": bundle.horizons_months, "main_horizon_months": bundle.main_horizon_months,
                "metrics": bundle.metrics, "lineage": bundle.lineage,
                "out_of_distribution": {key: reference.get(key) for key in (
                    "distance", "distance_threshold", "distance_quantile", "min_imputed_predictors",
                    "usually_observed_share")},
                "warning_codes": WARNING_CODES, "schema": bundle.schema, "use": intended_use(bundle.schema),
                "labels": model_labels(bundle.schema)}

    card_content = {"description": "the model card", "content": {
        "text/markdown": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}}}

    @app.get(f"/v1/{slug}/model-card", tags=[schema.task], name=f"model_card_{schema.task}",
             response_class=Response, responses={200: card_content, **_responses(401, 404, 503)},
             summary="the champion's model card (markdown; ?format=html)")
    def model_card(request: Request, format: Literal["markdown", "html"] = "markdown") -> Any:
        failure = _unknown_query(request, {"format"})
        if failure:
            return failure
        loaded, failure = champion()
        if failure:
            return failure
        note(request, loaded)
        card = getattr(loaded.bundle, "model_card", None) or {}
        if not card:
            return error(404, "no_model_card", f"{schema.task} version {loaded.pointer['version']} has no model card")
        return Response(card[format], media_type=f"text/{'html' if format == 'html' else 'markdown'}; charset=utf-8")

    _add_explain_route(app, one_patient, request_model, schema)
    if "stop_timing" in routes:  # a task route its folder registers (tasks/<task>/__init__.py)
        settings = StopTimingSettings.model_validate((route_settings or {}).get("stop_timing", {}))
        _add_stop_timing_route(app, one_patient, request_model, schema, settings)


def _answer(answer: BaseModel) -> Response:
    """The typed answer as JSON, serialised by pydantic itself: the prediction path built it as the response
    model, so FastAPI's second validation (which cost more than the prediction for 61-point curves) is skipped."""
    return Response(answer.model_dump_json(), media_type="application/json")


def _unknown_query(request: Request, allowed: set[str] | frozenset[str]) -> Response | None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if not unknown:
        return None
    only = ", ".join(f"`{name}`" for name in sorted(allowed)) or "none"
    return error(422, "invalid_request", "unknown query parameter(s)",
                 [{"location": "query", "reason": f"{len(unknown)} unknown parameter(s); allowed: {only}"}])


def _wants_png(request: Request) -> bool:
    """`Accept: image/png` (alone or preferred over JSON) asks for the waterfall chart."""
    accept = request.headers.get("accept", "").lower()
    return "image/png" in accept and ("application/json" not in accept
                                      or accept.index("image/png") < accept.index("application/json"))


def _add_explain_route(app: FastAPI, one_patient: Any, request_model: type[BaseModel], schema: TaskSchema) -> None:
    """Every predictor's contribution to one endpoint at one horizon; a waterfall PNG with `Accept: image/png`."""
    slug = schema.task.replace("_", "-")
    content = {200: {"description": "the explanation (JSON), or its waterfall chart with `Accept: image/png`",
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExplanationAnswer"}},
                                 "image/png": {"schema": {"type": "string", "format": "binary"}}}}}

    @app.post(f"/v1/{slug}/explain", tags=[schema.task], name=f"explain_{schema.task}",
              response_model=ExplanationAnswer, responses={**content, **_responses(401, 413, 422, 503)},
              summary=f"{schema.title}: why this estimate — every predictor's contribution in percentage points",
              description="The patient as for /predict; `explain: {endpoint, horizon_months}` chooses the explained "
                          "probability (default: the first endpoint at the main horizon). Contributions are "
                          "interventional Shapley values of the probability against a background of synthetic "
                          "patients that reproduce the training cohort (base_value is its mean prediction); they add "
                          "up to 100 x (probability - base_value). "
                          "Send `Accept: image/png` for a waterfall chart of the same numbers.")
    async def explain(patient: request_model, request: Request) -> Any:  # type: ignore[valid-type]
        loaded, predictors, failure = one_patient(patient, request)
        if failure:
            return failure
        endpoint, horizon = _explain_options(patient)
        explanation = explain_patient(loaded.bundle, predictors, endpoint, horizon, model_identity=loaded.identity)
        service_metrics().count_answers(f"/v1/{slug}/explain", [explanation])
        if _wants_png(request):
            from serving.waterfall import waterfall_png

            # The chart prints the warnings too; the header gives their codes (never values) to a program.
            codes = ",".join(dict.fromkeys(w.code for w in explanation.warnings))
            return Response(waterfall_png(explanation.model_dump(mode="json")), media_type="image/png",
                            headers={"X-Warning-Codes": codes})
        return _answer(explanation)


def _add_stop_timing_route(app: FastAPI, one_patient: Any, request_model: type[BaseModel], schema: TaskSchema,
                           settings: StopTimingSettings) -> None:
    """Relapse risk if the TKI is stopped now or after more months of deep response, each later stop paired with
    stopping now; the delays, horizons and margin come from the task spec's `[routes.stop_timing]`."""
    slug = schema.task.replace("_", "-")
    later = ", ".join(str(d) for d in settings.delays_months[1:])
    horizons = " and ".join(str(h) for h in settings.risk_horizons_months)

    @app.post(f"/v1/{slug}/stop-timing", tags=[schema.task], name=f"stop_timing_{schema.task}",
              response_model=StopTimingAnswer, responses=_responses(401, 413, 422, 503),
              summary=f"projected relapse risk {horizons} months after stopping now or after {later} more months",
              description=f"The patient as for /predict, still on TKI and in deep molecular response (durations "
                          f"and age as of today). Each option gives its risk with a 95 % interval and its "
                          f"difference from stopping now, paired within each bootstrap replicate (percentile "
                          f"interval). A later stop is called better only when the paired interval at "
                          f"{settings.decision_horizon_months} months lies below zero and the reduction exceeds "
                          f"{settings.margin_percentage_points:g} percentage points. `warnings` are those /predict "
                          f"gives this patient; each option carries its projected patient's own. An option whose "
                          f"projection leaves the schema's ranges is not offered (`offered: false`, a "
                          f"`projection_outside_schema_range` warning). {STATEMENT}")
    async def stop_timing_route(patient: request_model, request: Request) -> Any:  # type: ignore[valid-type]
        loaded, predictors, failure = one_patient(patient, request)
        if failure:
            return failure
        answer = stop_timing(loaded.bundle, predictors, settings, model_identity=loaded.identity)
        service_metrics().count_answers(f"/v1/{slug}/stop-timing", [answer])
        return _answer(answer)


def _batch_request_model(schema: TaskSchema, request_model: type[BaseModel]) -> type[BaseModel]:
    """The batch body. Items are taken as any JSON value and validated one by one (so one bad patient cannot
    spoil the others); the OpenAPI document shows them as the patient model."""
    item = Annotated[Any, WithJsonSchema({"$ref": f"#/components/schemas/{request_model.__name__}"})]
    example = (request_model.model_json_schema().get("examples") or [{}])[0]
    return create_model(
        request_model.__name__.removesuffix("Patient") + "Batch",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{"patients": [example, example],
                                                                               "include_contributions": False}]}),
        patients=(list[item], Field(..., min_length=1, max_length=MAX_BATCH_PATIENTS,
                                    description=f"1 to {MAX_BATCH_PATIENTS} patients, each as the body of "
                                                f"/predict ({MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS} with "
                                                "include_contributions)")),
        include_contributions=(StrictBool, Field(False, description="add each patient's contributions (slower; "
                                                                    "otherwise `contributions` is null)")),
    )


def _validate_batch(schema: TaskSchema, request_model: type[BaseModel], patients: list[Any], bundle: ModelBundle
                    ) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any], tuple[Any, Any]]]]:
    """Each patient on its own: results holds an error item for each refused one (a stratum the model never
    saw included); valid lists (index, predictors, explain options) for the others."""
    results: list[dict[str, Any]] = [{}] * len(patients)
    parsed: list[tuple[int, BaseModel]] = []
    for index, item in enumerate(patients):
        try:
            parsed.append((index, request_model.model_validate(item)))
        except ValidationError as exc:
            fields = [{"location": _location(issue["loc"], f"body.patients.{index}", issue), "reason": _reason(issue)}
                      for issue in exc.errors(include_url=False, include_input=False)]
            results[index] = _item_error(index, fields)
    prepared = prepare_patients(schema, [p.model_dump(exclude={"explain"}) for _, p in parsed]) if parsed else []
    valid = []
    for (index, patient), (predictors, problems) in zip(parsed, prepared, strict=True):
        problems = problems or bundle.unseen_stratum_problems(predictors)
        if problems:
            fields = [{**p, "location": p["location"].replace("body.", f"body.patients.{index}.", 1)}
                      for p in problems]
            results[index] = _item_error(index, fields)
        else:
            valid.append((index, predictors, _explain_options(patient)))
    return results, valid


def _item_error(index: int, fields: list[dict[str, str]]) -> dict[str, Any]:
    return {"index": index, "answer": None,
            "error": {"code": "invalid_request", "message": f"patient {index}: {len(fields)} field(s) failed "
                                                            "validation", "fields": fields}}
