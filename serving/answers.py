"""The service's own shapes (limits, the error body, batch, model information, reload), documented for the OpenAPI
page. The answers of the prediction path are the typed models of `risk_model.answers`, which these build on.

Every 4xx (and the 503 without a model) has one shape: `{"code", "message", "fields": [{"location", "reason"}]}`.
Rejected values are never echoed.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from risk_model.answers import IntendedUse, ModelIdentity, ModelLabels, PredictionAnswer

# Limits, stated in the 413/422 bodies, the OpenAPI document and the README.
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024
MAX_BATCH_PATIENTS = 1000
MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS = 50
# A body must arrive whole within this many seconds (408 otherwise; REQUEST_BODY_TIMEOUT_SECONDS changes it), well
# inside the server's timeout for a whole request (BentoML answers 504 past it).
BODY_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
# Field names a client sent (an unknown field) are echoed in `location` cut to this many characters, then "…".
MAX_ECHOED_NAME_CHARS = 64


def error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": message, "fields": fields or []},
                        headers=headers)


class FieldError(BaseModel):
    location: str = Field(description="where the problem is: `body.<field>`, `body.patients.<i>.<field>` in a "
                                      "batch, `header.authorization`, or `body` for the whole body (a JSON syntax "
                                      "error: its position is in `reason`); a field name the schema does not know "
                                      f"is cut to {MAX_ECHOED_NAME_CHARS} characters and `…`",
                          examples=["body.tki_years"])
    reason: str = Field(description="the rule the value breaks (the value itself is never echoed)",
                        examples=["Input should be less than or equal to 40"])


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "code": "invalid_request", "message": "1 field(s) failed validation",
        "fields": [{"location": "body.tki_years", "reason": "Input should be less than or equal to 40"}]}]})

    code: str = Field(description="machine-readable: invalid_request, unauthorized, forbidden, request_timeout, "
                                  "request_too_large, too_many_patients, no_model, not_found, method_not_allowed, "
                                  "internal_error")
    message: str = Field(description="what went wrong, with the limit when a limit was exceeded")
    fields: list[FieldError] = Field(default_factory=list, description="one entry per bad field (may be empty)")

class BatchItem(BaseModel):
    index: int = Field(description="position of the patient in the request's `patients` list (from 0)", ge=0)
    answer: PredictionAnswer | None = Field(None, description="the answer as /predict gives it (`contributions` "
                                                              "null unless the batch asked for "
                                                              "include_contributions), or null when this patient "
                                                              "was refused")
    error: ErrorBody | None = Field(None, description="why this patient was refused (the others are unaffected)")


class BatchResult(BaseModel):
    task: str
    model: ModelIdentity
    count: int = Field(description="patients received")
    succeeded: int = Field(description="patients answered")
    failed: int = Field(description="patients refused, each with its own error")
    results: list[BatchItem] = Field(description="one item per patient, in request order")

class OutOfDistributionThresholds(BaseModel):
    distance: str | None = Field(None, description="how far_from_training_data is measured")
    distance_threshold: float | None = Field(None, description="distance above which the warning is given")
    distance_quantile: float | None = Field(None, description="training quantile the threshold is")
    min_imputed_predictors: int | None = Field(None, description="imputed predictors that give the warning")
    usually_observed_share: float | None = Field(None, description="a predictor missing from a request counts as "
                                                                   "imputed when at least this share of training "
                                                                   "patients had it")


class ModelInfo(BaseModel):
    model: ModelIdentity
    trained_at: str | None = Field(None, description="UTC time the training run wrote the bundle (ISO 8601; null "
                                                     "for bundles from before it was recorded)")
    exported_at: str | None = Field(None, description="UTC time the version was promoted and exported to serving")
    data_digest: str | None = Field(None, description="digest of the training data")
    horizons_months: list[int]
    main_horizon_months: int
    metrics: dict[str, Any] = Field(description="held-out validated metrics (uno_c, ibs, auc_12m, ...; null when "
                                                "skipped for lack of follow-up)")
    lineage: dict[str, Any] = Field(description="MLflow run, data source, code version, split design")
    out_of_distribution: OutOfDistributionThresholds
    warning_codes: dict[str, str] = Field(description="every warning code an answer may carry, and its meaning")
    use: IntendedUse | None = Field(description="the intended use and what the model must not be used for, from "
                                                "the task spec (null for a bundle saved before it carried them)")
    labels: ModelLabels = Field(description="the words every surface shows: endpoint titles and answer phrases, "
                                            "predictor labels and units, from the task spec")
    schema_: dict[str, Any] = Field(alias="schema", description="the task schema: fields, units, ranges, "
                                                                "categories, required or optional")


class TaskReload(BaseModel):
    task: str
    status: Literal["loaded", "unchanged", "failed", "no_champion"] = Field(
        description="loaded: the new champion now serves; unchanged: it already did; failed: the new version did "
                    "not load or failed its smoke prediction, and the previous one keeps serving; no_champion: "
                    "no champion.json for this task")
    serving_version: str | None = Field(description="version answering requests now")
    champion_version: str | None = Field(description="version champion.json names")
    message: str


class ReloadReport(BaseModel):
    worker_pid: int = Field(description="the worker that checked at once; every other worker checks "
                                        "champion.json within a second of its next request")
    tasks: list[TaskReload]
