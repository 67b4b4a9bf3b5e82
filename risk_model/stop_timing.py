"""When to stop the TKI: projected relapse risk if the stop happens now or after more months of deep response.

For a patient still on TKI and in deep molecular response, each option advances TKI duration, deep-response
duration and age by the delay and asks the model for the relapse risk 12 and 24 months after that stop. This
is a model-based projection that assumes the deep response is sustained until the later stop; it is not a
causal estimate of the effect of waiting (patients who lose their response meanwhile are not represented).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals

DELAYS_MONTHS = (0, 6, 12, 24)
RISK_HORIZONS_MONTHS = (12, 24)
DECISION_HORIZON_MONTHS = 24
MARGIN_PERCENTAGE_POINTS = 2.0
ADVANCED_WITH_TIME = ("tki_years", "dmr_years", "age_at_stop_years")
STATEMENT = ("Model-based projection: it assumes the deep molecular response is sustained until the later stop "
             "and advances TKI duration, response duration and age accordingly. It is not a causal estimate of "
             "the effect of waiting.")


def projected_patient(patient: dict[str, Any], delay_months: int) -> dict[str, Any]:
    later = dict(patient)
    for field in ADVANCED_WITH_TIME:
        later[field] = float(patient[field]) + delay_months / 12.0
    return later


def stop_timing(bundle: ModelBundle, patient: dict[str, Any], delays: tuple[int, ...] = DELAYS_MONTHS,
                margin_points: float = MARGIN_PERCENTAGE_POINTS) -> dict[str, Any]:
    """Relapse risk at 12 and 24 months after stopping now or later, and the earliest near-best option."""
    if bundle.task != "cml_tfr":
        raise ValueError("stop timing applies to the cml_tfr task only")
    frame = pd.DataFrame([projected_patient(patient, d) for d in delays])
    months = np.array(RISK_HORIZONS_MONTHS, dtype=float)
    risk = bundle.endpoint_probabilities(frame, months, only="relapse")["relapse"]
    bounds = endpoint_intervals(bundle, frame, months, {"relapse": risk})
    decision = RISK_HORIZONS_MONTHS.index(DECISION_HORIZON_MONTHS)
    best = float(risk[:, decision].min())
    earliest = next(d for d, r in zip(delays, risk[:, decision], strict=True)
                    if r <= best + margin_points / 100.0)
    options = []
    for i, delay in enumerate(delays):
        options.append({
            "stop_after_months": delay,
            "projected": {field: projected_patient(patient, delay)[field] for field in ADVANCED_WITH_TIME},
            "relapse_risk": [
                {"months_after_stop": int(h), "probability": float(risk[i, j]),
                 "lower": float(bounds["relapse"][0][i, j]) if bounds else None,
                 "upper": float(bounds["relapse"][1][i, j]) if bounds else None}
                for j, h in enumerate(RISK_HORIZONS_MONTHS)
            ],
        })
    return {
        "task": bundle.task,
        "options": options,
        "recommendation": {
            "earliest_near_best_stop_after_months": earliest,
            "decision_horizon_months": DECISION_HORIZON_MONTHS,
            "margin_percentage_points": margin_points,
            "best_risk": best,
            "rule": f"the earliest option whose {DECISION_HORIZON_MONTHS}-month relapse risk is within "
                    f"{margin_points:g} percentage points of the lowest",
        },
        "statement": STATEMENT,
    }
