"""The shapes the service answers with (clarifications §6), documented for the OpenAPI page, and the error body.

Every 4xx (and the 503 without a model) has one shape: `{"code", "message", "fields": [{"location", "reason"}]}`.
Rejected values are never echoed. Ranges of answers are documented (`minimum`/`maximum`), not re-validated.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

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

WARNING_CODES = {
    "outside_training_range": "a number lies outside the range seen in training (field names it)",
    "rare_category": "a valid category seen in fewer than 1 % of training patients, or never (field names it)",
    "far_from_training_data": "the combination of predictors lies farther from the training patients than 99 % of "
                              "them (Mahalanobis distance on the encoded predictors; threshold in the bundle)",
    "many_imputed_predictors": "several predictors that most training patients had were not sent and were filled "
                               "in (3, or more where training patients often lacked that many together; threshold "
                               "in the bundle)",
    "horizon_beyond_follow_up": "fewer than 20 training patients were followed to a horizon: no estimate there",
    "projection_outside_schema_range": "stop-timing only: waiting that long would take a value (age, TKI or "
                                       "deep-response years) past the schema's limit, so that option is not "
                                       "offered (field names it)",
    "small_subgroup": "the patient is in a report subgroup of the task (an age band, or a named group such as "
                      "adults over 55 with B-ALL) with fewer than 100 patients in the model's development data "
                      "(field names the subgroup's first column)",
    "not_learned": "the model could not learn from this predictor (dropped at training, e.g. the same value for "
                   "nearly every training patient): a value sent for it is accepted and has no effect (field names "
                   "it; in every answer of that model)",
}

PROBABILITY = {"minimum": 0, "maximum": 1}


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


class HorizonEstimate(BaseModel):
    months: int = Field(description="horizon in months from time zero (TKI stop; transplant day)", examples=[12])
    probability: float | None = Field(description="probability of the endpoint by this horizon, in [0, 1]; null "
                                                  "past the training follow-up", json_schema_extra=PROBABILITY)
    lower: float | None = Field(None, description="lower bound of the 95 % interval, in [0, 1] (null: no interval "
                                                  "available)", json_schema_extra=PROBABILITY)
    upper: float | None = Field(None, description="upper bound of the 95 % interval, in [0, 1]",
                                json_schema_extra=PROBABILITY)


class Curve(BaseModel):
    months: list[int] = Field(description="months 0 to 60, one point per month")
    probability: list[float] = Field(description="the endpoint's probability at each month, in [0, 1]",
                                     json_schema_extra={"items": {"type": "number", **PROBABILITY}})


class Endpoint(BaseModel):
    kind: Literal["incidence", "survival"] = Field(
        description='"incidence": probability of the event by t (relapse, NRM); "survival": probability of '
                    'staying event-free (relapse-free, OS, LFS, GRFS)')
    horizons: list[HorizonEstimate]
    curve: Curve


class RiskGroup(BaseModel):
    label: Literal["low", "intermediate", "high"]
    horizon_months: int = Field(description="the main horizon the group is defined at, months")
    cut_points: list[float] = Field(description="training tertiles of relapse risk at the main horizon, in [0, 1]")


class Contribution(BaseModel):
    feature: str = Field(description="predictor name (as in the request)")
    value: Any = Field(None, description="the value used (null when not sent: the model handles it as missing)")
    units: str | None = Field(None, description="unit of the value (years, days, log10), null for categories")
    percentage_points: float = Field(description="contribution to the explained probability, percentage points")


class Contributions(BaseModel):
    endpoint: str = Field(description="the explained endpoint")
    horizon_months: float = Field(description="horizon of the explained probability, months")
    base_value: float = Field(description="background mean probability, in [0, 1]; items add up to "
                                          "100 x (probability - base_value)", json_schema_extra=PROBABILITY)
    items: list[Contribution]


class ModelIdentity(BaseModel):
    name: str = Field(description="registered model name (the task)", examples=["cml_tfr"])
    version: str = Field(description="registered version serving this answer", examples=["3"])
    run_id: str = Field(description="MLflow run that trained it")
    family: str = Field(description="cox_ph or xgboost_cox")


class Warning_(BaseModel):
    code: str = Field(description="; ".join(f"`{code}`: {text}" for code, text in WARNING_CODES.items()),
                      examples=["outside_training_range"])
    field: str | None = Field(None, description="the field concerned, or null for the patient as a whole")
    message: str = Field(description="for the clinician: why to treat the estimate with caution")


class ExplainedContribution(Contribution):
    direction: Literal["raises", "lowers", "none"] = Field(
        description="whether this predictor's value raises or lowers the explained probability against the "
                    "background (none: below 0.005 points)")


class ExplanationBackground(BaseModel):
    rows: int = Field(description="background rows (synthetic patients, each standing for at least 10)")
    patients: int = Field(description="training patients they summarise (the weights add up to this)")
    description: str


class ExplanationAnswer(BaseModel):
    task: str
    model: ModelIdentity
    endpoint: str = Field(description="the explained endpoint")
    kind: Literal["incidence", "survival"]
    horizon_months: float = Field(description="horizon of the explained probability, months")
    explained: str = Field(description="the explained probability, in words",
                           examples=["probability of relapse by 12 months"])
    probability: float = Field(description="the patient's probability, in [0, 1]", json_schema_extra=PROBABILITY)
    base_value: float = Field(description="background mean probability, in [0, 1]; the items add up to "
                                          "100 x (probability - base_value)", json_schema_extra=PROBABILITY)
    units: str = Field(description="units of `percentage_points`")
    background: ExplanationBackground
    method: str = Field(description="how the contributions are computed")
    items: list[ExplainedContribution] = Field(description="every predictor, largest absolute contribution first")
    warnings: list[Warning_] = Field(description="reasons to read the explanation with caution (empty: none)")


_CURVE_EXAMPLE = {"months": [0, 1, 2, 3], "probability": [0.0, 0.011, 0.05, 0.136]}
PREDICTION_EXAMPLE = {
    "task": "cml_tfr",
    "model": {"name": "cml_tfr", "version": "1", "run_id": "276095674557484ab5f5f455c68cde19", "family": "cox_ph"},
    "endpoints": {
        "relapse": {"kind": "incidence", "curve": _CURVE_EXAMPLE,
                    "horizons": [{"months": 12, "probability": 0.284, "lower": 0.25, "upper": 0.32}]},
        "relapse_free": {"kind": "survival",
                         "curve": {"months": [0, 1, 2, 3], "probability": [1.0, 0.989, 0.95, 0.864]},
                         "horizons": [{"months": 12, "probability": 0.716, "lower": 0.68, "upper": 0.75}]},
    },
    "risk_group": {"label": "low", "horizon_months": 12, "cut_points": [0.348, 0.454]},
    "contributions": {"endpoint": "relapse", "horizon_months": 12, "base_value": 0.417, "items": [
        {"feature": "sokal_risk", "value": "low", "units": None, "percentage_points": -5.99},
        {"feature": "dmr_years", "value": 4.3, "units": "years", "percentage_points": -1.6}]},
    "interval_method": None,
    "warnings": [{"code": "outside_training_range", "field": "age_at_stop_years",
                  "message": "95.0 lies outside the training range [20.9, 90]; the estimate extrapolates"}],
}


class PredictionAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PREDICTION_EXAMPLE]})

    task: str
    model: ModelIdentity
    endpoints: dict[str, Endpoint] = Field(description="cml_tfr: relapse, relapse_free; all_hsct: relapse, nrm, "
                                                       "os, lfs, grfs")
    risk_group: RiskGroup
    contributions: Contributions | None = Field(description="null when asked for without (`?contributions=false`)")
    interval_method: str | None = Field(None, description="how lower/upper were computed (null: no intervals)")
    warnings: list[Warning_] = Field(description="reasons to treat this answer with caution (empty: none)")


class BatchAnswer(PredictionAnswer):
    contributions: Contributions | None = Field(  # type: ignore[assignment]
        None, description="null unless the batch asked for include_contributions")


class BatchItem(BaseModel):
    index: int = Field(description="position of the patient in the request's `patients` list (from 0)", ge=0)
    answer: BatchAnswer | None = Field(None, description="the answer, or null when this patient was refused")
    error: ErrorBody | None = Field(None, description="why this patient was refused (the others are unaffected)")


class BatchResult(BaseModel):
    task: str
    model: ModelIdentity
    count: int = Field(description="patients received")
    succeeded: int = Field(description="patients answered")
    failed: int = Field(description="patients refused, each with its own error")
    results: list[BatchItem] = Field(description="one item per patient, in request order")


class ProjectedValues(BaseModel):
    tki_years: float = Field(description="TKI duration at that stop, years")
    dmr_years: float = Field(description="deep-response duration at that stop, years")
    age_at_stop_years: float = Field(description="age at that stop, years")


class RiskAfterStop(BaseModel):
    months_after_stop: int = Field(description="months after that stop", examples=[24])
    probability: float | None = Field(description="probability of molecular relapse by then, in [0, 1]; null past "
                                                  "the training follow-up", json_schema_extra=PROBABILITY)
    lower: float | None = Field(None, description="lower bound of the 95 % interval (null: none available)",
                                json_schema_extra=PROBABILITY)
    upper: float | None = Field(None, description="upper bound of the 95 % interval",
                                json_schema_extra=PROBABILITY)


class StopOption(BaseModel):
    stop_after_months: int = Field(description="stop now (0) or after this many more months of deep response")
    offered: bool = Field(description="false when the projection leaves the schema's ranges (e.g. age past 100): "
                                      "no estimate, and `warnings` says which value and limit")
    projected: ProjectedValues = Field(description="the values the model is asked about for this option")
    relapse_risk: list[RiskAfterStop] | None = Field(description="12 and 24 months after that stop; null when "
                                                                 "the option is not offered")
    warnings: list[Warning_] = Field(description="this option's own warnings: the projected patient's, as "
                                                 "/predict would give them, or why it is not offered")


class StopRecommendation(BaseModel):
    earliest_near_best_stop_after_months: int = Field(description="the earliest offered option near the best")
    decision_horizon_months: int = Field(description="the horizon the options are compared at, months")
    margin_percentage_points: float = Field(description="how close to the lowest risk counts as near-best")
    best_risk: float = Field(description="the lowest risk among the offered options at the decision horizon",
                             json_schema_extra=PROBABILITY)
    rule: str = Field(description="the rule, in words")


class StopTimingAnswer(BaseModel):
    task: Literal["cml_tfr"]
    model: ModelIdentity
    warnings: list[Warning_] = Field(description="the warnings /predict gives the patient as sent (and a "
                                                 "horizon past the training follow-up); empty: none")
    options: list[StopOption] = Field(description="stop now, or after 6, 12 or 24 more months, in that order")
    recommendation: StopRecommendation | None = Field(description="null when no option is offered or none has an "
                                                                  "estimate at the decision horizon")
    statement: str = Field(description="what the projection assumes; it is not a causal estimate")


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
