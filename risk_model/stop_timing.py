"""When to stop the TKI: projected relapse risk if the stop happens now or after more months of deep response.

For a patient still on TKI and in deep molecular response, each option advances TKI duration, deep-response
duration and age by the delay and asks the model for the relapse risk 12 and 24 months after that stop, with its
95 % interval, and for the difference from stopping now paired within each bootstrap replicate (the same refit
scores both stops, so what the refits share cancels): the difference's interval is the 2.5th to 97.5th percentile
of the replicates' differences. An option is called better than stopping now only when that paired interval at
the decision horizon lies wholly below zero and the reduction exceeds the task's stated margin: a point difference
of a few points inside intervals ten points wide is not advice.

What the projection cannot say, stated in every answer: longer deep response partly marks patients who respond
better (selection), so part of the projected gain is who the patient is, not what waiting does; the risk of losing
the deep response while waiting is not modelled; it is not a causal estimate of the effect of waiting.

The answer carries the warnings /predict gives the patient as sent, and each option the warnings of its own
projected patient. An option whose projection leaves the schema's ranges (say age past 100) is not offered: the
schema refuses such a patient on /predict, so the model is not asked about it here either. The route is registered
by a task folder (`routes` in its TASK_CODE) and its settings come from that task's spec (`[routes.stop_timing]`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from risk_model.answers import (
    DifferenceFromNow,
    ProjectedValues,
    RiskAfterStop,
    StopComparison,
    StopOption,
    StopTimingAnswer,
    Warning_,
)
from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals
from risk_model.prediction import answer_identity, beyond_follow_up_warnings, patient_warnings

ADVANCED_WITH_TIME = ("tki_years", "dmr_years", "age_at_stop_years")
ENDPOINT = "relapse"
OUTSIDE_SCHEMA = "projection_outside_schema_range"
PERCENTILES = (2.5, 97.5)
STATEMENT = ("Model-based projection: it advances TKI duration, deep-response duration and age by the wait and "
             "assumes the deep molecular response is sustained until the later stop. Longer deep response partly "
             "marks patients who respond better (selection), so part of a projected gain from waiting is who the "
             "patient is, not what waiting does. The risk of losing the deep response while waiting is not "
             "modelled. It is not a causal estimate of the effect of waiting.")


class StopTimingSettings(BaseModel):
    """The route's settings, from the task spec's `[routes.stop_timing]` table (defaults where it is silent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delays_months: tuple[int, ...] = Field((0, 6, 12, 24), min_length=2)
    risk_horizons_months: tuple[int, ...] = Field((12, 24), min_length=1)
    decision_horizon_months: int = 24
    margin_percentage_points: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> StopTimingSettings:
        if self.delays_months[0] != 0 or list(self.delays_months) != sorted(set(self.delays_months)):
            raise ValueError("delays_months must start at 0 (stopping now) and increase")
        if self.decision_horizon_months not in self.risk_horizons_months:
            raise ValueError("decision_horizon_months must be one of risk_horizons_months")
        return self


def projected_patient(patient: dict[str, Any], delay_months: int) -> dict[str, Any]:
    later = dict(patient)
    for field in ADVANCED_WITH_TIME:
        # Rounded so a projected 41.9 is not shown as 41.900000000000006; far below any clinical resolution.
        later[field] = round(float(patient[field]) + delay_months / 12.0, 6)
    return later


def schema_range_warnings(bundle: ModelBundle, projected: dict[str, Any], delay_months: int
                          ) -> list[Warning_]:
    """Why an option is not offered: each advanced value that leaves the range the schema accepts."""
    limits = {p["name"]: p for p in bundle.schema["predictors"] if p["name"] in ADVANCED_WITH_TIME}
    warnings = []
    for field in ADVANCED_WITH_TIME:
        spec, value = limits.get(field, {}), projected[field]
        low, high = spec.get("minimum"), spec.get("maximum")
        limit = high if high is not None and value > high else low if low is not None and value < low else None
        if limit is not None:
            unit = f" {spec['unit']}" if spec.get("unit") else ""
            warnings.append(Warning_(code=OUTSIDE_SCHEMA, field=field,
                                     message=f"stopping after {delay_months} more months would make {field} "
                                             f"{value:g}{unit}, past the schema's limit of {limit:g}{unit}: this "
                                             "option is not offered"))
    return warnings


def stop_timing(bundle: ModelBundle, patient: dict[str, Any], settings: StopTimingSettings | None = None,
                model_identity: dict[str, Any] | None = None) -> StopTimingAnswer:
    """Relapse risk at each horizon after stopping now or later, each option with its warnings and its paired
    difference from stopping now, and which options (if any) the evidence calls better."""
    settings = settings or StopTimingSettings()
    missing = [name for name in ADVANCED_WITH_TIME if name not in bundle.feature_names]
    if missing or ENDPOINT not in bundle.endpoint_kinds:
        raise ValueError(f"stop timing needs the predictors {', '.join(ADVANCED_WITH_TIME)} and a {ENDPOINT!r} "
                         "endpoint")
    delays = settings.delays_months
    projections = [projected_patient(patient, d) for d in delays]
    refusals = [schema_range_warnings(bundle, p, d) for p, d in zip(projections, delays, strict=True)]
    offered = [i for i, refused in enumerate(refusals) if not refused]
    if offered[:1] != [0]:  # the patient as sent passed the schema, so stopping now is always offered
        raise ValueError("the patient as sent is outside the schema's ranges")
    months = np.array(settings.risk_horizons_months, dtype=float)
    # The patient as sent first, then the offered projections: one pass of the model and of the warnings.
    encoded = bundle.encode([patient, *(projections[i] for i in offered)])
    cautions = patient_warnings(bundle, [patient, *(projections[i] for i in offered)], encoded)
    risks = _risks(bundle, encoded[1:], months)
    differences = _paired_differences(bundle, encoded[1:], months)
    decision = settings.risk_horizons_months.index(settings.decision_horizon_months)
    options = []
    for i, delay in enumerate(delays):
        position = offered.index(i) if i in offered else None
        # Paired with stopping now (offered row 0): none for stopping now itself or for an option not offered.
        difference = differences[position] if position is not None and position > 0 else None
        options.append(StopOption(
            stop_after_months=delay, offered=position is not None,
            projected=ProjectedValues(**{field: projections[i][field] for field in ADVANCED_WITH_TIME}),
            relapse_risk=risks[position] if position is not None else None,
            difference_from_stopping_now=difference,
            called_better=difference is not None and _better(difference[decision], settings),
            warnings=cautions[1 + position] if position is not None else refusals[i]))
    return StopTimingAnswer(
        task=bundle.task, model=answer_identity(bundle, model_identity),
        warnings=[*cautions[0], *beyond_follow_up_warnings(bundle, months)], options=options,
        comparison=_comparison(options, decision, settings, has_replicates=bool(bundle.replicates)),
        statement=STATEMENT)


def _risks(bundle: ModelBundle, encoded: np.ndarray, months: np.ndarray) -> list[list[RiskAfterStop]]:
    """Each projected patient's relapse risk at the horizons after its stop, with the 95 % interval; null past
    the training follow-up, as on /predict."""
    risk = bundle.endpoint_probabilities(encoded, months, only=ENDPOINT)[ENDPOINT]
    bounds = endpoint_intervals(bundle, encoded, months, {ENDPOINT: risk})
    reliable_until = bundle.last_reliable_month

    def value(month: float, number: float) -> float | None:
        return None if month > reliable_until else float(np.clip(number, 0.0, 1.0))

    return [[RiskAfterStop(months_after_stop=int(h), probability=value(h, risk[i, j]),
                           lower=value(h, bounds[ENDPOINT][0][i, j]) if bounds else None,
                           upper=value(h, bounds[ENDPOINT][1][i, j]) if bounds else None)
             for j, h in enumerate(months)] for i in range(len(encoded))]


def _paired_differences(bundle: ModelBundle, encoded: np.ndarray, months: np.ndarray
                        ) -> list[list[DifferenceFromNow]]:
    """Each option's relapse risk minus stopping now's (row 0), in percentage points, with the percentile interval
    of the same difference in every bootstrap replicate; no interval without replicates."""
    members = bundle.ensemble_endpoints(encoded, months, only=ENDPOINT)[ENDPOINT]  # members x options x months
    points = 100.0 * (members[0] - members[0][0])
    lower = upper = None
    if len(members) > 1:
        by_replicate = 100.0 * (members[1:] - members[1:, :1])
        lower, upper = np.percentile(by_replicate, PERCENTILES, axis=0)
    reliable_until = bundle.last_reliable_month

    def value(month: float, array: np.ndarray | None, i: int, j: int) -> float | None:
        return None if array is None or month > reliable_until else float(array[i, j])

    return [[DifferenceFromNow(months_after_stop=int(h), percentage_points=value(h, points, i, j),
                               lower=value(h, lower, i, j), upper=value(h, upper, i, j))
             for j, h in enumerate(months)] for i in range(len(encoded))]


def _better(difference: DifferenceFromNow, settings: StopTimingSettings) -> bool:
    """Better than stopping now: the paired interval lies below zero and the reduction exceeds the margin."""
    if difference.percentage_points is None or difference.upper is None:
        return False
    return difference.upper < 0 and -difference.percentage_points > settings.margin_percentage_points


def _comparison(options: list[StopOption], decision: int, settings: StopTimingSettings, has_replicates: bool
                ) -> StopComparison:
    horizon, margin = settings.decision_horizon_months, settings.margin_percentage_points
    better = [o for o in options if o.called_better]
    rule = (f"a later stop is called better than stopping now only when the relapse risk {horizon} months after "
            f"it is lower by more than {margin:g} percentage points and the 95 % interval of that difference, "
            "paired within each bootstrap replicate, lies wholly below zero")
    if not has_replicates:
        conclusion = ("this model version has no bootstrap replicates, so the differences have no interval and no "
                      "later stop is called better than stopping now")
    elif not better:
        conclusion = (f"no later stop is called better than stopping now: none lowers the {horizon}-month relapse "
                      f"risk by more than {margin:g} points with a paired interval below zero")
    else:
        named = "; ".join(_described(o.stop_after_months, o.difference_from_stopping_now[decision])
                          for o in better if o.difference_from_stopping_now)
        conclusion = f"called better than stopping now at {horizon} months: {named}"
    return StopComparison(decision_horizon_months=horizon, margin_percentage_points=margin,
                          better_options=[o.stop_after_months for o in better], rule=rule, conclusion=conclusion)


def _described(delay: int, difference: DifferenceFromNow) -> str:
    return (f"stopping after {delay} more months, {-(difference.percentage_points or 0.0):.1f} points lower "
            f"(95 % interval {-(difference.upper or 0.0):.1f} to {-(difference.lower or 0.0):.1f} points lower)")
