"""Outcome code of `ebmt_hsct_death_cause`, one of the EBMT real-data tasks: allogeneic transplants in the
public EBMT extracts of the R package mstate. `task.toml` beside this file names the check registered here.

Time zero is the transplant day; every predictor is known then. The two extracts hold different patients and
different outcomes, so they are two tasks sharing one set of predictors (clarifications section 8):

- `ebmt_hsct` (extract `ebmt3`, 2,204 transplants 1995-1998): relapse-free survival, a single event (relapse or
  death, whichever comes first). Platelet recovery (`prtime`, `prstat`) happens after the transplant and is never
  a predictor (clarifications section 1).
- `ebmt_hsct_death_cause` (extract `ebmt2`, 8,966 transplants 1985-1998): the cause of death, as competing risks:
  death from relapse (cause 1) vs death from any other cause (cause 2: GvHD, infections, other). The extract
  records no relapse dates, so this is not relapse incidence. Overall survival is 1 minus both incidences.

Predictors are the extracts' coarse classes: disease subclass, age class, donor-recipient **gender** mismatch
(mstate's `match`/`drmatch`; not HLA), T-cell depletion and transplant-year class. No centre is recorded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.survival_target import check_survival_target
from features.task_schema import Problem

OS_TIME = "os_months"
DEAD = "dead"
CAUSE_OF_DEATH = "cause_of_death"
RELAPSE_CAUSE = "relapse"


def _blank(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].isna() | frame[column].astype("string").str.strip().eq("").fillna(True)


def death_cause_outcome_problems(frame: pd.DataFrame) -> list[Problem]:
    """Row-level coherence of `dead` and `cause_of_death` (1-based rows, like `validate_frame`).

    A death needs its cause, a patient alive at last contact has none, and both causes must occur in the file.
    """
    if DEAD not in frame.columns or CAUSE_OF_DEATH not in frame.columns:
        return []  # reported as missing columns by validate_frame
    problems: list[Problem] = []
    dead = pd.to_numeric(frame[DEAD], errors="coerce")
    blank = _blank(frame, CAUSE_OF_DEATH)
    for position in np.flatnonzero(((dead == 1) & blank).to_numpy(bool)):
        problems.append(Problem(int(position) + 1, CAUSE_OF_DEATH, None, "a death (dead = 1) needs its cause"))
    for position in np.flatnonzero(((dead == 0) & ~blank).to_numpy(bool)):
        problems.append(Problem(int(position) + 1, CAUSE_OF_DEATH, frame[CAUSE_OF_DEATH].iloc[position],
                                "a patient alive at last contact (dead = 0) has no cause of death: leave it empty"))
    causes = frame[CAUSE_OF_DEATH].astype("string").str.strip()
    died = dead == 1
    if died.any() and not (died & causes.eq(RELAPSE_CAUSE).fillna(False)).any():
        problems.append(Problem(None, CAUSE_OF_DEATH, None, "no death from relapse: nothing to learn cause 1 from"))
    if died.any() and not (died & ~causes.eq(RELAPSE_CAUSE).fillna(True)).any():
        problems.append(Problem(None, CAUSE_OF_DEATH, None, "no death from another cause: nothing to learn "
                                                            "cause 2 from"))
    return problems


def death_cause_target(frame: pd.DataFrame, *, allow_all_censored: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(months, code) from the raw outcome columns, coded as task.toml's causes: 1 = death from relapse,
    2 = death from any other cause, 0 = alive at last contact (censored). The frame must pass
    `death_cause_outcome_problems`."""
    months = pd.to_numeric(frame[OS_TIME], errors="coerce").to_numpy(float)
    dead = pd.to_numeric(frame[DEAD], errors="coerce").to_numpy(float) == 1
    from_relapse = frame[CAUSE_OF_DEATH].astype("string").str.strip().eq(RELAPSE_CAUSE).fillna(False).to_numpy(bool)
    code = np.where(dead & from_relapse, 1, np.where(dead, 2, 0))
    return check_survival_target(months, code, n_causes=2, allow_all_censored=allow_all_censored)
