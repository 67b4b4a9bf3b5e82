"""Cross-field rules and derived predictors of the `all_frontline` task (frontline ALL from the end of
consolidation, clinical-evidence F); `task.toml` beside this file names them. The MRD rules and the derived log
reduction are shared with all_hsct (`features/mrd_rules.py`). True = the row is fine; a missing value never fails
a rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.mrd_rules import flag, is_category, number

T_LINEAGE_SUBGROUPS = ("t_etp", "t_non_etp")
# NCI/Rome standard risk: age 1 to < 10 years and WBC < 50 x 10^9/L (clinical-evidence F.0).
NCI_STANDARD_AGE = (1.0, 10.0)
NCI_STANDARD_WBC_BELOW = 50.0


def nci_risk_group(frame: pd.DataFrame) -> pd.Series:
    """NCI/Rome group from age and WBC at diagnosis; missing when either is missing."""
    age, wbc = number(frame, "age_years"), number(frame, "wbc_at_diagnosis")
    low, high = NCI_STANDARD_AGE
    standard = (age >= low) & (age < high) & (wbc < NCI_STANDARD_WBC_BELOW)
    groups = np.where(standard, "standard", "high").astype(object)
    groups[(age.isna() | wbc.isna()).to_numpy()] = None
    return pd.Series(groups, index=frame.index, name="nci_risk_group")


def nci_risk_group_matches_age_and_wbc(frame: pd.DataFrame) -> pd.Series:
    """A group sent with the data must be the one age and WBC give."""
    if "nci_risk_group" not in frame.columns:
        return pd.Series(True, index=frame.index)
    derived = nci_risk_group(frame)
    given = frame["nci_risk_group"]
    unknown = given.isna() | derived.isna()
    return unknown | (given.astype("string") == derived.astype("string")).fillna(True).astype(bool)


def genetic_subgroup_matches_lineage(frame: pd.DataFrame) -> pd.Series:
    """t_etp / t_non_etp belong to T-lineage ALL, every other subgroup to B-lineage."""
    t_subgroup = pd.Series(False, index=frame.index)
    for subgroup in T_LINEAGE_SUBGROUPS:
        t_subgroup |= is_category(frame, "genetic_subgroup", subgroup)
    known = frame["genetic_subgroup"].notna() if "genetic_subgroup" in frame else pd.Series(False, index=frame.index)
    b_lineage, t_lineage = is_category(frame, "lineage", "B"), is_category(frame, "lineage", "T")
    return ~((t_subgroup & b_lineage) | (known & ~t_subgroup & t_lineage))


def ikzf1_deletion_only_in_b_lineage(frame: pd.DataFrame) -> pd.Series:
    """IKZF1 deletion is a B-lineage lesion: recorded false for T-lineage ALL."""
    return ~((flag(frame, "ikzf1_deletion") == 1.0) & is_category(frame, "lineage", "T"))
