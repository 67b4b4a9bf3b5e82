"""Cross-field rules and derived predictors of the `all_frontline` task (frontline ALL from the end of
consolidation, clinical-evidence F); `task.toml` beside this file names them. The MRD rules and the derived log
reduction are shared with all_hsct (`features/mrd_rules.py`). True = the row is fine; a missing value never fails
a rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.mrd_rules import Record, absent, flag, is_category, number, record_flag, record_is, record_number

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


# --- the same on one record (a one-patient request), as the frame versions give them on a one-row frame ---------

def nci_risk_group_record(record: Record) -> str | None:
    age, wbc = record_number(record, "age_years"), record_number(record, "wbc_at_diagnosis")
    if age != age or wbc != wbc:
        return None
    low, high = NCI_STANDARD_AGE
    return "standard" if low <= age < high and wbc < NCI_STANDARD_WBC_BELOW else "high"


def nci_risk_group_matches_age_and_wbc_record(record: Record) -> bool:
    if "nci_risk_group" not in record:
        return True
    given, derived = record["nci_risk_group"], nci_risk_group_record(record)
    return absent(given) or derived is None or str(given) == derived


def genetic_subgroup_matches_lineage_record(record: Record) -> bool:
    t_subgroup = any(record_is(record, "genetic_subgroup", subgroup) for subgroup in T_LINEAGE_SUBGROUPS)
    known = not absent(record.get("genetic_subgroup"))
    return not ((t_subgroup and record_is(record, "lineage", "B"))
                or (known and not t_subgroup and record_is(record, "lineage", "T")))


def ikzf1_deletion_only_in_b_lineage_record(record: Record) -> bool:
    return not (record_flag(record, "ikzf1_deletion") == 1.0 and record_is(record, "lineage", "T"))
