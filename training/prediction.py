"""One patient's answer in the shape every task shares (clarifications §6), computed from a bundle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.bundle import CURVE_MONTHS, RISK_GROUP_LABELS, ModelBundle

RARE_CATEGORY_SHARE = 0.01


def out_of_distribution_warnings(bundle: ModelBundle, patient: dict[str, Any]) -> list[dict[str, Any]]:
    """Warn when a value lies outside what the model was trained on (never an error: the value is valid)."""
    warnings = []
    summary = bundle.training_summary
    for name, value in patient.items():
        info = summary.get(name)
        if value is None or info is None:
            continue
        if info["kind"] == "number" and not (info["min"] <= float(value) <= info["max"]):
            warnings.append({"code": "outside_training_range", "field": name,
                             "message": f"{value} lies outside the training range "
                                        f"[{info['min']:g}, {info['max']:g}]; the estimate extrapolates"})
        elif info["kind"] == "category" and info["shares"].get(str(value), 0.0) < RARE_CATEGORY_SHARE:
            share = info["shares"].get(str(value), 0.0)
            warnings.append({"code": "rare_category", "field": name,
                             "message": f"{value!r} was {'absent' if share == 0 else 'rare'} in training "
                                        f"({100 * share:.1f} % of patients); treat the estimate with caution"})
    return warnings


def risk_group(bundle: ModelBundle, risk: float) -> dict[str, Any]:
    label = RISK_GROUP_LABELS[int(np.searchsorted(bundle.risk_cut_points, risk, side="right"))]
    return {"label": label, "horizon_months": bundle.main_horizon_months, "cut_points": bundle.risk_cut_points}


def _endpoint_answer(kind: str, at_horizons: np.ndarray, curve: np.ndarray, horizons: list[int],
                     reliable_until: float) -> dict[str, Any]:
    return {
        "kind": kind,
        "horizons": [{"months": int(m), "probability": None if m > reliable_until else float(p),
                      "lower": None, "upper": None} for m, p in zip(horizons, at_horizons, strict=True)],
        "curve": {"months": CURVE_MONTHS.astype(int).tolist(), "probability": [float(p) for p in curve]},
    }


def predict_patient(
    bundle: ModelBundle,
    patient: dict[str, Any],
    *,
    explain_endpoint: str | None = None,
    explain_horizon_months: float | None = None,
    model_identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every endpoint at each horizon with monthly curves, risk group, contributions and warnings."""
    frame = pd.DataFrame([patient])
    endpoint = explain_endpoint or bundle.main_endpoint
    horizon = float(explain_horizon_months or bundle.main_horizon_months)
    warnings = out_of_distribution_warnings(bundle, patient)
    reliable_until = bundle.last_reliable_month
    months = np.array(bundle.horizons_months, dtype=float)
    probabilities = bundle.endpoint_probabilities(frame, np.concatenate([months, CURVE_MONTHS]))
    endpoints = {
        name: _endpoint_answer(kind, probabilities[name][0, : len(months)], probabilities[name][0, len(months):],
                               bundle.horizons_months, reliable_until)
        for name, kind in bundle.endpoint_kinds.items()
    }
    for h in months[months > reliable_until]:
        warnings.append({"code": "horizon_beyond_follow_up", "field": None,
                         "message": f"fewer than {bundle.min_at_risk} training patients were followed "
                                    f"to {h:g} months, so no estimate is given there"})
    values, base_value = bundle.contributions(frame, horizon, endpoint)
    units = {p["name"]: p.get("unit") for p in bundle.schema["predictors"]}
    items = [{"feature": name, "value": _plain(patient.get(name)), "units": units.get(name),
              "percentage_points": float(100.0 * v)}
             for name, v in zip(bundle.feature_names, values[0], strict=True)]
    main_risk = float(bundle.event_probability(frame, np.array([bundle.main_horizon_months]))[0, 0])
    return {
        "task": bundle.task,
        "model": model_identity or {"name": bundle.task, "version": bundle.lineage.get("version"),
                                    "run_id": bundle.lineage.get("run_id"), "family": bundle.family},
        "endpoints": endpoints,
        "risk_group": risk_group(bundle, main_risk),
        "contributions": {"endpoint": endpoint, "horizon_months": horizon, "base_value": base_value,
                          "items": items},
        "interval_method": None,
        "warnings": warnings,
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
