"""MRD columns shared by the ALL task folders (all_hsct, all_frontline): reading a column whatever its dtype, the
derived log reduction between end of induction and end of consolidation, and the cross-field rules on a level,
its detectable flag and the assay sensitivity.

MRD below the assay's detection limit is recorded as undetectable: an empty `mrd_<tp>_log10`,
`mrd_<tp>_detectable` false and `mrd_assay_sensitivity_log10` (never 0, never a made-up small number). Only the
log reduction lets the sensitivity stand in for an undetectable value. Every rule returns True where the row is
fine; a missing value never fails a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

# Rounding allowance when a registry reports the log reduction with two decimals.
LOG_REDUCTION_TOLERANCE = 0.011

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}
_FLAG_WORDS = {**dict.fromkeys(_TRUE, 1.0), **dict.fromkeys(_FALSE, 0.0)}


# --- small pure helpers (they accept validated frames, generator output and one-row request frames) ------------


def number(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as float, NaN where missing or not a number (all NaN when the frame lacks it)."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def flag(frame: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column as float 1/0/NaN, whether it holds bools, 1.0/0.0, text or None."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    # Element by element rather than through pandas string methods: a one-row request pays no fixed overhead.
    flags = [
        np.nan if absent(value) else _FLAG_WORDS.get(str(value).strip().lower(), np.nan)
        for value in frame[column].to_numpy(dtype=object)
    ]
    return pd.Series(flags, index=frame.index, dtype=float)


def is_category(frame: pd.DataFrame, column: str, value: str) -> pd.Series:
    """True where the column holds this category (plain bool, False when missing)."""
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    matches = [not absent(held) and str(held).strip() == value for held in frame[column].to_numpy(dtype=object)]
    return pd.Series(matches, index=frame.index, dtype=bool)


def absent(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


# --- the same on one record (a dict of plain values): a one-patient request is checked without a DataFrame ---------
# Each gives what its frame version gives on a one-row frame of that record (tests/features/test_record_rules.py).

Record = Mapping[str, Any]


def record_number(record: Record, column: str) -> float:
    value = record.get(column)
    if absent(value):
        return np.nan
    if isinstance(value, bool | int | float | np.number):
        return float(value)
    return float(pd.to_numeric(value, errors="coerce"))


def record_flag(record: Record, column: str) -> float:
    value = record.get(column)
    return np.nan if absent(value) else _FLAG_WORDS.get(str(value).strip().lower(), np.nan)


def record_is(record: Record, column: str, value: str) -> bool:
    held = record.get(column)
    return not absent(held) and str(held).strip() == value


def record_mrd_level(record: Record, time_point: str) -> float:
    value = record_number(record, f"mrd_{time_point}_log10")
    if value == value:
        return value
    undetectable = record_flag(record, f"mrd_{time_point}_detectable") == 0.0
    return record_number(record, "mrd_assay_sensitivity_log10") if undetectable else np.nan


def record_mrd_log_reduction(record: Record) -> float | None:
    """`mrd_log_reduction` of one record; None when unknown. numpy's rounding, as pandas' `round` uses."""
    reduction = float(np.round(record_mrd_level(record, "eoi") - record_mrd_level(record, "eoc"), 2))
    return None if reduction != reduction else reduction


def mrd_record_rules() -> dict[str, Callable[[Record], bool]]:
    """`mrd_rules` on one record, under the same codes."""

    def level_only_when_detectable_record(time_point: str) -> Callable[[Record], bool]:
        return lambda r: not (record_number(r, f"mrd_{time_point}_log10") == record_number(
            r, f"mrd_{time_point}_log10") and record_flag(r, f"mrd_{time_point}_detectable") == 0.0)

    def level_not_below_sensitivity_record(time_point: str) -> Callable[[Record], bool]:
        return lambda r: not (record_number(r, f"mrd_{time_point}_log10")
                              < record_number(r, "mrd_assay_sensitivity_log10") - 1e-9)

    def log_reduction_is_derived_record(record: Record) -> bool:
        given, derived = record_number(record, "mrd_log_reduction"), record_mrd_log_reduction(record)
        derived = np.nan if derived is None else derived
        return (given != given and derived != derived) or abs(given - derived) <= LOG_REDUCTION_TOLERANCE

    return {
        "eoi_level_only_when_detectable": level_only_when_detectable_record("eoi"),
        "eoc_level_only_when_detectable": level_only_when_detectable_record("eoc"),
        "eoi_level_not_below_sensitivity": level_not_below_sensitivity_record("eoi"),
        "eoc_level_not_below_sensitivity": level_not_below_sensitivity_record("eoc"),
        "log_reduction_is_derived": log_reduction_is_derived_record,
    }


def mrd_level(frame: pd.DataFrame, time_point: str) -> pd.Series:
    """log10 MRD at a time point, the assay sensitivity standing in for an undetectable value; NaN if unknown."""
    value = number(frame, f"mrd_{time_point}_log10")
    detectable = flag(frame, f"mrd_{time_point}_detectable")
    sensitivity = number(frame, "mrd_assay_sensitivity_log10")
    return value.where(value.notna(), sensitivity.where(detectable == 0.0))


def mrd_log_reduction(frame: pd.DataFrame) -> pd.Series:
    """Log10 MRD reduction from end of induction to end of consolidation: eoi - eoc (positive = MRD fell).

    An undetectable value counts as the assay sensitivity (`mrd_assay_sensitivity_log10`), so undetectable at
    both time points gives 0 and a detectable level falling below detection gives at least eoi - sensitivity.
    NaN when either time point is unknown (missing level of a detectable sample, or an undetectable one without
    the sensitivity). Rounded to 2 decimals.
    """
    return (mrd_level(frame, "eoi") - mrd_level(frame, "eoc")).round(2).rename("mrd_log_reduction")


# --- cross-field rules ------------------------------------------------------------------------------------------


def level_only_when_detectable(time_point: str) -> Callable[[pd.DataFrame], pd.Series]:
    """An MRD level is given only for a detectable sample (an undetectable one is never a number, not even 0)."""

    def holds(frame: pd.DataFrame) -> pd.Series:
        value = number(frame, f"mrd_{time_point}_log10")
        return ~(value.notna() & (flag(frame, f"mrd_{time_point}_detectable") == 0.0))

    return holds


def level_not_below_sensitivity(time_point: str) -> Callable[[pd.DataFrame], pd.Series]:
    """A detectable level cannot lie below what the assay can detect."""

    def holds(frame: pd.DataFrame) -> pd.Series:
        value = number(frame, f"mrd_{time_point}_log10")
        sensitivity = number(frame, "mrd_assay_sensitivity_log10")
        return ~(value < sensitivity - 1e-9)

    return holds


def log_reduction_is_derived(frame: pd.DataFrame) -> pd.Series:
    """A log reduction sent with the data must be the one the two time points give."""
    given, derived = number(frame, "mrd_log_reduction"), mrd_log_reduction(frame)
    both_missing = given.isna() & derived.isna()
    agree = (given - derived).abs() <= LOG_REDUCTION_TOLERANCE
    return both_missing | agree


def mrd_rules() -> dict[str, Callable[[pd.DataFrame], pd.Series]]:
    """The MRD rules under the codes both ALL task specs use."""
    return {
        "eoi_level_only_when_detectable": level_only_when_detectable("eoi"),
        "eoc_level_only_when_detectable": level_only_when_detectable("eoc"),
        "eoi_level_not_below_sensitivity": level_not_below_sensitivity("eoi"),
        "eoc_level_not_below_sensitivity": level_not_below_sensitivity("eoc"),
        "log_reduction_is_derived": log_reduction_is_derived,
    }
