"""The HTTP layer: a FastAPI app (mounted in the BentoML service) with one answer and one error shape.

Every 4xx body is `{"code", "message", "fields": [{"location", "reason"}]}`; rejected values are never echoed
or logged. `/v1/...` routes need `Authorization: Bearer <key>`; health routes stay open.
"""


from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.task_schema import TaskSchema
from features.tasks import TASKS
from serving.auth import key_id_for
from serving.champions import ChampionRegistry
from serving.request_models import patient_request_model
from training.prediction import predict_patient

MAX_BODY_BYTES = 64 * 1024


# --- answer and error shapes (clarifications §6) ------------------------------------------------------

class FieldError(BaseModel):
    location: str = Field(description="where the problem is, e.g. body.age_at_stop_years")
    reason: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class HorizonEstimate(BaseModel):
    months: int
    probability: float | None = Field(description="in [0, 1]; null past the training follow-up")
    lower: float | None = Field(None, description="95 % interval lower bound (null: not yet available)")
    upper: float | None = None


class Curve(BaseModel):
    months: list[int]
    probability: list[float]


class Endpoint(BaseModel):
    kind: str = Field(description='"incidence" (probability of the event) or "survival" (of staying event-free)')
    horizons: list[HorizonEstimate]
    curve: Curve


class RiskGroup(BaseModel):
    label: str
    horizon_months: int
    cut_points: list[float] = Field(description="training tertiles of risk at the main horizon")


class Contribution(BaseModel):
    feature: str
    value: Any = None
    units: str | None = None
    percentage_points: float


class Contributions(BaseModel):
    endpoint: str
    horizon_months: float
    base_value: float = Field(description="background mean probability; items add up to 100 x (p - base)")
    items: list[Contribution]


class ModelIdentity(BaseModel):
    name: str
    version: str
    run_id: str
    family: str


class Warning_(BaseModel):
    code: str
    field: str | None = None
    message: str


class PredictionAnswer(BaseModel):
    task: str
    model: ModelIdentity
    endpoints: dict[str, Endpoint]
    risk_group: RiskGroup
    contributions: Contributions
    interval_method: str | None = None
    warnings: list[Warning_]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((401, "missing or wrong API key"), (413, "request too large"),
                         (422, "invalid request: each bad field and why"), (503, "no champion model loaded"))
}


def error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": message, "fields": fields or []})


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _reason(issue: dict[str, Any]) -> str:
    if issue.get("type") == "json_invalid":
        return "body is not valid JSON"
    return str(issue.get("msg", "invalid value"))


def cross_field_problems(schema: TaskSchema, patient: dict[str, Any]) -> list[dict[str, str]]:
    frame = pd.DataFrame([patient])
    return [{"location": f"body.{rule.columns[0]}", "reason": rule.name}
            for rule in schema.cross_field_rules if not bool(rule.holds(frame).iloc[0])]


def with_derived(schema: TaskSchema, patient: dict[str, Any]) -> dict[str, Any]:
    """The patient with the schema's derived predictors computed by the same functions training used."""
    derived = schema.add_derived(pd.DataFrame([patient]))
    extra = {name: derived[name].iloc[0] for name, _ in schema.derived_predictors}
    return {**patient, **{k: None if pd.isna(v) else float(v) for k, v in extra.items()}}


# --- the app -------------------------------------------------------------------------------------------

def create_app(champions: ChampionRegistry, keys: dict[str, str]) -> FastAPI:
    """`keys` is read at each request, so a service may fill it after building the app."""
    app = FastAPI(title="Relapse-risk prediction service",
                  description="Individual relapse-risk estimates from registry-trained survival models. "
                              "Every /v1 route needs `Authorization: Bearer <key>`.",
                  version="1", responses=ERROR_RESPONSES)
    app.state.champions = champions

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error(413, "request_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        if request.url.path.startswith("/v1") and key_id_for(request.headers.get("authorization"), keys) is None:
            return error(401, "unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
                         [{"location": "header.authorization", "reason": "missing or not a known key"}])
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"location": _location(issue.get("loc", ())), "reason": _reason(issue)}
                  for issue in exc.errors()]
        return error(422, "invalid_request", f"{len(fields)} field(s) failed validation", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail))

    @app.get("/livez", tags=["health"])
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        champions.refresh()
        loaded = sorted(champions.loaded)
        status = 200 if loaded else 503
        return JSONResponse(status_code=status, content={"ready": bool(loaded), "tasks": loaded})

    for task in TASKS.values():
        _add_task_routes(app, champions, task.schema)
    return app


def _add_task_routes(app: FastAPI, champions: ChampionRegistry, schema: TaskSchema) -> None:
    slug = schema.task.replace("_", "-")
    request_model = patient_request_model(schema)

    def champion_or_error() -> Any:
        loaded = champions.get(schema.task)
        if loaded is None:
            return None, error(503, "no_model", f"no champion for {schema.task}: run `make train TASK={schema.task}`")
        return loaded, None

    @app.post(f"/v1/{slug}/predict", response_model=PredictionAnswer, tags=[schema.task],
              summary=f"{schema.title}: one patient's risk at each horizon, curves and contributions",
              name=f"predict_{schema.task}")
    def predict(patient: request_model) -> Any:  # type: ignore[valid-type]
        loaded, failure = champion_or_error()
        if failure:
            return failure
        values = with_derived(schema, patient.model_dump(exclude={"explain"}))
        problems = cross_field_problems(schema, values)
        if problems:
            return error(422, "invalid_request", f"{len(problems)} field(s) failed validation", problems)
        explain = patient.explain
        predictors = {p.name: values[p.name] for p in schema.predictors}
        return predict_patient(
            loaded.bundle, predictors, model_identity=loaded.identity,
            explain_endpoint=explain.endpoint if explain else None,
            explain_horizon_months=explain.horizon_months if explain else None,
        )

    @app.get(f"/v1/{slug}/model", tags=[schema.task], name=f"model_{schema.task}",
             summary="identity, lineage, horizons, validated metrics and schema of the serving champion")
    def model_info() -> Any:
        loaded, failure = champion_or_error()
        if failure:
            return failure
        bundle = loaded.bundle
        return {"model": loaded.identity, "exported_at": loaded.pointer.get("exported_at"),
                "data_digest": loaded.pointer.get("data_digest"), "horizons_months": bundle.horizons_months,
                "main_horizon_months": bundle.main_horizon_months, "metrics": bundle.metrics,
                "lineage": bundle.lineage, "schema": bundle.schema}
