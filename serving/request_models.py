"""Typed request models built from the task schema (the same definition that validates training files)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails

from features.task_schema import Predictor, TaskSchema


def explain_options_model(schema: TaskSchema) -> type[BaseModel]:
    """Which endpoint and horizon the contributions explain (defaults: the first endpoint at the main horizon)."""
    endpoints = tuple(schema.endpoint_names)
    return create_model(
        "".join(part.title() for part in schema.task.split("_")) + "Explain",
        __config__=ConfigDict(extra="forbid"),
        endpoint=(Literal[endpoints], Field(endpoints[0], description="endpoint to explain")),  # type: ignore
        # strict, as the predictors: a boolean or a numeric string is refused, not read as 1 or a number
        horizon_months=(float, Field(schema.main_horizon_months, strict=True, ge=1, le=max(schema.horizons_months),
                                     allow_inf_nan=False, description="horizon of the explained probability, months")),
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


def patient_request_model(schema: TaskSchema, not_learned: Callable[[], Collection[str]] | None = None
                          ) -> type[BaseModel]:
    """One field per predictor (required ones without default) plus optional grouping fields and `explain`.

    `not_learned`: the predictors the serving model could not learn from, asked at each request (the champion may
    change); a required one of them may then be left out. The field is still accepted, and has no effect."""
    fields: dict[str, Any] = {}
    derived = {name for name, _ in schema.derived_predictors}
    required = [p.name for p in schema.predictors if p.required and p.name not in derived]
    for p in (*schema.predictors, *schema.grouping):
        if p.name in derived:  # computed by the service from the fields it derives from
            continue
        annotation = _field_type(p)
        examples = [p.example] if p.example is not None else None
        if p.required and not_learned is None:
            fields[p.name] = (annotation, Field(..., description=_description(p), examples=examples))
        elif p.required:  # absent: None, never validated; whether it may be absent is checked per request
            fields[p.name] = (annotation, Field(None, description=_description(p), examples=examples))
        else:
            fields[p.name] = (annotation | None, Field(None, description=_description(p), examples=examples))
    explain = explain_options_model(schema)
    fields["explain"] = (explain | None, Field(None, description="what the contributions explain"))
    name = "".join(part.title() for part in schema.task.split("_")) + "Patient"
    example = {p.name: p.example for p in schema.predictors if p.example is not None and p.name not in derived}
    if not_learned is None:
        return create_model(name, __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
                            **fields)

    def document_required(document: dict[str, Any]) -> None:
        """The OpenAPI document keeps the schema's required fields (the model that serves may relax them)."""
        document["examples"] = [example]
        document["required"] = [*required, *(n for n in document.get("required", []) if n not in required)]
        for field_name in required:
            document["properties"][field_name].pop("default", None)

    def required_unless_not_learned(cls: type[BaseModel], data: Any, handler: Callable[[Any], Any]) -> Any:
        errors: list[dict[str, Any]] = []
        try:
            patient = handler(data)
        except ValidationError as error:
            errors, patient = error.errors(), None
        if isinstance(data, dict):
            optional = set(not_learned())
            errors += [{"type": "missing", "loc": (n,), "input": data} for n in required
                       if n not in data and n not in optional]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))
                for e in errors])
        return patient

    return create_model(name, __config__=ConfigDict(extra="forbid", json_schema_extra=document_required),
                        __validators__={"required_unless_not_learned":
                                        model_validator(mode="wrap")(required_unless_not_learned)}, **fields)
