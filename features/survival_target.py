"""The one gate for a survival outcome: time in months >= 0, event code 0 = censored, 1..K = causes.

Generators, loaders, fitting, metrics and the bundle all call `check_survival_target`; registry files go through
`outcome_problems`, which collects every bad row instead of stopping at the first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.task_schema import Problem


def check_survival_target(
    time: np.ndarray | pd.Series,
    event: np.ndarray | pd.Series,
    *,
    n_causes: int = 1,
    allow_all_censored: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (months, event code) and return them as float and int arrays.

    Censored patients stay in: code 0 means "event-free when last seen", never "no event".
    """
    time = np.asarray(time, dtype=float)
    event_float = np.asarray(event, dtype=float)
    if time.shape != event_float.shape or time.ndim != 1:
        raise ValueError("time and event must be one-dimensional and of equal length")
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ValueError("event times must be finite and >= 0 months")
    if not np.all(np.isfinite(event_float)) or np.any(event_float != np.round(event_float)):
        raise ValueError("event codes must be integers")
    event_code = event_float.astype(int)
    if np.any((event_code < 0) | (event_code > n_causes)):
        raise ValueError(f"event codes must lie in 0..{n_causes} (0 = censored)")
    if not allow_all_censored and not np.any(event_code > 0):
        raise ValueError("all patients are censored: there is no event to learn from")
    return time, event_code


def outcome_problems(
    time: pd.Series, event: pd.Series, time_column: str, event_column: str, n_causes: int = 1
) -> tuple[pd.Series, pd.Series, list[Problem]]:
    """Row-level version of `check_survival_target` for registry files."""
    problems: list[Problem] = []
    months = pd.to_numeric(time, errors="coerce").astype(float)
    code = pd.to_numeric(event, errors="coerce").astype(float)
    rules = [
        (time, months.isna(), time_column, "event time must be a number of months (not missing)"),
        (time, months < 0, time_column, "event time must be >= 0 months"),
        (event, code.isna(), event_column, f"event code must be 0 (censored) to {n_causes} (not missing)"),
        (event, code.notna() & ~code.isin(range(n_causes + 1)), event_column,
         f"event code must be 0 (censored) to {n_causes}"),
    ]
    for raw, mask, column, rule in rules:
        for position in np.flatnonzero(mask.to_numpy()):
            value = raw.iloc[position]
            problems.append(Problem(int(position) + 1, column, None if pd.isna(value) else value, rule))
    if code.notna().any() and not (code > 0).any():
        problems.append(Problem(None, event_column, 0, "all patients are censored: no event to learn from"))
    return months, code, problems
