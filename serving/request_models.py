"""Typed request models built from the task schema (the same definition that validates training files)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model

from features.task_schema import Predictor, TaskSchema


def explain_options_model(schema: TaskSchema) -> type[BaseModel]:
    """Which endpoint and horizon the contributions explain (defaults: the first endpoint at the main horizon)."""
    endpoints = tuple(schema.endpoint_names)
    return create_model(
        "".join(part.title() for part in schema.task.split("_")) + "Explain",
        __config__=ConfigDict(extra="forbid"),
        endpoint=(Literal[endpoints], Field(endpoints[0], description="endpoint to explain")),  # type: ignore
        horizon_months=(float, Field(schema.main_horizon_months, ge=1, le=max(schema.horizons_months),
                                     description="horizon of the explained probability, months")),
    )


def _field_type(p: Predictor) -> Any:
    if p.kind == "number":
        return Annotated[float, Field(strict=True, ge=p.minimum, le=p.maximum, allow_inf_nan=False,
                                      multiple_of=1 if p.whole_number else None)]
    if p.kind == "boolean":
        return StrictBool
    if p.kind == "category":
        return Literal[p.categories]  # type: ignore[valid-type]
    return Annotated[str, Field(max_length=64)]


def _description(p: Predictor) -> str:
    unit = f" [{p.unit}]" if p.unit else ""
    bounds = f" Range {p.minimum:g}–{p.maximum:g}." if p.kind == "number" else ""
    return f"{p.description}{unit}.{bounds}"


def patient_request_model(schema: TaskSchema) -> type[BaseModel]:
    """One field per predictor (required ones without default) plus optional grouping fields and `explain`."""
    fields: dict[str, Any] = {}
    derived = {name for name, _ in schema.derived_predictors}
    for p in (*schema.predictors, *schema.grouping):
        if p.name in derived:  # computed by the service from the fields it derives from
            continue
        annotation = _field_type(p)
        examples = [p.example] if p.example is not None else None
        if p.required:
            fields[p.name] = (annotation, Field(..., description=_description(p), examples=examples))
        else:
            fields[p.name] = (annotation | None, Field(None, description=_description(p), examples=examples))
    explain = explain_options_model(schema)
    fields["explain"] = (explain | None, Field(None, description="what the contributions explain"))
    name = "".join(part.title() for part in schema.task.split("_")) + "Patient"
    example = {p.name: p.example for p in schema.predictors if p.example is not None and p.name not in derived}
    return create_model(name, __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
                        **fields)
