"""The words a bundle carries from its task spec: endpoint titles and answer phrases, predictor labels and units,
the intended use. Every surface (answers, explanation plots, the page) reads them here, so a task's wording lives
in its task.toml alone. A bundle saved before it carried them gets plain words made from the names.
"""

from __future__ import annotations

from typing import Any

from features.task_schema import short_label
from risk_model.answers import EndpointLabel, IntendedUse, ModelLabels, PredictorLabel


def _wording(schema: dict[str, Any], endpoint: str) -> dict[str, str]:
    return (schema.get("endpoint_wording") or {}).get(endpoint) or {}


def endpoint_title(schema: dict[str, Any], endpoint: str) -> str:
    """E.g. "Relapse incidence", "Overall survival"."""
    return _wording(schema, endpoint).get("title") or endpoint.replace("_", " ").capitalize()


def answer_phrase(schema: dict[str, Any], endpoint: str) -> str:
    """What "the probability of ..." is of, e.g. "relapse", "being alive without relapse"."""
    return _wording(schema, endpoint).get("phrase") or endpoint.replace("_", " ")


def model_labels(schema: dict[str, Any]) -> ModelLabels:
    fields = [*schema.get("predictors", []), *schema.get("grouping", [])]
    return ModelLabels(
        title=schema.get("title") or schema.get("task", ""),
        endpoints={
            name: EndpointLabel(kind=kind, title=endpoint_title(schema, name), phrase=answer_phrase(schema, name))
            for name, kind in schema["endpoints"].items()
        },
        predictors={
            p["name"]: PredictorLabel(
                label=p.get("label") or short_label(p["description"]), description=p["description"], unit=p.get("unit")
            )
            for p in fields
        },
    )


def intended_use(schema: dict[str, Any]) -> IntendedUse | None:
    """None for a bundle saved before it carried the spec's intended use."""
    use = schema.get("use")
    return IntendedUse(**use) if use else None
