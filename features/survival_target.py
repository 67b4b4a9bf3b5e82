"""The one gate for a survival outcome: time in months >= 0, event code 0 = censored, 1..K = causes.

Generators, loaders, fitting, metrics and the bundle all call `check_survival_target`; registry files go through
`outcome_problems`, which collects every bad row instead of stopping at the first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.task_schema import Problem


def cause_label(value: object) -> str:
    """A cause column value as compared with the spec's labels: stripped, without case, a whole number without
    its decimals (a code column with gaps is read as 1.0, 2.0)."""
    text = str(value).strip().casefold()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


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


def _cause_rows(frame: pd.DataFrame, event_column: str, cause_column: str, labels: dict[str, int]
                ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(event 0/1 or NaN, cause code or NaN where blank or unknown, blank) of a 0/1 event column beside a cause
    column; `labels` maps `cause_label` spellings to codes."""
    event = pd.to_numeric(frame[event_column], errors="coerce").astype(float)
    raw = frame[cause_column] if cause_column in frame.columns else pd.Series(pd.NA, index=frame.index)
    blank = (raw.isna() | raw.astype("string").str.strip().eq("")).fillna(True).astype(bool)
    code = raw.where(~blank).map(lambda value: labels.get(cause_label(value)) if pd.notna(value) else None)
    return event, pd.to_numeric(code, errors="coerce").astype(float), blank


def cause_column_problems(frame: pd.DataFrame, event_column: str, cause_column: str, labels: dict[str, int],
                          cause_names: dict[int, str]) -> list[Problem]:
    """Row-level coherence of a 0/1 event column and its cause column (1-based rows, no values echoed): an event
    needs a known cause, a censored row has none, and every cause occurs."""
    if event_column not in frame.columns or cause_column not in frame.columns:
        return []  # reported as missing columns by validate_frame
    event, code, blank = _cause_rows(frame, event_column, cause_column, labels)
    allowed = ", ".join(sorted(labels))
    rules = [
        ((event == 1) & blank, f"an event ({event_column} = 1) needs its cause"),
        ((event == 1) & ~blank & code.isna(), f"not a cause label of the task; allowed: {allowed}"),
        ((event == 0) & ~blank, f"a censored row ({event_column} = 0) has no cause: leave it empty"),
    ]
    problems = [Problem(int(position) + 1, cause_column, None, rule)
                for mask, rule in rules for position in np.flatnonzero(mask.to_numpy(bool))]
    if (event == 1).any():
        problems += [Problem(None, cause_column, None, f"no event of cause {name!r}: nothing to learn it from")
                     for number, name in cause_names.items() if not ((event == 1) & (code == number)).any()]
    return problems


def cause_column_codes(frame: pd.DataFrame, time_column: str, event_column: str, cause_column: str,
                       labels: dict[str, int], *, allow_all_censored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(months, code 0..K) of a frame that passed `cause_column_problems`: 0 where censored, else the cause's code."""
    event, code, _ = _cause_rows(frame, event_column, cause_column, labels)
    codes = np.where(event.to_numpy() == 1, code.fillna(-1).to_numpy(), 0)
    return check_survival_target(frame[time_column], codes, n_causes=max(labels.values()),
                                 allow_all_censored=allow_all_censored)
