"""Survival after the first competing event (relapse) for the bundle's overall survival (risk_model/after_event.py).

Fitted on the development patients who had the event: a Cox model on time since the event with the time from
time zero to the event and the task's numeric predictors (in schema order, at most 20 % missing among them; a
missing value takes their mean), as many as ten deaths after the event per coefficient allow, at most
`MAX_PREDICTORS`; Breslow baseline at the covariate means. Too few deaths, or no time after the event (a cause
that is itself death), keep the covariate-free Kaplan-Meier curve.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import Task

EVENTS_PER_COEFFICIENT = 10
MAX_PREDICTORS = 3  # besides the time to the event: a small model on the relapsed patients only
MAX_MISSING_SHARE = 0.2
EVENT_TIME = "__months_to_event"


def kaplan_meier_curve(months: np.ndarray, event: np.ndarray) -> dict[str, list[float]]:
    """Product-limit survival after each event time (used for survival after relapse)."""
    months, event = np.asarray(months, dtype=float), np.asarray(event)
    # Counted by sorting, not by a pass over every patient per event time (quadratic on a large registry).
    grid, deaths = np.unique(months[event == 1], return_counts=True)
    at_risk = len(months) - np.searchsorted(np.sort(months), grid, side="left")
    survival = np.cumprod(1.0 - deaths / at_risk)
    return {"months": grid.tolist(), "survival": survival.tolist()}


def _numeric_candidates(rows: pd.DataFrame, predictors: list[dict[str, Any]]) -> list[str]:
    names = [p["name"] for p in predictors if p["kind"] == "number" and p["name"] in rows.columns]
    return [
        n
        for n in names
        if pd.to_numeric(rows[n], errors="coerce").isna().mean() <= MAX_MISSING_SHARE
        and pd.to_numeric(rows[n], errors="coerce").nunique() > 1
    ]


def fit_after_event(
    rows: pd.DataFrame, predictors: list[dict[str, Any]], event_time: np.ndarray, since: np.ndarray, dead: np.ndarray
) -> dict[str, Any]:
    """The post-event curve and, where the data allow, its Cox model (the bundle's `post_relapse_survival`).

    `rows`: the patients who had the event; `event_time`: months from time zero to it; `since`, `dead`: months
    from it to death or last contact, and whether they died."""
    since, dead, event_time = np.asarray(since, float), np.asarray(dead, int), np.asarray(event_time, float)
    curve = kaplan_meier_curve(since, dead)
    deaths = int(np.sum(dead[since > 0]))
    budget = deaths // EVENTS_PER_COEFFICIENT - 1  # one coefficient goes to the time to the event
    if budget < 0 or len(np.unique(event_time)) < 2:
        return curve
    names = _numeric_candidates(rows, predictors)[: min(budget, MAX_PREDICTORS)]
    data = pd.DataFrame({n: pd.to_numeric(rows[n], errors="coerce").to_numpy(float) for n in names})
    fill = {n: float(data[n].mean()) for n in names}
    data = data.fillna(fill).assign(**{EVENT_TIME: event_time, "since": np.maximum(since, 1e-6), "dead": dead})
    fitted = _cox(data)
    if fitted is None:
        return curve
    coefficients, means, baseline = fitted
    return {
        **baseline,
        "model": {
            "predictors": [{"name": n, "coef": coefficients[n], "fill": fill[n]} for n in names],
            "reference_lp": float(sum(coefficients[n] * means[n] for n in names)),
            "event_time_coef": coefficients[EVENT_TIME],
            "event_time_reference": means[EVENT_TIME],
            "deaths": deaths,
            "patients": len(rows),
        },
    }


def _cox(data: pd.DataFrame) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]]] | None:
    """Coefficients, covariate means and the Breslow baseline survival at those means (lifelines)."""
    from lifelines import CoxPHFitter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CoxPHFitter(penalizer=0.01).fit(data, duration_col="since", event_col="dead")
    except Exception:  # noqa: BLE001 - lifelines raises several kinds on a degenerate fit: keep the plain curve
        return None
    coefficients = {k: float(v) for k, v in model.params_.items()}
    if not all(np.isfinite(list(coefficients.values()))):
        return None
    covariates = [c for c in data.columns if c not in ("since", "dead")]
    means = {c: float(data[c].mean()) for c in covariates}
    hazard = model.baseline_cumulative_hazard_.iloc[:, 0]
    # lifelines centres at the covariate means: its baseline is the survival of a patient at the means.
    steps = hazard.index.to_numpy(float)[np.r_[True, np.diff(hazard.to_numpy()) > 0]]
    survival = np.exp(-hazard.loc[steps].to_numpy(float))
    keep = steps <= np.max(data["since"])
    return coefficients, means, {"months": steps[keep].tolist(), "survival": survival[keep].tolist()}


def after_event_model(task: Task, development: pd.DataFrame) -> dict[str, Any] | None:
    """The task's survival after its first competing event, from the development patients (None: not needed)."""
    if task.post_relapse_target is None:
        return None
    since, dead = task.post_relapse_target(development)
    endpoint = task.schema.main_endpoint
    target = task.endpoint_targets(development)[endpoint]
    had = np.flatnonzero(np.asarray(target.code) == target.event_of_interest)
    if len(had) != len(since):  # the task's rows after the event are not its first endpoint's events
        return kaplan_meier_curve(since, dead)
    rows = development.iloc[had].reset_index(drop=True)
    predictors = [{"name": p.name, "kind": p.kind} for p in task.schema.predictors]
    return fit_after_event(rows, predictors, np.asarray(target.months, float)[had], since, dead)
