"""When to stop the TKI: projected relapse risk if the stop happens now or after more months of deep response.

For a patient still on TKI and in deep molecular response, each option advances TKI duration, deep-response
duration and age by the delay and asks the model for the relapse risk 12 and 24 months after that stop. This
is a model-based projection that assumes the deep response is sustained until the later stop; it is not a
causal estimate of the effect of waiting (patients who lose their response meanwhile are not represented).

The answer carries the warnings /predict gives the patient as sent, and each option the warnings of its own
projected patient. An option whose projection leaves the schema's ranges (say age past 100) is not offered: the
schema refuses such a patient on /predict, so the model is not asked about it here either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals
from risk_model.prediction import beyond_follow_up_warnings, patient_warnings

DELAYS_MONTHS = (0, 6, 12, 24)
RISK_HORIZONS_MONTHS = (12, 24)
DECISION_HORIZON_MONTHS = 24
MARGIN_PERCENTAGE_POINTS = 2.0
ADVANCED_WITH_TIME = ("tki_years", "dmr_years", "age_at_stop_years")
OUTSIDE_SCHEMA = "projection_outside_schema_range"
STATEMENT = ("Model-based projection: it assumes the deep molecular response is sustained until the later stop "
             "and advances TKI duration, response duration and age accordingly. It is not a causal estimate of "
             "the effect of waiting.")


def projected_patient(patient: dict[str, Any], delay_months: int) -> dict[str, Any]:
    later = dict(patient)
    for field in ADVANCED_WITH_TIME:
        # Rounded so a projected 41.9 is not shown as 41.900000000000006; far below any clinical resolution.
        later[field] = round(float(patient[field]) + delay_months / 12.0, 6)
    return later


def schema_range_warnings(bundle: ModelBundle, projected: dict[str, Any], delay_months: int
                          ) -> list[dict[str, Any]]:
    """Why an option is not offered: each advanced value that leaves the range the schema accepts."""
    limits = {p["name"]: p for p in bundle.schema["predictors"] if p["name"] in ADVANCED_WITH_TIME}
    warnings = []
    for field in ADVANCED_WITH_TIME:
        spec, value = limits.get(field, {}), projected[field]
        low, high = spec.get("minimum"), spec.get("maximum")
        limit = high if high is not None and value > high else low if low is not None and value < low else None
        if limit is not None:
            unit = f" {spec['unit']}" if spec.get("unit") else ""
            warnings.append({"code": OUTSIDE_SCHEMA, "field": field,
                             "message": f"stopping after {delay_months} more months would make {field} "
                                        f"{value:g}{unit}, past the schema's limit of {limit:g}{unit}: this option "
                                        "is not offered"})
    return warnings


def stop_timing(bundle: ModelBundle, patient: dict[str, Any], delays: tuple[int, ...] = DELAYS_MONTHS,
                margin_points: float = MARGIN_PERCENTAGE_POINTS) -> dict[str, Any]:
    """Relapse risk at 12 and 24 months after stopping now or later, each option with its warnings, and the
    earliest near-best option among those offered."""
    if bundle.task != "cml_tfr":
        raise ValueError("stop timing applies to the cml_tfr task only")
    projections = [projected_patient(patient, d) for d in delays]
    refusals = [schema_range_warnings(bundle, p, d) for p, d in zip(projections, delays, strict=True)]
    offered = [i for i, refused in enumerate(refusals) if not refused]
    months = np.array(RISK_HORIZONS_MONTHS, dtype=float)
    # The patient as sent first, then the offered projections: one pass of the model and of the warnings.
    encoded = bundle.encode([patient, *(projections[i] for i in offered)])
    cautions = patient_warnings(bundle, [patient, *(projections[i] for i in offered)], encoded)
    risks = _risks(bundle, encoded[1:], months) if offered else []
    options = []
    for i, delay in enumerate(delays):
        position = offered.index(i) if i in offered else None
        options.append({
            "stop_after_months": delay,
            "offered": position is not None,
            "projected": {field: projections[i][field] for field in ADVANCED_WITH_TIME},
            "relapse_risk": risks[position] if position is not None else None,
            "warnings": cautions[1 + position] if position is not None else refusals[i],
        })
    return {
        "task": bundle.task,
        "warnings": [*cautions[0], *beyond_follow_up_warnings(bundle, months)],
        "options": options,
        "recommendation": _recommendation(options, margin_points),
        "statement": STATEMENT,
    }


def _risks(bundle: ModelBundle, encoded: np.ndarray, months: np.ndarray) -> list[list[dict[str, Any]]]:
    """Each projected patient's relapse risk at the horizons after its stop, with the 95 % interval; null past
    the training follow-up, as on /predict."""
    risk = bundle.endpoint_probabilities(encoded, months, only="relapse")["relapse"]
    bounds = endpoint_intervals(bundle, encoded, months, {"relapse": risk})
    reliable_until = bundle.last_reliable_month

    def value(month: float, number: float) -> float | None:
        return None if month > reliable_until else float(np.clip(number, 0.0, 1.0))

    return [[{"months_after_stop": int(h), "probability": value(h, risk[i, j]),
              "lower": value(h, bounds["relapse"][0][i, j]) if bounds else None,
              "upper": value(h, bounds["relapse"][1][i, j]) if bounds else None}
             for j, h in enumerate(months)] for i in range(len(encoded))]


def _recommendation(options: list[dict[str, Any]], margin_points: float) -> dict[str, Any] | None:
    """The earliest offered option whose decision-horizon risk is within the margin of the lowest; None when no
    option has an estimate there."""
    at_decision = [(o["stop_after_months"], r["probability"]) for o in options if o["offered"]
                   for r in o["relapse_risk"]
                   if r["months_after_stop"] == DECISION_HORIZON_MONTHS and r["probability"] is not None]
    if not at_decision:
        return None
    best = min(risk for _, risk in at_decision)
    earliest = next(delay for delay, risk in at_decision if risk <= best + margin_points / 100.0)
    return {
        "earliest_near_best_stop_after_months": earliest,
        "decision_horizon_months": DECISION_HORIZON_MONTHS,
        "margin_percentage_points": margin_points,
        "best_risk": best,
        "rule": f"the earliest option offered whose {DECISION_HORIZON_MONTHS}-month relapse risk is within "
                f"{margin_points:g} percentage points of the lowest",
    }
