"""Code of the `all_hsct` task (outcome after allogeneic stem-cell transplant in adult ALL, clinical-evidence B.2
and C): cross-field rules, the derived MRD log reduction, outcome checks and endpoint targets that `task.toml`
beside this file names.

Time zero is the transplant day. Relapse and non-relapse mortality (NRM) compete; overall survival (OS),
leukaemia-free survival (LFS) and GVHD-free relapse-free survival (GRFS) are derived endpoints. A row carries six
raw outcome columns (clarifications section 2), from which `derive_endpoints` builds each endpoint's
(months, event code). The spec's single time/event pair is the primary outcome, relapse; the other four raw
columns are listed in `ALL_HSCT_OUTCOME_COLUMNS`. Event times in months.

The MRD columns (derived log reduction, level/detectable/sensitivity rules) are shared with the frontline ALL
task and live in `features/mrd_rules.py`.

Names avoid the words the leakage test reserves for follow-up fields ("status", months as a predictor unit):
Ph status is `ph_chromosome`, disease status at transplant is `disease_stage` (the EBMT-score term), and the
time from diagnosis to transplant is `diagnosis_to_hct_years` (a registry file may send it in months or days by
suffix, as for the CML durations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.mrd_rules import (
    Record,
    mrd_log_reduction,  # noqa: F401  (the folder's derived predictor, re-exported)
    record_flag,
    record_is,
    record_number,
)
from features.mrd_rules import flag as _flag
from features.mrd_rules import is_category as _is
from features.mrd_rules import number as _number
from features.survival_target import check_survival_target
from features.task_schema import Problem

TIME_TO_RELAPSE = "months_to_relapse_or_last_contact"
RELAPSED = "relapsed"
TIME_TO_DEATH = "months_to_death_or_last_contact"
DEAD = "dead"
TIME_TO_AGVHD34 = "months_to_agvhd34"
TIME_TO_CGVHD = "months_to_systemic_cgvhd"
ALL_HSCT_OUTCOME_COLUMNS = (TIME_TO_RELAPSE, RELAPSED, TIME_TO_DEATH, DEAD, TIME_TO_AGVHD34, TIME_TO_CGVHD)

# Event codes of the derived endpoints (0 is always "censored": event-free when last seen).
COMPETING_CAUSES = {1: "relapse", 2: "nrm"}
GRFS_CAUSES = {1: "relapse", 2: "nrm", 3: "agvhd34", 4: "systemic_cgvhd"}


# --- cross-field rules (True = row is fine; a missing value never fails a rule) ----------------------------

def tki_only_for_ph_positive(frame: pd.DataFrame) -> pd.Series:
    return ~((_flag(frame, "tki_before_hct") == 1.0) & _is(frame, "ph_chromosome", "negative"))


def female_donor_to_male_needs_male(frame: pd.DataFrame) -> pd.Series:
    return ~((_flag(frame, "female_donor_to_male_recipient") == 1.0) & _is(frame, "sex", "female"))


def diagnosis_not_before_birth(frame: pd.DataFrame) -> pd.Series:
    """The leukaemia was diagnosed after birth: the time from diagnosis to transplant cannot exceed the age."""
    return ~(_number(frame, "diagnosis_to_hct_years") > _number(frame, "age_at_hct_years") + 1e-9)


def record_rules() -> dict[str, Callable[[Record], bool]]:
    """The three rules above on one record (a one-patient request), under their task.toml codes."""
    return {
        "tki_only_for_ph_positive": lambda r: not (record_flag(r, "tki_before_hct") == 1.0
                                                   and record_is(r, "ph_chromosome", "negative")),
        "female_donor_to_male_needs_male": lambda r: not (record_flag(r, "female_donor_to_male_recipient") == 1.0
                                                          and record_is(r, "sex", "female")),
        "diagnosis_not_before_birth": lambda r: not (record_number(r, "diagnosis_to_hct_years")
                                                     > record_number(r, "age_at_hct_years") + 1e-9),
    }


# --- outcome columns: registry checks and derived endpoints ------------------------------------------------

def outcome_problems_all_hsct(frame: pd.DataFrame) -> list[Problem]:
    """Every row-level problem of the six raw outcome columns (1-based rows, like `validate_frame`).

    Rules: the four core columns present; times are numbers >= 0 months (relapse and death times required,
    GVHD times empty when the event did not happen); `relapsed` and `dead` are 0 or 1; survival follow-up
    cannot end before relapse follow-up (death after relapse is fine, death before a recorded relapse is not);
    a non-relapsed death has no relapse follow-up beyond the death; GVHD cannot be recorded after death or last
    contact; and the file holds at least one relapse or death.
    """
    problems: list[Problem] = []
    missing_columns = [c for c in ALL_HSCT_OUTCOME_COLUMNS[:4] if c not in frame.columns]
    problems += [Problem(None, c, None, "required outcome column is missing") for c in missing_columns]
    if missing_columns:
        return problems

    def report(mask: pd.Series, column: str, rule: str) -> None:
        raw = frame[column]
        for position in np.flatnonzero(mask.fillna(False).to_numpy(bool)):
            value = raw.iloc[position]
            problems.append(Problem(int(position) + 1, column, None if pd.isna(value) else value, rule))

    def blank(column: str) -> pd.Series:
        return frame[column].isna() | frame[column].astype("string").str.strip().eq("").fillna(True)

    times = {}
    for column in (TIME_TO_RELAPSE, TIME_TO_DEATH, TIME_TO_AGVHD34, TIME_TO_CGVHD):
        if column not in frame.columns:
            times[column] = pd.Series(np.nan, index=frame.index, dtype=float)
            continue
        empty = blank(column)
        months = _number(frame, column)
        optional = column in (TIME_TO_AGVHD34, TIME_TO_CGVHD)
        if not optional:
            report(empty, column, "event time must be a number of months (not missing)")
        report(~empty & months.isna(), column, "event time must be a number of months")
        report(months < 0, column, "event time must be >= 0 months")
        times[column] = months.where(months >= 0)
    flags = {}
    for column in (RELAPSED, DEAD):
        code = _number(frame, column)
        report(code.isna() | ~code.isin((0.0, 1.0)), column, "must be 0 or 1 (not missing)")
        flags[column] = code.where(code.isin((0.0, 1.0)))
    relapse_time, death_time = times[TIME_TO_RELAPSE], times[TIME_TO_DEATH]
    report(death_time < relapse_time, TIME_TO_DEATH,
           f"death or last contact cannot come before relapse or last contact ({TIME_TO_RELAPSE})")
    report((flags[DEAD] == 1) & (flags[RELAPSED] == 0) & (relapse_time > death_time), TIME_TO_RELAPSE,
           "relapse follow-up cannot go on after death")
    for column in (c for c in (TIME_TO_AGVHD34, TIME_TO_CGVHD) if c in frame.columns):
        report(times[column] > death_time, column, f"GVHD cannot be recorded after death or last contact "
                                                   f"({TIME_TO_DEATH})")
    if flags[RELAPSED].notna().any() and not ((flags[RELAPSED] == 1) | (flags[DEAD] == 1)).any():
        problems.append(Problem(None, RELAPSED, 0, "no relapse and no death: nothing to learn from"))
    return problems


def derive_endpoints(frame: pd.DataFrame, *, allow_all_censored: bool = False
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each endpoint's (months, event code) from the six raw outcome columns; every pair passes
    `check_survival_target`.

    Returns a dict of (time in months as float array, event code as int array):

    - ``"competing"``: one row per patient. Code 1 = relapse at `months_to_relapse_or_last_contact`;
      2 = non-relapse mortality, death without a recorded relapse, at `months_to_death_or_last_contact`;
      0 = alive and relapse-free, censored at `months_to_relapse_or_last_contact`. LFS is 1 - CIF(1) - CIF(2).
    - ``"os"``: one row per patient, `months_to_death_or_last_contact`; 1 = dead (any cause), 0 = censored.
    - ``"grfs"``: one row per patient, the first of relapse (1), non-relapse death (2), grade III-IV acute GVHD
      (3), systemic chronic GVHD (4); on a tie the lower code wins. GVHD counts only up to the competing-risks
      time (relapse, death or end of relapse follow-up). Without any of them, censored (0) at the competing-risks
      time; so the GRFS time never exceeds it and GRFS <= LFS at every time.
    - ``"post_relapse"``: only the rows with `relapsed == 1`, in frame order (select them with
      ``frame["relapsed"] == 1``): months from relapse to death or last contact; 1 = dead, 0 = censored.

    The frame must pass `outcome_problems_all_hsct`. `allow_all_censored` is passed to `check_survival_target`
    (post_relapse always allows it: every relapsed patient may still be alive).
    """
    relapse_time = _number(frame, TIME_TO_RELAPSE).to_numpy(float)
    death_time = _number(frame, TIME_TO_DEATH).to_numpy(float)
    relapsed = _number(frame, RELAPSED).to_numpy(float) == 1
    dead = _number(frame, DEAD).to_numpy(float) == 1
    nrm = dead & ~relapsed

    competing_time = np.where(nrm, death_time, relapse_time)
    competing_code = np.where(relapsed, 1, np.where(nrm, 2, 0))

    # GRFS: candidate times per cause (inf = did not happen), the first wins, ties to the lower code. GVHD
    # after relapse, death or the end of relapse follow-up does not enter (GRFS follow-up is relapse follow-up).
    gvhd = [_number(frame, c).to_numpy(float) for c in (TIME_TO_AGVHD34, TIME_TO_CGVHD)]
    candidates = np.column_stack([
        np.where(relapsed, relapse_time, np.inf),
        np.where(nrm, death_time, np.inf),
        *[np.where(g <= competing_time, g, np.inf) for g in gvhd],  # NaN (no GVHD) compares False
    ])
    first = np.argmin(candidates, axis=1)  # argmin returns the first (lowest code) of tied minima
    first_time = candidates[np.arange(len(candidates)), first]
    had_event = np.isfinite(first_time)
    grfs_time = np.where(had_event, first_time, competing_time)
    grfs_code = np.where(had_event, first + 1, 0)

    endpoints = {
        "competing": check_survival_target(competing_time, competing_code, n_causes=2,
                                           allow_all_censored=allow_all_censored),
        "os": check_survival_target(death_time, dead.astype(int), allow_all_censored=allow_all_censored),
        "grfs": check_survival_target(grfs_time, grfs_code, n_causes=4, allow_all_censored=allow_all_censored),
        "post_relapse": check_survival_target(death_time[relapsed] - relapse_time[relapsed],
                                              dead[relapsed].astype(int), allow_all_censored=True),
    }
    return endpoints
