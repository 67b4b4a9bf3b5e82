"""The answers of the prediction path, typed: what `risk_model.prediction` and `risk_model.stop_timing` return and
what the service sends and documents (clarifications §6). One set of models, here in the model package, so the
answer a request gets is the answer the OpenAPI document shows. Ranges are documented (`minimum`/`maximum`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class HorizonEstimate(BaseModel):
    months: int = Field(description="horizon in months from time zero (TKI stop; transplant day)", examples=[12])
    probability: float | None = Field(
        description="probability of the endpoint by this horizon, in [0, 1]; null past the training follow-up",
        json_schema_extra=PROBABILITY,
    )
    lower: float | None = Field(
        None,
        description="lower bound of the 95 % interval, in [0, 1] (null: no interval available)",
        json_schema_extra=PROBABILITY,
    )
    upper: float | None = Field(
        None, description="upper bound of the 95 % interval, in [0, 1]", json_schema_extra=PROBABILITY
    )


class Curve(BaseModel):
    months: list[int] = Field(description="months 0 to 60, one point per month")
    probability: list[float] = Field(
        description="the endpoint's probability at each month, in [0, 1]",
        json_schema_extra={"items": {"type": "number", **PROBABILITY}},
    )


class Endpoint(BaseModel):
    kind: Literal["incidence", "survival"] = Field(
        description='"incidence": probability of the event by t (relapse, NRM); "survival": probability of '
        "staying event-free (relapse-free, OS, LFS, GRFS)"
    )
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
    base_value: float = Field(
        description="background mean probability, in [0, 1]; items add up to 100 x (probability - base_value)",
        json_schema_extra=PROBABILITY,
    )
    items: list[Contribution]


class ModelIdentity(BaseModel):
    name: str = Field(description="registered model name (the task)", examples=["cml_tfr"])
    version: str | None = Field(
        description="registered version serving this answer (null only for a bundle used offline before registration)",
        examples=["3"],
    )
    run_id: str | None = Field(description="MLflow run that trained it")
    family: str = Field(description="cox_ph or xgboost_cox")


class Warning_(BaseModel):
    code: str = Field(
        description="; ".join(f"`{code}`: {text}" for code, text in WARNING_CODES.items()),
        examples=["outside_training_range"],
    )
    field: str | None = Field(None, description="the field concerned, or null for the patient as a whole")
    message: str = Field(description="for the clinician: why to treat the estimate with caution")


class ExplainedContribution(Contribution):
    direction: Literal["raises", "lowers", "none"] = Field(
        description="whether this predictor's value raises or lowers the explained probability against the "
        "background (none: below 0.005 points)"
    )


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
    explained: str = Field(
        description="the explained probability, in words", examples=["probability of relapse by 12 months"]
    )
    probability: float = Field(description="the patient's probability, in [0, 1]", json_schema_extra=PROBABILITY)
    base_value: float = Field(
        description="background mean probability, in [0, 1]; the items add up to 100 x (probability - base_value)",
        json_schema_extra=PROBABILITY,
    )
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
        "relapse": {
            "kind": "incidence",
            "curve": _CURVE_EXAMPLE,
            "horizons": [{"months": 12, "probability": 0.284, "lower": 0.25, "upper": 0.32}],
        },
        "relapse_free": {
            "kind": "survival",
            "curve": {"months": [0, 1, 2, 3], "probability": [1.0, 0.989, 0.95, 0.864]},
            "horizons": [{"months": 12, "probability": 0.716, "lower": 0.68, "upper": 0.75}],
        },
    },
    "risk_group": {"label": "low", "horizon_months": 12, "cut_points": [0.348, 0.454]},
    "contributions": {
        "endpoint": "relapse",
        "horizon_months": 12,
        "base_value": 0.417,
        "items": [
            {"feature": "sokal_risk", "value": "low", "units": None, "percentage_points": -5.99},
            {"feature": "dmr_years", "value": 4.3, "units": "years", "percentage_points": -1.6},
        ],
    },
    "interval_method": None,
    "warnings": [
        {
            "code": "outside_training_range",
            "field": "age_at_stop_years",
            "message": "95.0 lies outside the training range [20.9, 90]; the estimate extrapolates",
        }
    ],
}


class PredictionAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PREDICTION_EXAMPLE]})

    task: str
    model: ModelIdentity
    endpoints: dict[str, Endpoint] = Field(
        description="every endpoint the task declares, in its order (titles and phrases: `labels` of /v1/<task>/model)"
    )
    risk_group: RiskGroup
    contributions: Contributions | None = Field(description="null when asked for without (`?contributions=false`)")
    interval_method: str | None = Field(None, description="how lower/upper were computed (null: no intervals)")
    warnings: list[Warning_] = Field(description="reasons to treat this answer with caution (empty: none)")


class ProjectedValues(BaseModel):
    tki_years: float = Field(description="TKI duration at that stop, years")
    dmr_years: float = Field(description="deep-response duration at that stop, years")
    age_at_stop_years: float = Field(description="age at that stop, years")


class RiskAfterStop(BaseModel):
    months_after_stop: int = Field(description="months after that stop", examples=[24])
    probability: float | None = Field(
        description="probability of molecular relapse by then, in [0, 1]; null past the training follow-up",
        json_schema_extra=PROBABILITY,
    )
    lower: float | None = Field(
        None, description="lower bound of the 95 % interval (null: none available)", json_schema_extra=PROBABILITY
    )
    upper: float | None = Field(None, description="upper bound of the 95 % interval", json_schema_extra=PROBABILITY)


class DifferenceFromNow(BaseModel):
    months_after_stop: int = Field(description="months after each stop", examples=[24])
    percentage_points: float | None = Field(
        description="this option's relapse risk minus stopping now's, "
        "percentage points (negative: lower with waiting); null past "
        "the training follow-up"
    )
    lower: float | None = Field(
        None,
        description="2.5th percentile of the same difference over the bootstrap "
        "replicates, percentage points (null: no replicates)",
    )
    upper: float | None = Field(None, description="97.5th percentile of the same difference, percentage points")


class StopOption(BaseModel):
    stop_after_months: int = Field(description="stop now (0) or after this many more months of deep response")
    offered: bool = Field(
        description="false when the projection leaves the schema's ranges (e.g. age past 100): "
        "no estimate, and `warnings` says which value and limit"
    )
    projected: ProjectedValues = Field(description="the values the model is asked about for this option")
    relapse_risk: list[RiskAfterStop] | None = Field(
        description="12 and 24 months after that stop; null when the option is not offered"
    )
    difference_from_stopping_now: list[DifferenceFromNow] | None = Field(
        description="paired with stopping now in the same bootstrap replicates; null for stopping now itself and "
        "for an option not offered"
    )
    called_better: bool = Field(
        description="true only when the paired interval at the decision horizon lies "
        "below zero and the difference exceeds the margin (see `comparison`)"
    )
    warnings: list[Warning_] = Field(
        description="this option's own warnings: the projected patient's, as "
        "/predict would give them, or why it is not offered"
    )


class StopComparison(BaseModel):
    decision_horizon_months: int = Field(description="months after each stop at which the options are compared")
    margin_percentage_points: float = Field(
        description="the smallest reduction in relapse risk, against stopping "
        "now, that counts as better (the task's stated margin)"
    )
    better_options: list[int] = Field(
        description="the `stop_after_months` of every option called better, earliest first (empty: none is)"
    )
    rule: str = Field(description="the rule, in words")
    conclusion: str = Field(description="what the comparison says for this patient, in words")


class StopTimingAnswer(BaseModel):
    task: str
    model: ModelIdentity
    warnings: list[Warning_] = Field(
        description="the warnings /predict gives the patient as sent (and a "
        "horizon past the training follow-up); empty: none"
    )
    options: list[StopOption] = Field(description="stop now, then each later stop, in that order")
    comparison: StopComparison
    statement: str = Field(
        description="what the projection assumes and what it is not: longer deep response "
        "partly marks better responders, losing the response while waiting is not "
        "modelled, and it is not a causal estimate"
    )


# --- what a model says about itself: intended use and the words every surface shows --------------------------


class IntendedUse(BaseModel):
    intended_use: str = Field(description="what the model estimates, for whom and why (the task spec's words)")
    users_and_limits: str = Field(description="who uses it and what it must not be used for")


class EndpointLabel(BaseModel):
    kind: Literal["incidence", "survival"]
    title: str = Field(description="plot and table title", examples=["Relapse incidence"])
    phrase: str = Field(description='answer phrase: "the probability of <phrase> by 12 months"', examples=["relapse"])


class PredictorLabel(BaseModel):
    label: str = Field(description="a short form label", examples=["Sokal risk group at diagnosis"])
    description: str = Field(description="the full description")
    unit: str | None = Field(None, description="unit of the value (null for categories and flags)")


class ModelLabels(BaseModel):
    title: str = Field(description="the task's title")
    endpoints: dict[str, EndpointLabel] = Field(description="every endpoint, in the answer's order")
    predictors: dict[str, PredictorLabel] = Field(description="every predictor and grouping field")
