"""Report subgroups a bundle carries (the task's age bands and named groups, e.g. adults over 55 with B-ALL) with
how many development patients each had; a patient in a group the model saw few of gets a warning.

A group is plain JSON: {"name", "title", "conditions": [{"column", "minimum", "below", "categories"}],
"n_development"}; a patient belongs when every condition holds (a missing value never matches)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from risk_model.answers import Warning_

# Fewer development patients than this in a report subgroup: its estimates rest on few patients.
SMALL_SUBGROUP_PATIENTS = 100


def _holds(condition: dict[str, Any], value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return False
    if condition.get("categories"):
        return str(value) in condition["categories"]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    low, below = condition.get("minimum"), condition.get("below")
    return (low is None or number >= low) and (below is None or number < below)


def belongs(group: dict[str, Any], patient: dict[str, Any]) -> bool:
    return all(_holds(c, patient.get(c["column"])) for c in group["conditions"])


def members(group: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the frame's patients in the group."""
    inside = np.ones(len(frame), dtype=bool)
    for condition in group["conditions"]:
        column = condition["column"]
        values = frame[column].to_numpy(dtype=object) if column in frame else np.full(len(frame), None)
        inside &= np.array([_holds(condition, v) for v in values], dtype=bool)
    return inside


def with_development_counts(groups: list[dict[str, Any]], development: pd.DataFrame) -> list[dict[str, Any]]:
    return [{**group, "n_development": int(members(group, development).sum())} for group in groups]


def small_subgroup_warnings(groups: list[dict[str, Any]], patient: dict[str, Any]) -> list[Warning_]:
    """One `small_subgroup` warning per report subgroup the patient is in that had few development patients."""
    return [
        Warning_(
            code="small_subgroup",
            field=group["conditions"][0]["column"],
            message=f"the model's development data held only {group['n_development']} patients in this "
            f"patient's subgroup ({group['title']}; fewer than {SMALL_SUBGROUP_PATIENTS}): treat the "
            "estimate with caution",
        )
        for group in groups
        if group.get("n_development", SMALL_SUBGROUP_PATIENTS) < SMALL_SUBGROUP_PATIENTS and belongs(group, patient)
    ]
