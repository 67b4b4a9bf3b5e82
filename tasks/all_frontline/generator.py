"""Synthetic frontline-ALL population simulated from DIAGNOSIS, and the task's landmark cohort: the patients in
continuous first remission at the end of consolidation, time re-based to that landmark. Calibrated to
clinical-evidence section F (F.1 distributions, F.2/F.3 outcomes, F.6 targets); deterministic for a seed.

From diagnosis each patient goes through induction (death, failure, or remission at about day 33), then
consolidation to the landmark (about weeks 11-16), where relapses and deaths before the landmark remove them from
the task's cohort. After remission two competing cause-specific processes run, relapse and death in remission,
each with a bounded cumulative hazard H(t) = exp(alpha + eta(x)) * G(t), G a gamma distribution function over
months from remission: so relapse has a peak in years 1-3 and a hazard near zero after about 6 years, and the
published hazard ratios act as proportional hazards within an age group.

Assumptions (beyond what section F states):
- [assumption] Age groups at diagnosis: children 1-17 (half under 5, a quarter 5-9), TYA 18-24, adults 25-54,
  older adults 55-85. The trial groups below differ in case mix (paediatric, adult or older-adult groups), in
  accrual period (so follow-up), loss to follow-up and MRD method; they carry no effect of their own on outcome.
- [assumption] MRD is a latent (true) log10 level at the end of induction (EOI), normal with a mean by lineage
  (B -3.75, T -3.5), age group, genetics and WBC (sd 1.1); the end-of-consolidation (EOC) level is EOI minus a
  normal log reduction (B 1.8, T 2.3, adults 1.3 logs; sd 1.1). Induction failure = latent EOI >= 5 % blasts
  (-1.3): about 2 % in children (Schrappe 2.4 %), more in ETP T-ALL and older adults; a latent EOC >= 5 % is a
  relapse at the landmark. The AIEOP-BFM group shares (E12) follow, and of the children with a recorded EOI
  >= 10^-4, 76 % are recorded negative at EOC (UKALL2003: 101/134 = 75 %).
- [assumption] The record is a measurement of the true level: the assay's quantification and sampling error is
  normal, sd 0.5 log10 (replicate PCR/flow values differ by about half a log), so a true level near the
  sensitivity is found or missed by chance (found when the measured value reaches the sensitivity: 50 % at it,
  16 % half a log below, 84 % half a log above). PCR 10^-5 (one group 10^-4), flow 10^-4; a missed level is
  recorded undetectable (empty level, detectable false) -- never 0, never a small number. Relapse follows the
  TRUE level; treatment intensity (and so death in remission) the RECORDED one.
- [assumption] Relapse hazard ratios (RELAPSE_HR) are conditional on the frailty below, which attenuates them, and
  on MRD, which carries part of the genetic effect (good-risk groups have lower MRD). Chosen so that the children's
  marginal HRs vs B-other come out as F.2b says (E15: ETV6::RUNX1 ~0.5, HeH ~0.6, iAMP21 > 3, BCR::ABL1 > 3):
  ETV6::RUNX1 0.62, HeH good-risk profile 0.66 and poor-risk 1.8, KMT2A 2.0, BCR::ABL1 2.6, Ph-like 1.2 (F.2b:
  Ph-like EFS 82 vs 91 %, CRLF2 multivariable HR 1.45 ns), iAMP21 5.5 (Moorman 2010: 6.04), hypodiploid 2.5,
  T non-ETP 1.0, ETP 1.1 (T-ALL's worse EFS, E14, comes through its higher MRD). WBC 1.5 per 10-fold; CNS2
  1.2, CNS3 1.8; boys 1.1; IKZF1 deletion 1.6; age 10-17 2.0, TYA 1.8, adults 2.6, older adults 4.5 vs 1-9 years.
- [assumption] MRD acts through the true levels as steps at the clinical threshold of 10^-4 only: 8 when EOI
  >= 10^-4, and 20 more when EOC stays >= 10^-4 (persistence), so clearance between the time points matters as in
  Borowitz 2015 (E13: 5-y DFS ~79 % cleared vs ~39 % persistent) and the AIEOP-BFM groups separate (E12). No
  per-log effect within a group: the published evidence is group-level (F.2d; Zhou 2007 reports a linear
  association, but no per-log HR was retrieved, F.7), and per-log effects raise discrimination with no target.
- [assumption] Relapse carries a log-normal frailty (sd 2.0) no predictor explains (unmeasured genetics,
  adherence, treatment differences).
- [assumption] Relapse timing: gamma shape 2.2, scale 12 months from remission in patients under 18 and 8 months
  in adults (adult relapses come earlier); death in remission: gamma shape 1.2, scale 10 months (most during
  intensive treatment).
- [assumption] Death in remission by age (vs 1-9 years): 10-17 1.8, TYA 2.4, adults 5.5, older adults 14;
  girls 1.3 (infection-related mortality OR 1.63), BCR::ABL1 1.3, treatment intensified on a recorded EOI MRD
  >= 10^-4 2.0 (F.2e, UKALL2003: regimen B vs A OR 2.11). Induction deaths: 0.6 % children, 2 % TYA, 5 % adults,
  11 % older adults.
- [assumption] Follow-up: each group accrues uniformly over its window (years before the data cut) and loses
  patients to follow-up at its yearly rate; events after the cut are not seen.

Discrimination (E18). A correctly specified Cox on the children's recorded data reaches Harrell's C ~0.81, within
2 SE of F.4's assumed 0.72-0.80 but at its top (the NCI rule: ~0.58). What sets it: E12/E13's contrasts, with
E11's overall relapse incidence of 8-12 %, already give the recorded MRD alone C ~0.79 (Zhou 2007's binary EOI
MRD, 5 vs 44 % relapse, implies ~0.78 [derived]); genetics and clinical factors add ~0.02. Tried (seed of the
test; C of the full Cox): the earlier version (true MRD recorded exactly, steps 5 and 8 on top of per-log effects
1.1 and 1.3, frailty sd 1.4) 0.87; measurement error alone (sd 0.5-0.7) 0.84, but it dilutes the recorded groups,
so E12/E13 fail until the steps are raised; linear per-log effects (1.5 and 2.0 per log) instead of steps 0.84
with E12/E13 failing; relapse timing noise (log-normal sd 0.4 on the time scale) no change; frailty sd 2.0 with
the steps raised to hold E12/E13, plus the measurement error, the UKALL2003 clearance and the intensified-treatment
deaths (which let the MRD-IR group's EFS reach E12 with no more relapses than E11 allows): 0.81, this version.
The checks sit near their edges together (E11 CIR <= 12 %, E14 B EFS >= 84 %, E12 IR EFS <= 82 %, E13
persistent DFS <= 45 %, each + 2 SE): E12's AIEOP-BFM 2000 outcomes are worse than E11/E14's UKALL2003 ones.
With seed 1 instead of the test's, E12's IR EFS comes out at 0.830, just outside its band; seed 2 passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from features.mrd_rules import mrd_log_reduction
from tasks.all_frontline.rules import nci_risk_group

AGE_GROUPS = ("child", "tya", "adult", "older")
GENETIC_SUBGROUPS_B = (
    "b_other",
    "etv6_runx1",
    "heh_good_risk",
    "heh_poor_risk",
    "kmt2a",
    "bcr_abl1",
    "ph_like",
    "iamp21",
    "tcf3_pbx1",
    "hypodiploid",
)
# B-lineage genetic mix by age (F.1a reviews and UKALL; F.1b adults: Ph+ rising with age, low hypodiploid in
# older adults). Children split at 10 years: ETV6::RUNX1 and HeH are diseases of the young child.
B_GENETICS = {
    "child_young": (0.205, 0.27, 0.25, 0.06, 0.02, 0.025, 0.085, 0.022, 0.042, 0.021),
    "child_older": (0.34, 0.10, 0.14, 0.04, 0.03, 0.05, 0.17, 0.04, 0.06, 0.03),
    "tya": (0.33, 0.04, 0.08, 0.02, 0.04, 0.12, 0.25, 0.03, 0.05, 0.04),
    "adult": (0.20, 0.01, 0.04, 0.01, 0.08, 0.28, 0.25, 0.01, 0.04, 0.08),
    "older": (0.20, 0.005, 0.015, 0.005, 0.06, 0.35, 0.18, 0.005, 0.03, 0.15),
}
T_SHARE = {"child": 0.12, "tya": 0.22, "adult": 0.25, "older": 0.07}
ETP_SHARE = {"child": 0.12, "tya": 0.18, "adult": 0.25, "older": 0.30}
MALE_SHARE = {"B": 0.52, "T": 0.75}
# IKZF1 deletion: ~15 % of childhood B-ALL (DFCI, NOPHO), ~50 % in adults, 70-80 % in BCR::ABL1 and Ph-like.
IKZF1_SHARE = {"child": 0.10, "tya": 0.20, "adult": 0.30, "older": 0.30}
IKZF1_SHARE_ABL_CLASS = 0.75
# WBC at diagnosis: log10 normal, median by lineage and genetics (children B ~10, T ~60 x 10^9/L).
WBC_MEDIAN = {"B": 10.0, "T": 60.0}
WBC_SD_LOG10 = 0.55
WBC_SHIFT_LOG10 = {
    "etv6_runx1": -0.1,
    "heh_good_risk": -0.25,
    "heh_poor_risk": -0.2,
    "kmt2a": 0.7,
    "bcr_abl1": 0.3,
    "ph_like": 0.25,
    "iamp21": -0.2,
    "tcf3_pbx1": 0.1,
}
# CNS status (CNS1, CNS2, CNS3): F.1a B (COG AALL0331, AALL0232) and T (COG T-ALL).
CNS_SHARES = {"B": (0.90, 0.08, 0.02), "T": (0.72, 0.20, 0.08)}

# Latent EOI MRD (log10): mean by lineage and age group, shifts by genetics and WBC.
MRD_EOI_MEAN = {"B": -3.75, "T": -3.5}
MRD_EOI_AGE_SHIFT = {"child": 0.0, "tya": 0.3, "adult": 0.5, "older": 0.8}
MRD_EOI_SD = {"B": 1.1, "T": 1.1}
MRD_GENETIC_SHIFT = {
    "etv6_runx1": -0.3,
    "heh_good_risk": -0.4,
    "heh_poor_risk": 0.0,
    "kmt2a": 0.7,
    "bcr_abl1": 1.0,
    "ph_like": 0.6,
    "iamp21": 0.4,
    "tcf3_pbx1": -0.3,
    "hypodiploid": 0.4,
    "t_etp": 0.8,
}
MRD_REDUCTION_MEAN = {"B": 1.8, "T": 2.3}
MRD_REDUCTION_ADULT = 1.3
MRD_REDUCTION_SD = 1.1
INDUCTION_FAILURE_LOG10 = -1.3  # >= 5 % blasts at the end of induction: no remission
MRD_HIGH_LOG10 = 0.0  # a level is a fraction: at most 1
# What the assay records of the true level: a normal quantification and sampling error (log10).
MRD_ASSAY_SD_LOG10 = 0.5

RELAPSE_HR = {
    "etv6_runx1": 0.62,
    "heh_good_risk": 0.66,
    "heh_poor_risk": 1.8,
    "kmt2a": 2.0,
    "bcr_abl1": 2.6,
    "ph_like": 1.2,
    "iamp21": 5.5,
    "tcf3_pbx1": 1.0,
    "hypodiploid": 2.5,
    "t_non_etp": 1.0,
    "t_etp": 1.1,
    "wbc_per_log10": 1.5,
    "cns2": 1.2,
    "cns3": 1.8,
    "male": 1.1,
    "ikzf1_deletion": 1.6,
    "age_10_17": 2.0,
    "tya": 1.8,
    "adult": 2.6,
    "older": 4.5,
    "mrd_eoi_positive": 8.0,
    "mrd_eoc_persistent": 20.0,
}
DEATH_HR = {
    "age_10_17": 1.8,
    "tya": 2.4,
    "adult": 5.5,
    "older": 14.0,
    "female": 1.3,
    "bcr_abl1": 1.3,
    "intensified": 2.0,
}
INDUCTION_DEATH = {"child": 0.006, "tya": 0.02, "adult": 0.05, "older": 0.11}
# log H(infinity) of the reference patient (B-other, 1-9 y, WBC 10, CNS1, girl, true MRD < 10^-4 at both points).
RELAPSE_LOG_SCALE = -6.15
# Unmeasured heterogeneity of relapse (log-normal frailty): what no predictor of the task explains.
RELAPSE_FRAILTY_SD = 2.0
DEATH_LOG_SCALE = -4.3
RELAPSE_TIMING = {"young": (2.2, 12.0), "adult": (2.2, 8.0)}  # gamma (shape, scale in months) from remission
DEATH_TIMING = (1.2, 10.0)
REMISSION_MONTHS = 1.1  # end of induction, about day 33
LANDMARK_MONTHS = (2.6, 3.7)  # end of consolidation, weeks 11-16


@dataclass(frozen=True)
class TrialGroup:
    code: str
    country: str
    weight: float
    age_mix: tuple[float, float, float, float]  # child, TYA, adult, older
    accrual_years: tuple[float, float]  # diagnosed this many years before the data cut (from, to)
    mrd_method: str
    sensitivity_log10: float
    loss_per_year: float


TRIAL_GROUPS = (
    TrialGroup("NL-DCOG", "NL", 0.9, (0.95, 0.05, 0.0, 0.0), (12.0, 1.0), "pcr", -5.0, 0.01),
    TrialGroup("SE-NOPHO", "SE", 0.8, (0.85, 0.15, 0.0, 0.0), (11.0, 0.5), "flow", -4.0, 0.01),
    TrialGroup("DK-NOPHO", "DK", 0.5, (0.85, 0.15, 0.0, 0.0), (5.0, 0.5), "flow", -4.0, 0.02),
    TrialGroup("DE-BFM", "DE", 1.6, (0.97, 0.03, 0.0, 0.0), (13.0, 1.0), "pcr", -5.0, 0.01),
    TrialGroup("IT-AIEOP", "IT", 1.3, (0.97, 0.03, 0.0, 0.0), (10.0, 1.0), "pcr", -5.0, 0.02),
    TrialGroup("AT-BFM", "AT", 0.4, (0.95, 0.05, 0.0, 0.0), (5.5, 0.5), "pcr", -4.0, 0.02),
    TrialGroup("CZ-CPH", "CZ", 0.5, (0.97, 0.03, 0.0, 0.0), (8.0, 0.5), "flow", -4.0, 0.03),
    TrialGroup("FR-FRALLE", "FR", 1.0, (0.95, 0.05, 0.0, 0.0), (6.0, 0.5), "flow", -4.0, 0.02),
    TrialGroup("FR-GRAALL", "FR", 0.9, (0.0, 0.25, 0.60, 0.15), (12.0, 1.0), "pcr", -5.0, 0.03),
    TrialGroup("DE-GMALL", "DE", 0.8, (0.0, 0.20, 0.55, 0.25), (9.0, 0.5), "pcr", -5.0, 0.02),
    TrialGroup("ES-PETHEMA", "ES", 0.6, (0.0, 0.15, 0.55, 0.30), (6.0, 0.5), "flow", -4.0, 0.04),
    TrialGroup("IT-GIMEMA", "IT", 0.5, (0.0, 0.20, 0.60, 0.20), (4.5, 0.5), "pcr", -5.0, 0.03),
    TrialGroup("NL-HOVON", "NL", 0.5, (0.0, 0.10, 0.60, 0.30), (10.0, 1.0), "flow", -4.0, 0.02),
    TrialGroup("BE-EWALL", "BE", 0.35, (0.0, 0.0, 0.10, 0.90), (6.5, 0.5), "flow", -4.0, 0.04),
)

# Outcome codes of the population simulated from diagnosis (the task's cohort keeps 0-2).
FROM_DIAGNOSIS_CODES = {
    0: "censored",
    1: "relapse",
    2: "death_in_remission",
    3: "induction_death",
    4: "induction_failure",
}
PREDICTORS = (
    "age_years",
    "sex",
    "wbc_at_diagnosis",
    "lineage",
    "cns_status",
    "nci_risk_group",
    "genetic_subgroup",
    "ikzf1_deletion",
    "mrd_eoi_log10",
    "mrd_eoi_detectable",
    "mrd_eoc_log10",
    "mrd_eoc_detectable",
    "mrd_assay_sensitivity_log10",
    "mrd_log_reduction",
    "mrd_method",
)


# --- patients at diagnosis ---------------------------------------------------------------------------------------


def _ages(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    n = len(group)
    child_band = rng.choice(3, n, p=(0.52, 0.28, 0.20))
    child = np.select(
        [child_band == 0, child_band == 1], [rng.uniform(1, 5, n), rng.uniform(5, 10, n)], rng.uniform(10, 18, n)
    )
    older = 55 + 30 * rng.beta(1.3, 2.2, n)
    ages = np.select(
        [group == "child", group == "tya", group == "adult"],
        [child, rng.uniform(18, 25, n), rng.uniform(25, 55, n)],
        older,
    )
    return np.clip(np.floor(ages * 10) / 10, 1.0, 99.9)


def _genetics(rng: np.random.Generator, group: np.ndarray, age: np.ndarray, t_lineage: np.ndarray) -> np.ndarray:
    key = np.where(group == "child", np.where(age < 10, "child_young", "child_older"), group)
    subgroup = np.empty(len(group), dtype=object)
    for name, shares in B_GENETICS.items():
        rows = np.flatnonzero(key == name)
        subgroup[rows] = rng.choice(GENETIC_SUBGROUPS_B, len(rows), p=np.asarray(shares) / np.sum(shares))
    etp = rng.uniform(size=len(group)) < np.vectorize(ETP_SHARE.get)(group)
    return np.where(t_lineage, np.where(etp, "t_etp", "t_non_etp"), subgroup)


def _diagnosis(rng: np.random.Generator, n: int) -> pd.DataFrame:
    weights = np.array([g.weight for g in TRIAL_GROUPS])
    centre = rng.choice(len(TRIAL_GROUPS), n, p=weights / weights.sum())
    mixes = np.array([g.age_mix for g in TRIAL_GROUPS])[centre]
    group = np.array(AGE_GROUPS)[(rng.uniform(size=(n, 1)) > np.cumsum(mixes, axis=1)).sum(axis=1)]
    age = _ages(rng, group)
    t_lineage = rng.uniform(size=n) < np.vectorize(T_SHARE.get)(group)
    lineage = np.where(t_lineage, "T", "B")
    genetics = _genetics(rng, group, age, t_lineage)
    male = rng.uniform(size=n) < np.where(t_lineage, MALE_SHARE["T"], MALE_SHARE["B"])
    wbc_median = np.log10(np.where(t_lineage, WBC_MEDIAN["T"], WBC_MEDIAN["B"]))
    wbc_shift = np.array([WBC_SHIFT_LOG10.get(g, 0.0) for g in genetics])
    wbc = 10 ** rng.normal(wbc_median + wbc_shift, WBC_SD_LOG10)
    cns_u = rng.uniform(size=n)
    cns_cut = np.array([CNS_SHARES[x] for x in lineage]).cumsum(axis=1)
    cns = np.array(["CNS1", "CNS2", "CNS3"])[(cns_u[:, None] > cns_cut).sum(axis=1).clip(0, 2)]
    abl_class = np.isin(genetics, ("bcr_abl1", "ph_like"))
    ikzf1_p = np.where(abl_class, IKZF1_SHARE_ABL_CLASS, np.vectorize(IKZF1_SHARE.get)(group))
    ikzf1 = ~t_lineage & (rng.uniform(size=n) < ikzf1_p)
    return pd.DataFrame(
        {
            "age_years": age,
            "sex": np.where(male, "male", "female"),
            "wbc_at_diagnosis": np.clip(np.round(wbc, 1), 0.1, 1500.0),
            "lineage": lineage,
            "cns_status": cns,
            "genetic_subgroup": genetics,
            "ikzf1_deletion": ikzf1,
            "_age_group": group,
            "_centre": centre,
        }
    )


# --- MRD ---------------------------------------------------------------------------------------------------------


def _latent_mrd(rng: np.random.Generator, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Latent log10 MRD at the end of induction and of consolidation (any level, even below every assay)."""
    lineage, group = frame["lineage"].to_numpy(), frame["_age_group"].to_numpy()
    mean = (
        np.where(lineage == "T", MRD_EOI_MEAN["T"], MRD_EOI_MEAN["B"])
        + np.vectorize(MRD_EOI_AGE_SHIFT.get)(group)
        + np.array([MRD_GENETIC_SHIFT.get(g, 0.0) for g in frame["genetic_subgroup"]])
        + 0.3 * np.log10(frame["wbc_at_diagnosis"].to_numpy(float) / 10.0)
    )
    eoi = rng.normal(mean, np.where(lineage == "T", MRD_EOI_SD["T"], MRD_EOI_SD["B"]))
    reduction_mean = np.where(
        np.isin(group, ("adult", "older")),
        MRD_REDUCTION_ADULT,
        np.where(lineage == "T", MRD_REDUCTION_MEAN["T"], MRD_REDUCTION_MEAN["B"]),
    )
    eoc = eoi - rng.normal(reduction_mean, MRD_REDUCTION_SD)
    return np.minimum(eoi, MRD_HIGH_LOG10), np.minimum(eoc, MRD_HIGH_LOG10)


