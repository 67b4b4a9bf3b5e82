"""The EBMT real-data tasks: allogeneic transplants in the public EBMT extracts of the R package mstate.

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
from features.task_schema import Predictor, Problem, TaskSchema

TIME_UNIT_SUFFIXES = ("months", "days", "years")
HORIZONS_MONTHS = (12, 24, 36, 60)
MAIN_HORIZON_MONTHS = 24
TIME_ZERO = "the day of the allogeneic stem-cell transplant"

EBMT_PREDICTORS = (
    Predictor("disease_subclass", "category",
              "Disease transplanted: acute myeloid leukaemia (AML), acute lymphoblastic leukaemia (ALL) or chronic "
              "myeloid leukaemia (CML)", categories=("AML", "ALL", "CML"), example="AML"),
    Predictor("age_class", "category",
              "Recipient age at transplant in years, as a class: 20 or younger, over 20 up to 40, over 40",
              categories=("<=20", "20-40", ">40"), example="20-40"),
    Predictor("donor_recipient_gender_mismatch", "boolean",
              "Donor and recipient of different gender (mstate's drmatch/match: gender, not HLA matching)",
              example=False),
    Predictor("t_cell_depletion", "boolean", "T-cell depletion of the graft (optional: empty when unknown)",
              required=False, example=False),
    Predictor("transplant_year_class", "category", "Calendar period of the transplant",
              categories=("1985-1989", "1990-1994", "1995-1998"), example="1995-1998"),
)
EBMT_GROUPING = (
    Predictor("centre", "text", "Transplant centre code (grouping and reporting only, never a predictor; the "
              "public extracts have none)", required=False, example=None),
    Predictor("country", "text", "Country code, ISO 3166 alpha-2 (grouping and reporting only)", required=False,
              example=None),
)

# --- ebmt_hsct: relapse-free survival (ebmt3) ---------------------------------------------------------------

RFS_TIME = "rfs_months"
RFS_EVENT = "rfs_event"

EBMT_HSCT_SCHEMA = TaskSchema(
    task="ebmt_hsct",
    title="Allogeneic transplant for AML, ALL or CML (public EBMT extract): relapse-free survival",
    time_zero=TIME_ZERO,
    event_description="relapse or death, whichever comes first (the end of relapse-free survival)",
    time_column=RFS_TIME,
    event_column=RFS_EVENT,
    time_unit_suffixes=TIME_UNIT_SUFFIXES,
    horizons_months=HORIZONS_MONTHS,
    main_horizon_months=MAIN_HORIZON_MONTHS,
    endpoint_names={"relapse_or_death": "incidence", "relapse_free_survival": "survival"},
    endpoint_descriptions={
        "relapse_or_death": "probability of relapse or death by t months after the transplant",
        "relapse_free_survival": "probability of being alive without relapse at t months (1 minus the above)",
    },
    predictors=EBMT_PREDICTORS,
    grouping=EBMT_GROUPING,
)

# --- ebmt_hsct_death_cause: death from relapse vs other causes (ebmt2) -------------------------------------

OS_TIME = "os_months"
DEAD = "dead"
CAUSE_OF_DEATH = "cause_of_death"
RELAPSE_CAUSE = "relapse"
DEATH_CAUSES = ("relapse", "gvhd", "bacterial_infection", "viral_infection", "fungal_infection", "other")
# Event codes of the competing-risk target (0 = alive at last contact, censored).
COMPETING_CAUSES = {1: "death_from_relapse", 2: "death_from_other_causes"}


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
    """(months, code) from the raw outcome columns: 1 = death from relapse, 2 = death from any other cause,
    0 = alive at last contact (censored). The frame must pass `death_cause_outcome_problems`."""
    months = pd.to_numeric(frame[OS_TIME], errors="coerce").to_numpy(float)
    dead = pd.to_numeric(frame[DEAD], errors="coerce").to_numpy(float) == 1
    from_relapse = frame[CAUSE_OF_DEATH].astype("string").str.strip().eq(RELAPSE_CAUSE).fillna(False).to_numpy(bool)
    code = np.where(dead & from_relapse, 1, np.where(dead, 2, 0))
    return check_survival_target(months, code, n_causes=2, allow_all_censored=allow_all_censored)


EBMT_HSCT_DEATH_CAUSE_SCHEMA = TaskSchema(
    task="ebmt_hsct_death_cause",
    title="Allogeneic transplant for AML, ALL or CML (public EBMT extract): death from relapse vs other causes",
    time_zero=TIME_ZERO,
    event_description="death from any cause; its cause (`cause_of_death`) says whether it was from relapse or "
                      "from another cause, and the two compete",
    time_column=OS_TIME,
    event_column=DEAD,
    time_unit_suffixes=TIME_UNIT_SUFFIXES,
    extra_outcome_columns=(
        Predictor(CAUSE_OF_DEATH, "category",
                  "Cause of death: relapse, graft-versus-host disease (gvhd), bacterial, viral or fungal infection, "
                  "or other; empty when alive", categories=DEATH_CAUSES, required=False),
    ),
    outcome_check=death_cause_outcome_problems,
    horizons_months=HORIZONS_MONTHS,
    main_horizon_months=MAIN_HORIZON_MONTHS,
    endpoint_names={"death_from_relapse": "incidence", "death_from_other_causes": "incidence", "os": "survival"},
    endpoint_descriptions={
        "death_from_relapse": "cumulative incidence of death from relapse by t months (death from other causes "
                              "competes); not the incidence of relapse itself, which the extract does not date",
        "death_from_other_causes": "cumulative incidence of death from any other cause (GvHD, infection, other) "
                                   "by t months, death from relapse competing",
        "os": "overall survival: probability of being alive at t months (1 minus both incidences)",
    },
    predictors=EBMT_PREDICTORS,
    grouping=EBMT_GROUPING,
)
