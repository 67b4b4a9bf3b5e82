"""Today's risk groups for frontline ALL, as rules the spec's `[[comparators]]` name (clinical-evidence F.0).

Each takes the task's frame (contract columns) and returns one group per row. MRD values are log10 of the
leukaemic-cell fraction, empty when undetectable; an undetectable result only counts as "negative" when the assay
could see 1e-4 (sensitivity log10 <= -4), as both trials required; a less sensitive negative result proves nothing
about a 1e-4 cut. The folder's `__init__.py` registers them: `TaskCode(comparators=COMPARATORS)`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.all_frontline.rules import nci_risk_group

CUT_1E4 = -4.0  # log10(1e-4)
CUT_1E3 = -3.0  # log10(1e-3)
TOLERANCE = 1e-9  # a value recorded as exactly 1e-4 is at the cut, whatever the float rounding


def nci_rome_group(frame: pd.DataFrame) -> pd.Series:
    """NCI/Rome: standard = age 1 to under 10 years and WBC under 50 x 10^9/L; high otherwise (adults included).
    The same rule derives the task's `nci_risk_group` predictor."""
    return nci_risk_group(frame).rename(None)


def _detected(frame: pd.DataFrame, point: str) -> pd.Series:
    """Detectable at the time point: the flag, or, where the flag is missing, a recorded value."""
    value = frame[f"mrd_{point}_log10"]
    flag = frame[f"mrd_{point}_detectable"].astype("boolean")
    return flag.fillna(value.notna()).astype(bool)


def _negative(frame: pd.DataFrame, point: str) -> pd.Series:
    """Undetectable with an assay sensitive to at least 1e-4."""
    sensitive = frame["mrd_assay_sensitivity_log10"].astype(float) <= CUT_1E4 + TOLERANCE
    return ~_detected(frame, point) & sensitive


def _at_least(frame: pd.DataFrame, point: str, cut: float) -> pd.Series:
    value = frame[f"mrd_{point}_log10"].astype(float)
    return _detected(frame, point) & (value >= cut - TOLERANCE)


def ukall2003_mrd_group(frame: pd.DataFrame) -> pd.Series:
    """UKALL2003-style MRD risk: high = >= 1e-4 at the end of induction; low = negative at the end of induction,
    or detectable below 1e-4 then and negative at the end of consolidation; indeterminate otherwise (below 1e-4
    at both, or a negative result from an assay that cannot see 1e-4).

    Indeterminate stays its own group in the Cox model (its risk is estimated, not assumed) and counts as standard
    intensity in the reclassification: UKALL2003 treated these patients by their clinical risk group, outside the
    MRD randomisations, not on the augmented arm."""
    high = _at_least(frame, "eoi", CUT_1E4)
    below = _detected(frame, "eoi") & ~high
    low = _negative(frame, "eoi") | (below & _negative(frame, "eoc"))
    return pd.Series(np.select([high, low], ["high", "low"], "indeterminate"), index=frame.index)


def aieop_bfm_mrd_group(frame: pd.DataFrame) -> pd.Series:
    """AIEOP-BFM ALL 2000-style MRD risk: standard = negative at both time points; high = >= 1e-3 at the second
    (end of consolidation); intermediate otherwise. The end of induction and consolidation stand for TP1 (day 33)
    and TP2 (day 78)."""
    standard = _negative(frame, "eoi") & _negative(frame, "eoc")
    high = _at_least(frame, "eoc", CUT_1E3)
    return pd.Series(np.select([high, standard], ["high", "standard"], "intermediate"), index=frame.index)


COMPARATORS = {
    "nci_rome_group": nci_rome_group,
    "ukall2003_mrd_group": ukall2003_mrd_group,
    "aieop_bfm_mrd_group": aieop_bfm_mrd_group,
}