def _observed_mrd(
    rng: np.random.Generator, latent: np.ndarray, sensitivity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What the assay reports of the true level: the measured level (2 decimals) when it reaches the sensitivity,
    else empty. So a true level near the sensitivity is found or missed by chance."""
    # recorded only in morphological remission (under 5 % blasts), whatever the error
    measured = np.minimum(latent + rng.normal(0.0, MRD_ASSAY_SD_LOG10, len(latent)), INDUCTION_FAILURE_LOG10)
    found = measured >= sensitivity
    level = np.where(found, np.maximum(np.round(measured, 2), sensitivity), np.nan)
    return level, found


# --- outcome processes -------------------------------------------------------------------------------------------


def _log(table: dict[str, float]) -> dict[str, float]:
    return {key: float(np.log(value)) for key, value in table.items()}


def _age_terms(frame: pd.DataFrame, hr: dict[str, float]) -> np.ndarray:
    group, age = frame["_age_group"].to_numpy(), frame["age_years"].to_numpy(float)
    return np.select(
        [group == "tya", group == "adult", group == "older", age >= 10],
        [hr["tya"], hr["adult"], hr["older"], hr["age_10_17"]],
        0.0,
    )


def relapse_linear_predictor(frame: pd.DataFrame, eoi: np.ndarray, eoc: np.ndarray) -> np.ndarray:
    """log hazard ratio of relapse against the reference patient, from the true (latent) MRD levels."""
    hr = _log(RELAPSE_HR)
    genetics = np.array([hr.get(g, 0.0) for g in frame["genetic_subgroup"]])
    cns = frame["cns_status"].map({"CNS1": 0.0, "CNS2": hr["cns2"], "CNS3": hr["cns3"]}).to_numpy(float)
    return (
        genetics
        + cns
        + _age_terms(frame, hr)
        + hr["wbc_per_log10"] * np.log10(frame["wbc_at_diagnosis"].to_numpy(float) / 10.0)
        + hr["male"] * (frame["sex"] == "male").to_numpy()
        + hr["ikzf1_deletion"] * frame["ikzf1_deletion"].to_numpy(bool)
        + hr["mrd_eoi_positive"] * (eoi >= -4.0)
        + hr["mrd_eoc_persistent"] * (eoc >= -4.0)
    )


def death_linear_predictor(frame: pd.DataFrame, intensified: np.ndarray) -> np.ndarray:
    """log hazard ratio of death in remission; `intensified`: treatment intensified on a recorded EOI MRD >= 10^-4."""
    hr = _log(DEATH_HR)
    return (
        _age_terms(frame, hr)
        + hr["intensified"] * intensified
        + hr["female"] * (frame["sex"] == "female").to_numpy()
        + hr["bcr_abl1"] * (frame["genetic_subgroup"] == "bcr_abl1").to_numpy()
    )


def _bounded_time(rng: np.random.Generator, log_scale: np.ndarray, shape: float, scale: np.ndarray) -> np.ndarray:
    """Months from remission to the event of H(t) = exp(log_scale) G(t); inf when it never happens."""
    needed = rng.exponential(size=len(log_scale))
    share = needed / np.exp(log_scale)
    time = np.full(len(log_scale), np.inf)
    happens = share < 1.0
    time[happens] = stats.gamma.ppf(share[happens], shape, scale=np.asarray(scale)[happens])
    return time


# --- the population from diagnosis, and the landmark cohort ------------------------------------------------------


def simulate_from_diagnosis(n_patients: int, seed: int) -> pd.DataFrame:
    """Every patient from diagnosis: predictors (EOC MRD empty for those who did not reach the landmark),
    `centre`, `country`, `months_to_landmark`, `months_from_diagnosis` and `event_from_diagnosis` (codes in
    FROM_DIAGNOSIS_CODES: induction failure and induction death at the end of induction), `in_landmark_cohort`;
    and, for the landmark cohort, `months_from_landmark` and `first_event` (0/1/2)."""
    rng = np.random.default_rng(seed)
    frame = _diagnosis(rng, n_patients)
    group_of = np.array(TRIAL_GROUPS, dtype=object)[frame["_centre"].to_numpy()]
    sensitivity = np.array([g.sensitivity_log10 for g in group_of])
    eoi, eoc = _latent_mrd(rng, frame)
    eoi_level, eoi_detectable = _observed_mrd(rng, eoi, sensitivity)
    eoc_level, eoc_detectable = _observed_mrd(rng, eoc, sensitivity)
    n = len(frame)
    group = frame["_age_group"].to_numpy()

    induction_death = rng.uniform(size=n) < np.vectorize(INDUCTION_DEATH.get)(group)
    failure = ~induction_death & (eoi >= INDUCTION_FAILURE_LOG10)
    remission = ~induction_death & ~failure
    adult = np.isin(group, ("tya", "adult", "older"))
    relapse_scale = np.where(adult, RELAPSE_TIMING["adult"][1], RELAPSE_TIMING["young"][1])
    frailty = rng.normal(0.0, RELAPSE_FRAILTY_SD, n)
    relapse = REMISSION_MONTHS + _bounded_time(
        rng,
        RELAPSE_LOG_SCALE + frailty + relapse_linear_predictor(frame, eoi, eoc),
        RELAPSE_TIMING["young"][0],
        relapse_scale,
    )
    intensified = np.nan_to_num(eoi_level, nan=-np.inf) >= -4.0  # treatment follows the RECORDED level
    death = REMISSION_MONTHS + _bounded_time(
        rng,
        DEATH_LOG_SCALE + death_linear_predictor(frame, intensified),
        DEATH_TIMING[0],
        np.full(n, DEATH_TIMING[1]),
    )
    induction_time = np.where(induction_death, rng.uniform(0.1, REMISSION_MONTHS, n), REMISSION_MONTHS)
    landmark = np.round(rng.uniform(*LANDMARK_MONTHS, n), 2)
    # >= 5 % blasts at the end of consolidation is a relapse there, not a measurable residual disease
    relapse = np.where(eoc >= INDUCTION_FAILURE_LOG10, np.minimum(relapse, landmark - 0.05), relapse)

    accrual = np.array([g.accrual_years for g in group_of])
    years_before_cut = rng.uniform(accrual[:, 1], accrual[:, 0])
    loss = rng.exponential(1.0 / np.array([g.loss_per_year for g in group_of]))
    follow_up = 12.0 * np.minimum(years_before_cut, loss)

    event_time = np.where(remission, np.minimum(relapse, death), induction_time)
    code = np.where(induction_death, 3, np.where(failure, 4, np.where(relapse <= death, 1, 2)))
    seen = event_time <= follow_up
    months = np.where(seen, event_time, follow_up)
    code = np.where(seen, code, 0)
    months = np.round(months, 2)
    in_cohort = remission & (months > landmark)  # in remission and followed at the landmark

    reached = remission & (np.minimum(relapse, death) > landmark)  # EOC MRD exists only at the landmark
    frame = frame.assign(
        mrd_eoi_log10=np.where(remission, eoi_level, np.nan),
        mrd_eoi_detectable=np.where(remission, eoi_detectable, None),
        mrd_eoc_log10=np.where(reached, eoc_level, np.nan),
        mrd_eoc_detectable=np.where(reached, eoc_detectable, None),
        mrd_assay_sensitivity_log10=sensitivity,
        mrd_method=[g.mrd_method for g in group_of],
        centre=[g.code for g in group_of],
        country=[g.country for g in group_of],
        months_to_landmark=landmark,
        months_from_diagnosis=months,
        event_from_diagnosis=code,
        in_landmark_cohort=in_cohort,
        months_from_landmark=np.where(in_cohort, np.round(months - landmark, 2), np.nan),
        first_event=np.where(in_cohort, code, -1),
    )
    frame["nci_risk_group"] = nci_risk_group(frame)
    frame["mrd_log_reduction"] = mrd_log_reduction(frame)
    return frame.drop(columns=["_age_group", "_centre"])


def landmark_cohort(population: pd.DataFrame) -> pd.DataFrame:
    """The task's cohort: patients in continuous remission and followed at the landmark, time from it."""
    cohort = population[population["in_landmark_cohort"]].reset_index(drop=True)
    cohort = cohort[[*PREDICTORS, "centre", "country", "months_from_landmark", "first_event"]].copy()
    cohort["first_event"] = cohort["first_event"].astype(int)
    for column in ("mrd_eoi_detectable", "mrd_eoc_detectable", "ikzf1_deletion"):
        cohort[column] = cohort[column].astype(bool)
    return cohort


def generate_all_frontline_cohort(n_patients: int, seed: int) -> pd.DataFrame:
    """`n_patients` of the landmark cohort, from a population simulated from diagnosis (deterministic)."""
    n_diagnosed = int(n_patients * 1.25) + 50
    while True:
        cohort = landmark_cohort(simulate_from_diagnosis(n_diagnosed, seed))
        if len(cohort) >= n_patients:
            return cohort.iloc[:n_patients].reset_index(drop=True)
        n_diagnosed = int(n_diagnosed * 1.3)
