"""Synthetic adult ALL allo-HSCT cohort following clinical-evidence B.2 and C, deterministic for a seed.

Four cause-specific processes run from the transplant day (t in years inside, event times in months outside):

- relapse and non-relapse mortality (NRM): Weibull, H_k(t) = (t / scale_k) ** shape_k * exp(x beta_k), with the
  covariate hazard ratios of B.2 (shapes 0.58 and 0.46 as in B.2; scales re-fitted, see below);
- grade III-IV acute GVHD: piecewise-constant hazard, zero before day 14, concentrated in days 14-100, a tail to
  day 180 and nothing after (B.2: CIF about 11 % by day 180);
- chronic GVHD needing systemic therapy: piecewise-constant hazard from month 3, fading after month 24 and zero
  after month 60 (B.2: CIF about 22 % at 2 years).

Time-dependent effects (B.2, Yeshurun 2019): after grade III-IV aGVHD, NRM x 3.0 and relapse x 0.6; after chronic
GVHD, relapse x 0.6 (both: x 0.36). GVHD times are drawn first; relapse and NRM are then independent latent times
whose hazards switch at the GVHD times, each drawn by inverting its piecewise cumulative hazard exactly (for
cause-specific hazards the first of independent latent times has the right joint law). Only the first of relapse
and NRM is observed; GVHD is recorded only when it comes before both and before last contact. After a relapse,
15 % are long-term survivors and the others die at an exponential time with median 6 months (B.2).

Calibration (clarifications section 3): with every covariate and GVHD effect on, B.2's literal scales give 3-year
NRM near 33 % and 2-year OS near 53 %. `fit_weibull_scales()` re-fits the two Weibull scales (shapes fixed), and
the two GVHD hazard levels, on a seeded reference population so that its CR1 patients meet E8 (3-y CIR 22 %,
NRM 18 %) and E9 (2-y OS 70 %) and everyone meets the GVHD targets; the results are hard-coded in `FITTED_SCALES`.

Assumptions beyond B.2 (documented here, none tuned to a test):
- GVHD covariates: aGVHD III-IV vs haplo-PTCy HR 1.0 MSD, 1.59 MUD, 1.86 MMUD, 1.97 UCB (Wieduwilt 2022); chronic
  GVHD HR 1.5 MSD and MUD ("higher", no number retrieved), 1.72 MMUD, 1.0 UCB; RIC HR 0.8 on both (Marks 2010:
  aGVHD II-IV 39 vs 46 %, cGVHD 34 vs 42 %); chronic GVHD HR 2.0 after grade III-IV aGVHD. GVHD does not change NRM
  except grade III-IV aGVHD (B.2 gives no NRM effect of chronic GVHD).
- "Age per 10 y above 35" is 0 up to 35, then linear; transplant year enters as (year - 2005) / 5.
- TBI: 0.65 of all patients are MAC with TBI (B.2), so 81 % of MAC; 25 % of RIC use low-dose TBI, which carries no
  effect (B.2's chemotherapy-vs-TBI HRs are for MAC only). RIC is more likely with age (logit slope 0.06 per year).
- Ph+ ALL is B-lineage in 98 %; T-ALL makes up the rest of the 22 % among Ph-negative patients.
- Pre-transplant MRD: positive in 40 % of CR1/CR2 (B.2); "active or CR3+" patients are 30 % CR3+ with an MRD
  result (positive in about 60 %) and 70 % active disease (MRD not applicable, no MRD effect). Missing in 3-15 %
  of CR patients depending on the centre (the true value still acts). Prophylactic post-transplant TKI is not
  modelled (decided after time zero).
- MRD kinetics (section C, clarifications section 2): a latent Gaussian chain pre-HCT -> end of consolidation ->
  end of induction (correlation 0.75 per step) drives log10 MRD at the end of induction (mean -4.35, SD 1.5) and
  of consolidation (mean -5.15, SD 1.5), censored at the centre's assay sensitivity (-4 flow cytometry or -5 PCR/NGS):
  about 40-45 % undetectable at the end of induction, about 60 % at the end of consolidation. They act on outcome
  only through pre-transplant MRD. Recorded in 30-90 % of patients by centre (fewer after relapse), end of
  consolidation missing in a further 10 %.
- HCT-CI missing in 2-12 % by centre (the true value still acts).
- Diagnosis to transplant: CR1 lognormal median 5.5 months, sigma 0.4 (B.2); CR2 median 20 months, sigma 0.5;
  active or CR3+ median 12 months, sigma 0.7; kept within 0.5-240 months, no effect on outcome.
- Centres differ in size, accrual period (so follow-up to the data cut of 1 January 2025), age, Ph+ share, share
  in CR1, donor mix, RIC and TBI use, CMV seroprevalence, MRD recording and assay, and loss to follow-up; they
  carry no effect of their own.
- Event times are recorded in whole days (ceiling, at least day 1) and reported in months (3 decimals).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from features.task_schema import DAYS_PER_MONTH, DAYS_PER_YEAR
from features.task_spec import load_spec
from tasks.all_hsct.rules import (
    DEAD,
    RELAPSED,
    TIME_TO_AGVHD34,
    TIME_TO_CGVHD,
    TIME_TO_DEATH,
    TIME_TO_RELAPSE,
    derive_endpoints,
    mrd_log_reduction,
)

WEIBULL_SHAPES = {"relapse": 0.58, "nrm": 0.46}  # B.2, fixed
B2_WEIBULL_SCALES_YEARS = {"relapse": 26.3, "nrm": 77.7}  # B.2 taken literally (no covariates, no GVHD)
# Obtained once, offline, with `fit_weibull_scales()` (defaults: reference population of 20,000, seed 20_250_301;
# 4 alternating rounds, about 15 s): relapse and NRM Weibull scales in years, GVHD hazard levels per year (aGVHD in
# days 14-100, chronic GVHD in months 3-12). On that population they give CR1 3-y CIR 22.5 %, NRM 18.8 %, 2-y OS
# 70.8 %, and aGVHD III-IV 11.0 % by 6 months, chronic GVHD 22.0 % at 2 years (`calibration_summary()`). B.2's
# literal scales (26.3, 77.7) give 26.2 %, 33.9 % and 53.6 % instead (clarifications section 3).
FITTED_SCALES = {"relapse": 50.751113, "nrm": 468.781182, "agvhd34": 0.398549, "cgvhd": 0.197785}

# Calibration targets: E8 (3-y CIR and NRM in CR1), E9 (2-y OS in CR1), B.2 GRFS components (all patients).
CALIBRATION_TARGETS = {"cir_36m": 0.22, "nrm_36m": 0.18, "os_24m": 0.70, "agvhd34_6m": 0.11, "cgvhd_24m": 0.22}

RELAPSE_HR = {  # B.2 covariate table
    "mrd_positive": 2.3, "cr2": 1.6, "active_or_cr3plus": 4.2, "ric": 1.7, "chemotherapy_only_mac": 1.8,
    "ph_positive_without_tki": 2.0, "t_lineage": 1.2, "female_donor_to_male": 0.9, "per_5_years_after_2005": 0.92,
}
NRM_HR = {
    "cr2": 1.2, "active_or_cr3plus": 1.5, "ric": 0.51, "chemotherapy_only_mac": 0.8, "mud_8_8": 1.42,
    "mmud_7_8": 2.13, "ucb": 2.08, "ph_positive_without_tki": 1.8, "per_10_years_above_35": 1.25,
    "hct_ci_1_2": 2.0, "hct_ci_3plus": 3.7, "karnofsky_lt_90": 1.3, "cmv_recipient_positive": 1.15,
    "female_donor_to_male": 1.2, "per_5_years_after_2005": 0.80,
}
AGVHD34_HR = {"MSD": 1.0, "MUD_8_8": 1.59, "MMUD_7_8": 1.86, "haplo": 1.0, "UCB": 1.97, "ric": 0.8}
CGVHD_HR = {"MSD": 1.5, "MUD_8_8": 1.5, "MMUD_7_8": 1.72, "haplo": 1.0, "UCB": 1.0, "ric": 0.8}
AFTER_AGVHD34 = {"relapse": 0.6, "nrm": 3.0, "cgvhd": 2.0}
AFTER_CGVHD = {"relapse": 0.6}
POST_RELAPSE_CURED = 0.15
POST_RELAPSE_MEDIAN_YEARS = 0.5

# Relative hazard shapes of the GVHD processes: (start, relative level), times in years.
AGVHD34_SHAPE = ((0.0, 0.0), (14 / DAYS_PER_YEAR, 1.0), (100 / DAYS_PER_YEAR, 0.15), (180 / DAYS_PER_YEAR, 0.0))
CGVHD_SHAPE = ((0.0, 0.0), (0.25, 1.0), (1.0, 0.5), (2.0, 0.15), (5.0, 0.0))

DATA_CUT_YEAR = 2025.0
NEVER = 1.0e4  # years: a switch time that never comes
MRD_CHAIN_CORRELATION = 0.75
MRD_EOI_MEAN, MRD_EOC_MEAN, MRD_SD = -4.35, -5.15, 1.5
MRD_POSITIVE_SHARE = 0.40  # B.2, patients in CR
ACTIVE_GROUP_MRD_SHIFT = 0.5  # latent shift for "active or CR3+": about 60 % MRD-positive among CR3+
CR3PLUS_SHARE_OF_GROUP = 0.30
DONORS = ("MSD", "MUD_8_8", "MMUD_7_8", "haplo", "UCB")


@dataclass(frozen=True)
class Centre:
    code: str
    country: str
    weight: float  # relative size
    accrual: tuple[float, float]  # transplants from..to (calendar years, continuous)
    age_shift: float
    ph_positive_share: float
    cr1_share: float
    donor_mix: tuple[float, float, float, float, float]  # MSD, MUD 8/8, MMUD 7/8, haplo, UCB
    ric_logit_shift: float
    tbi_share_mac: float
    cmv_positive_share: float
    mrd_pre_recorded: float  # share of CR patients with a pre-transplant MRD result
    kinetics_recorded: float  # share with end-of-induction/consolidation MRD
    assay_sensitivity_log10: float
    hct_ci_recorded: float
    loss_to_follow_up_per_year: float


CENTRES = (
    Centre("FR-01", "FR", 1.5, (2005.0, 2023.0), 0.0, 0.33, 0.68, (0.35, 0.38, 0.07, 0.15, 0.05), 0.0, 0.85, 0.55,
           0.95, 0.80, -5.0, 0.97, 0.02),
    Centre("FR-02", "FR", 0.8, (2011.0, 2024.0), 2.0, 0.38, 0.62, (0.30, 0.35, 0.08, 0.22, 0.05), 0.2, 0.78, 0.50,
           0.90, 0.70, -4.0, 0.95, 0.03),
    Centre("DE-01", "DE", 1.6, (2005.0, 2022.0), 1.0, 0.36, 0.66, (0.30, 0.48, 0.08, 0.12, 0.02), 0.1, 0.85, 0.45,
           0.97, 0.90, -5.0, 0.98, 0.01),
    Centre("DE-02", "DE", 0.7, (2019.0, 2024.5), 3.0, 0.30, 0.60, (0.28, 0.45, 0.07, 0.18, 0.02), 0.4, 0.75, 0.45,
           0.90, 0.60, -4.0, 0.92, 0.05),
    Centre("IT-01", "IT", 1.2, (2007.0, 2023.0), -1.0, 0.34, 0.65, (0.38, 0.25, 0.07, 0.27, 0.03), -0.1, 0.80, 0.75,
           0.92, 0.75, -5.0, 0.95, 0.02),
    Centre("ES-01", "ES", 1.0, (2009.0, 2023.5), -2.0, 0.35, 0.70, (0.40, 0.30, 0.08, 0.17, 0.05), -0.2, 0.82, 0.70,
           0.90, 0.65, -4.0, 0.94, 0.03),
    Centre("GB-01", "GB", 1.1, (2005.0, 2021.0), 0.0, 0.32, 0.63, (0.36, 0.35, 0.10, 0.11, 0.08), 0.3, 0.70, 0.45,
           0.88, 0.55, -4.0, 0.90, 0.04),
    Centre("NL-01", "NL", 0.8, (2019.5, 2024.5), 2.5, 0.33, 0.67, (0.34, 0.40, 0.08, 0.13, 0.05), 0.3, 0.80, 0.40,
           0.95, 0.85, -5.0, 0.97, 0.02),
    Centre("SE-01", "SE", 0.7, (2008.0, 2023.0), 1.5, 0.37, 0.64, (0.32, 0.42, 0.09, 0.10, 0.07), 0.0, 0.88, 0.45,
           0.95, 0.90, -5.0, 0.98, 0.01),
    Centre("PL-01", "PL", 0.8, (2020.0, 2024.5), -3.0, 0.36, 0.60, (0.33, 0.38, 0.10, 0.17, 0.02), -0.3, 0.85, 0.80,
           0.85, 0.30, -4.0, 0.88, 0.06),
    Centre("IL-01", "IL", 0.6, (2010.0, 2023.0), -1.5, 0.40, 0.66, (0.45, 0.20, 0.06, 0.25, 0.04), 0.0, 0.75, 0.85,
           0.90, 0.60, -4.0, 0.93, 0.03),
    Centre("BE-01", "BE", 0.5, (2020.0, 2024.5), 0.5, 0.31, 0.69, (0.36, 0.34, 0.06, 0.16, 0.08), 0.1, 0.80, 0.50,
           0.93, 0.75, -5.0, 0.96, 0.03),
)


# --- baseline cumulative hazards and their inverses ---------------------------------------------------------

class _Weibull:
    def __init__(self, scale: float, shape: float):
        self.scale, self.shape = scale, shape

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        return (np.asarray(t, dtype=float) / self.scale) ** self.shape

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(y, dtype=float) ** (1.0 / self.shape)


class _PiecewiseConstant:
    """Hazard `level * shape(t)` with a piecewise-constant relative shape; the last piece may be zero."""

    def __init__(self, level: float, pieces: tuple[tuple[float, float], ...]):
        self.starts = np.array([s for s, _ in pieces], dtype=float)
        self.rates = level * np.array([r for _, r in pieces], dtype=float)
        widths = np.diff(np.append(self.starts, np.inf))
        self.at_starts = np.concatenate([[0.0], np.cumsum(self.rates[:-1] * widths[:-1])])
        self.total = np.inf if self.rates[-1] > 0 else float(self.at_starts[-1])

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        piece = np.searchsorted(self.starts, t, side="right") - 1
        return self.at_starts[piece] + self.rates[piece] * (t - self.starts[piece])

    def inverse(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        piece = np.searchsorted(self.at_starts, y, side="right") - 1
        rate = self.rates[piece]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.starts[piece] + (y - self.at_starts[piece]) / rate
        return np.where(y >= self.total, np.inf, np.where(rate > 0, t, self.starts[piece]))


def _switching_cumulative(base, t: np.ndarray, log_hr: np.ndarray, switches: np.ndarray,
                          multipliers: np.ndarray) -> np.ndarray:
    """H(t) = exp(log_hr) * [m0 B(t ^ s1) + m1 (B(t ^ s2) - B(t ^ s1)) + m2 (B(t) - B(t ^ s2))].

    `switches` is (n, 2) with s1 <= s2, `multipliers` (n, 3); `t` is (n,) or (n, k).
    """
    t = np.asarray(t, dtype=float)
    extra = (slice(None),) + (None,) * (t.ndim - 1)
    s1, s2 = switches[:, 0][extra], switches[:, 1][extra]
    m0, m1, m2 = (multipliers[:, j][extra] for j in range(3))
    b1, b2, bt = base.cumulative(np.minimum(t, s1)), base.cumulative(np.minimum(t, s2)), base.cumulative(t)
    return np.exp(log_hr)[extra] * (m0 * b1 + m1 * (b2 - b1) + m2 * (bt - b2))


def _switching_inverse(base, target: np.ndarray, log_hr: np.ndarray, switches: np.ndarray,
                       multipliers: np.ndarray) -> np.ndarray:
    """The time t at which the switching cumulative hazard H(t) reaches `target` (inf if never)."""
    y = target / np.exp(log_hr)
    s1, s2 = switches[:, 0], switches[:, 1]
    m0, m1, m2 = multipliers.T
    b1, b2 = base.cumulative(s1), base.cumulative(s2)
    c1 = m0 * b1
    c2 = c1 + m1 * (b2 - b1)
    before, between = y <= c1, (y > c1) & (y <= c2)
    after = ~before & ~between
    t = np.empty_like(y)
    t[before] = base.inverse(y[before] / m0[before])
    t[between] = base.inverse(b1[between] + (y[between] - c1[between]) / m1[between])
    t[after] = base.inverse(b2[after] + (y[after] - c2[after]) / m2[after])
    return t


# --- covariates -----------------------------------------------------------------------------------------------

def _truncated_lognormal(rng: np.random.Generator, median: np.ndarray, sigma: np.ndarray,
                         low: float, high: float) -> np.ndarray:
    """Inverse-CDF draw restricted to [low, high], so truncation never distorts the sample size."""
    mu = np.log(median)
    lower = stats.norm.cdf((np.log(low) - mu) / sigma)
    upper = stats.norm.cdf((np.log(high) - mu) / sigma)
    return np.exp(mu + sigma * stats.norm.ppf(rng.uniform(lower, upper)))


def _draw_covariates(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """True (complete) covariates, centre, transplant date and the latent pre-transplant MRD level."""
    weights = np.array([c.weight for c in CENTRES])
    centre_index = rng.choice(len(CENTRES), size=n, p=weights / weights.sum())

    def per_centre(attr: str) -> np.ndarray:
        return np.array([getattr(c, attr) for c in CENTRES])[centre_index]

    age = stats.truncnorm.rvs((18 - 38) / 13, (75 - 38) / 13, loc=38, scale=13, size=n, random_state=rng)
    age = np.clip(age + per_centre("age_shift"), 18, 75)
    female = rng.uniform(size=n) < 0.44
    ph_positive = rng.uniform(size=n) < per_centre("ph_positive_share")
    t_lineage = rng.uniform(size=n) < np.where(ph_positive, 0.02, (0.22 - 0.35 * 0.02) / 0.65)
    cr1 = per_centre("cr1_share")
    stage_u = rng.uniform(size=n)
    stage = np.where(stage_u < cr1, "CR1",
                     np.where(stage_u < cr1 + (1 - cr1) * 0.20 / 0.35, "CR2", "active_or_CR3plus"))
    active_group = stage == "active_or_CR3plus"
    # Latent pre-transplant MRD: positive above the 60th centile in CR (B.2: 40 % MRD-positive).
    latent_pre = rng.standard_normal(n) + ACTIVE_GROUP_MRD_SHIFT * active_group
    cr3plus = active_group & (rng.uniform(size=n) < CR3PLUS_SHARE_OF_GROUP)
    mrd_positive = latent_pre > stats.norm.ppf(1 - MRD_POSITIVE_SHARE)
    mrd = np.where(active_group & ~cr3plus, None, np.where(mrd_positive, "positive", "negative"))
    mix = np.array([c.donor_mix for c in CENTRES])[centre_index]
    donor = np.array(DONORS)[(rng.uniform(size=n)[:, None] > np.cumsum(mix, axis=1)).sum(axis=1).clip(0, 4)]
    ric_logit = -1.55 + 0.06 * (age - 38) + per_centre("ric_logit_shift")
    ric = rng.uniform(size=n) < 1 / (1 + np.exp(-ric_logit))
    tbi = rng.uniform(size=n) < np.where(ric, 0.25, per_centre("tbi_share_mac"))
    tki = ph_positive & (rng.uniform(size=n) < 0.85)
    hct_ci = rng.choice(["0", "1-2", "3+"], size=n, p=[0.38, 0.32, 0.30])
    kps_low = rng.uniform(size=n) < 0.30
    cmv = rng.uniform(size=n) < per_centre("cmv_positive_share")
    female_to_male = ~female & (rng.uniform(size=n) < 0.20 / 0.56)
    median_months = np.select([stage == "CR1", stage == "CR2"], [5.5, 20.0], 12.0)
    sigma = np.select([stage == "CR1", stage == "CR2"], [0.4, 0.5], 0.7)
    diagnosis_to_hct_months = _truncated_lognormal(rng, median_months, sigma, 0.5, 240.0)
    accrual = np.array([c.accrual for c in CENTRES])[centre_index]
    transplant_date = rng.uniform(accrual[:, 0], accrual[:, 1])
    return pd.DataFrame({
        "age_at_hct_years": np.round(age, 1),
        "sex": np.where(female, "female", "male"),
        "ph_chromosome": np.where(ph_positive, "positive", "negative"),
        "tki_before_hct": tki,
        "lineage": np.where(t_lineage, "T", "B"),
        "disease_stage": stage,
        "mrd_pre_hct": mrd,
        "donor_type": donor,
        "conditioning_intensity": np.where(ric, "RIC", "MAC"),
        "tbi": tbi,
        "hct_ci": hct_ci,
        "karnofsky_lt_90": kps_low,
        "cmv_recipient_positive": cmv,
        "female_donor_to_male_recipient": female_to_male,
        "diagnosis_to_hct_years": np.round(diagnosis_to_hct_months / 12.0, 3),
        "transplant_year": np.floor(transplant_date).astype(int),
        "centre": np.array([c.code for c in CENTRES], dtype=object)[centre_index],
        "country": np.array([c.country for c in CENTRES], dtype=object)[centre_index],
        "_transplant_date": transplant_date,
        "_latent_pre_mrd": latent_pre,
    })


# --- linear predictors (log hazard ratios against the reference patient) ---------------------------------------

def _log(table: dict[str, float]) -> dict[str, float]:
    return {k: float(np.log(v)) for k, v in table.items()}


def _shared_terms(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    mac = frame["conditioning_intensity"].to_numpy() == "MAC"
    ph_positive = frame["ph_chromosome"].to_numpy() == "positive"
    return {
        "cr2": (frame["disease_stage"] == "CR2").to_numpy(float),
        "active_or_cr3plus": (frame["disease_stage"] == "active_or_CR3plus").to_numpy(float),
        "ric": (~mac).astype(float),
        "chemotherapy_only_mac": (mac & ~frame["tbi"].to_numpy(bool)).astype(float),
        "ph_positive_without_tki": (ph_positive & ~frame["tki_before_hct"].to_numpy(bool)).astype(float),
        "female_donor_to_male": frame["female_donor_to_male_recipient"].to_numpy(float),
        "per_5_years_after_2005": (frame["transplant_year"].to_numpy(float) - 2005.0) / 5.0,
    }


def relapse_linear_predictor(frame: pd.DataFrame) -> np.ndarray:
    """x beta for relapse (B.2), from the true, unmasked covariates."""
    terms = _shared_terms(frame) | {
        "mrd_positive": (frame["mrd_pre_hct"] == "positive").to_numpy(float),
        "t_lineage": (frame["lineage"] == "T").to_numpy(float),
    }
    return sum(log_hr * terms[name] for name, log_hr in _log(RELAPSE_HR).items())


def nrm_linear_predictor(frame: pd.DataFrame) -> np.ndarray:
    """x beta for non-relapse mortality (B.2), from the true, unmasked covariates."""
    donor, hct_ci = frame["donor_type"].to_numpy(), frame["hct_ci"].to_numpy()
    terms = _shared_terms(frame) | {
        "mud_8_8": (donor == "MUD_8_8").astype(float),
        "mmud_7_8": (donor == "MMUD_7_8").astype(float),
        "ucb": (donor == "UCB").astype(float),
        "per_10_years_above_35": np.maximum(frame["age_at_hct_years"].to_numpy(float) - 35.0, 0.0) / 10.0,
        "hct_ci_1_2": (hct_ci == "1-2").astype(float),
        "hct_ci_3plus": (hct_ci == "3+").astype(float),
        "karnofsky_lt_90": frame["karnofsky_lt_90"].to_numpy(float),
        "cmv_recipient_positive": frame["cmv_recipient_positive"].to_numpy(float),
    }
    return sum(log_hr * terms[name] for name, log_hr in _log(NRM_HR).items())


def _gvhd_linear_predictor(frame: pd.DataFrame, table: dict[str, float]) -> np.ndarray:
    log_hr = _log(table)
    donor = frame["donor_type"].map(log_hr).to_numpy(float)
    return donor + log_hr["ric"] * (frame["conditioning_intensity"] == "RIC").to_numpy(float)


# --- event processes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Processes:
    """Per-patient linear predictors and the Exp(1) draws that fix each latent time."""

    relapse_lp: np.ndarray
    nrm_lp: np.ndarray
    agvhd_lp: np.ndarray
    cgvhd_lp: np.ndarray
    draws: np.ndarray  # (n, 4): aGVHD, cGVHD, relapse, NRM

    @classmethod
    def of(cls, frame: pd.DataFrame, draws: np.ndarray) -> _Processes:
        return cls(relapse_linear_predictor(frame), nrm_linear_predictor(frame),
                   _gvhd_linear_predictor(frame, AGVHD34_HR), _gvhd_linear_predictor(frame, CGVHD_HR), draws)


def _bases(scales: dict[str, float]) -> dict[str, object]:
    return {
        "relapse": _Weibull(scales["relapse"], WEIBULL_SHAPES["relapse"]),
        "nrm": _Weibull(scales["nrm"], WEIBULL_SHAPES["nrm"]),
        "agvhd34": _PiecewiseConstant(scales["agvhd34"], AGVHD34_SHAPE),
        "cgvhd": _PiecewiseConstant(scales["cgvhd"], CGVHD_SHAPE),
    }


def _switch_design(agvhd: np.ndarray, cgvhd: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(switch times, multipliers) of the relapse and NRM hazards, given the GVHD times (years, inf = none)."""
    n = len(agvhd)
    a, c = np.minimum(agvhd, NEVER), np.minimum(cgvhd, NEVER)
    relapse = np.column_stack([np.minimum(a, c), np.maximum(a, c)])
    step = AFTER_AGVHD34["relapse"]  # equal to AFTER_CGVHD["relapse"], so the order of the two does not matter
    assert step == AFTER_CGVHD["relapse"]
    relapse_m = np.tile([1.0, step, step * AFTER_CGVHD["relapse"]], (n, 1))
    nrm = np.column_stack([a, np.full(n, NEVER)])
    nrm_m = np.tile([1.0, AFTER_AGVHD34["nrm"], AFTER_AGVHD34["nrm"]], (n, 1))
    return {"relapse": (relapse, relapse_m), "nrm": (nrm, nrm_m)}


def _gvhd_times(processes: _Processes, bases: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    n = len(processes.draws)
    never = np.column_stack([np.full(n, NEVER), np.full(n, NEVER)])
    ones = np.ones((n, 3))
    agvhd = _switching_inverse(bases["agvhd34"], processes.draws[:, 0], processes.agvhd_lp, never, ones)
    switch = np.column_stack([np.minimum(agvhd, NEVER), np.full(n, NEVER)])
    multiplier = np.tile([1.0, AFTER_AGVHD34["cgvhd"], AFTER_AGVHD34["cgvhd"]], (n, 1))
    cgvhd = _switching_inverse(bases["cgvhd"], processes.draws[:, 1], processes.cgvhd_lp, switch, multiplier)
    return agvhd, cgvhd


def _latent_times(processes: _Processes, scales: dict[str, float]) -> dict[str, np.ndarray]:
    """Latent event times in years (inf = never): GVHD first, then relapse and NRM switching at them."""
    bases = _bases(scales)
    agvhd, cgvhd = _gvhd_times(processes, bases)
    design = _switch_design(agvhd, cgvhd)
    relapse = _switching_inverse(bases["relapse"], processes.draws[:, 2], processes.relapse_lp, *design["relapse"])
    nrm = _switching_inverse(bases["nrm"], processes.draws[:, 3], processes.nrm_lp, *design["nrm"])
    return {"agvhd34": agvhd, "cgvhd": cgvhd, "relapse": relapse, "nrm": nrm}


# --- calibration -------------------------------------------------------------------------------------------

def _post_relapse_death_probability(years: np.ndarray) -> np.ndarray:
    rate = np.log(2) / POST_RELAPSE_MEDIAN_YEARS
    return (1 - POST_RELAPSE_CURED) * (1 - np.exp(-rate * np.maximum(years, 0.0)))


def _cr1_outcome_probabilities(processes: _Processes, agvhd: np.ndarray, cgvhd: np.ndarray,
                               scales: dict[str, float]) -> dict[str, float]:
    """Population-average 3-y CIR and NRM and 2-y OS, integrated on a fine grid given the GVHD times."""
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 3.0, 240), [2.0]])
    grid.sort()
    bases = _bases(scales)
    design = _switch_design(agvhd, cgvhd)
    n = len(agvhd)
    at = np.broadcast_to(grid, (n, len(grid)))
    h_relapse = _switching_cumulative(bases["relapse"], at, processes.relapse_lp, *design["relapse"])
    h_nrm = _switching_cumulative(bases["nrm"], at, processes.nrm_lp, *design["nrm"])
    survival = np.exp(-(h_relapse + h_nrm))
    d_relapse, d_nrm = np.diff(h_relapse, axis=1), np.diff(h_nrm, axis=1)
    d_total = d_relapse + d_nrm
    falls = survival[:, :-1] - survival[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(d_total > 0, d_relapse / d_total, 0.0)
    relapse_increment = share * falls
    nrm_increment = (1 - share) * falls
    mid = 0.5 * (grid[:-1] + grid[1:])
    by_2, by_3 = grid[1:] <= 2.0 + 1e-12, grid[1:] <= 3.0 + 1e-12
    cir_3 = relapse_increment[:, by_3].sum(axis=1).mean()
    nrm_3 = nrm_increment[:, by_3].sum(axis=1).mean()
    death_after_relapse_2 = (relapse_increment[:, by_2] * _post_relapse_death_probability(2.0 - mid[by_2])).sum(1)
    os_2 = 1 - (nrm_increment[:, by_2].sum(axis=1) + death_after_relapse_2).mean()
    return {"cir_36m": float(cir_3), "nrm_36m": float(nrm_3), "os_24m": float(os_2)}


def _gvhd_incidences(processes: _Processes, scales: dict[str, float]) -> dict[str, float]:
    """Share with aGVHD III-IV by 6 months and chronic GVHD by 2 years before relapse or death (smoothed)."""
    bases = _bases(scales)
    agvhd, cgvhd = _gvhd_times(processes, bases)
    design = _switch_design(agvhd, cgvhd)

    def event_free_at(t: np.ndarray) -> np.ndarray:
        t = np.minimum(t, NEVER)
        h = (_switching_cumulative(bases["relapse"], t, processes.relapse_lp, *design["relapse"])
             + _switching_cumulative(bases["nrm"], t, processes.nrm_lp, *design["nrm"]))
        return np.exp(-h)

    return {"agvhd34_6m": float(np.mean((agvhd <= 0.5) * event_free_at(agvhd))),
            "cgvhd_24m": float(np.mean((cgvhd <= 2.0) * event_free_at(cgvhd)))}


def _reference(n: int, seed: int) -> tuple[pd.DataFrame, _Processes]:
    rng = np.random.default_rng(seed)
    frame = _draw_covariates(rng, n)
    return frame, _Processes.of(frame, rng.exponential(size=(n, 4)))


def _subset(processes: _Processes, mask: np.ndarray) -> _Processes:
    return _Processes(processes.relapse_lp[mask], processes.nrm_lp[mask], processes.agvhd_lp[mask],
                      processes.cgvhd_lp[mask], processes.draws[mask])


def _fit_gvhd_levels(processes: _Processes, scales: dict[str, float]) -> dict[str, float]:
    """GVHD hazard levels meeting the B.2 incidences by root finding, the other scales held."""
    fitted = dict(scales)
    for name, target in (("agvhd34", "agvhd34_6m"), ("cgvhd", "cgvhd_24m")):
        def gap(log_level: float, name: str = name, target: str = target) -> float:
            trial = fitted | {name: float(np.exp(log_level))}
            return _gvhd_incidences(processes, trial)[target] - CALIBRATION_TARGETS[target]

        fitted[name] = float(np.exp(optimize.brentq(gap, np.log(1e-3), np.log(50.0), xtol=1e-6)))
    return fitted


def _fit_relapse_nrm(cr1: _Processes, scales: dict[str, float]) -> dict[str, float]:
    """Weibull scales meeting E8/E9 in CR1 by least squares (percentage points), the GVHD levels held."""
    agvhd, cgvhd = _gvhd_times(cr1, _bases(scales))
    names = ("cir_36m", "nrm_36m", "os_24m")

    def residuals(log_scales: np.ndarray) -> np.ndarray:
        trial = scales | {"relapse": float(np.exp(log_scales[0])), "nrm": float(np.exp(log_scales[1]))}
        got = _cr1_outcome_probabilities(cr1, agvhd, cgvhd, trial)
        return np.array([got[k] - CALIBRATION_TARGETS[k] for k in names]) * 100.0

    start = np.log([scales["relapse"], scales["nrm"]])
    fitted = optimize.least_squares(residuals, start, xtol=1e-10, ftol=1e-10).x
    return scales | {"relapse": float(np.exp(fitted[0])), "nrm": float(np.exp(fitted[1]))}


def fit_weibull_scales(n_reference: int = 20_000, seed: int = 20_250_301, rounds: int = 8,
                       progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Re-fit the relapse and NRM Weibull scales (shapes fixed) and the two GVHD hazard levels.

    On a seeded reference population drawn like the cohort, with every covariate and GVHD effect on: the CR1
    patients' 3-y CIR, 3-y NRM and 2-y OS (least squares, in percentage points) meet E8/E9, and the whole
    population's aGVHD III-IV by 6 months and chronic GVHD by 2 years (root finding) meet B.2. The two steps
    alternate until the scales settle. Run it again after changing any effect, and paste the result into
    `FITTED_SCALES`.
    """
    frame, processes = _reference(n_reference, seed)
    cr1 = _subset(processes, (frame["disease_stage"] == "CR1").to_numpy())
    scales = dict(B2_WEIBULL_SCALES_YEARS) | {"agvhd34": 0.5, "cgvhd": 0.3}
    for round_ in range(rounds):
        previous = scales
        scales = _fit_relapse_nrm(cr1, _fit_gvhd_levels(processes, scales))
        change = max(abs(scales[k] / previous[k] - 1) for k in scales)
        if progress:
            progress(f"round {round_ + 1}: {scales} (largest relative change {change:.2e})")
        if change < 1e-5:
            break
    return {k: round(v, 6) for k, v in scales.items()}


def calibration_summary(scales: dict[str, float] | None = None, n_reference: int = 20_000,
                        seed: int = 20_250_301) -> dict[str, float]:
    """The model-based (uncensored) targets of the calibration under the given (default: fitted) scales."""
    scales = scales or FITTED_SCALES
    frame, processes = _reference(n_reference, seed)
    cr1 = _subset(processes, (frame["disease_stage"] == "CR1").to_numpy())
    agvhd, cgvhd = _gvhd_times(cr1, _bases(scales))
    return _cr1_outcome_probabilities(cr1, agvhd, cgvhd, scales) | _gvhd_incidences(processes, scales)


def true_cumulative_incidences(frame: pd.DataFrame, months: np.ndarray, draws: int = 200, seed: int = 0,
                               grid_points: int = 300) -> dict[str, np.ndarray]:
    """Relapse and NRM cumulative incidences (patients x months) under the generating model, for complete
    (unmasked) covariates: the GVHD times that switch both hazards are drawn `draws` times per patient (Monte
    Carlo); given them, the incidences are integrated on a fine grid as `_cr1_outcome_probabilities` does."""
    rng = np.random.default_rng(seed)
    years = np.asarray(months, dtype=float) / 12.0
    grid = np.unique(np.concatenate([[0.0], np.geomspace(1e-4, years.max(), grid_points), years]))
    bases = _bases(FITTED_SCALES)
    n = len(frame)
    totals = {"relapse": np.zeros((n, len(years))), "nrm": np.zeros((n, len(years)))}
    at = np.broadcast_to(grid, (n, len(grid)))
    read = np.searchsorted(grid, years) - 1  # the increment ending at each horizon
    for _ in range(draws):
        processes = _Processes.of(frame, rng.exponential(size=(n, 4)))
        design = _switch_design(*_gvhd_times(processes, bases))
        h_relapse = _switching_cumulative(bases["relapse"], at, processes.relapse_lp, *design["relapse"])
        h_nrm = _switching_cumulative(bases["nrm"], at, processes.nrm_lp, *design["nrm"])
        falls = -np.diff(np.exp(-(h_relapse + h_nrm)), axis=1)
        d_relapse, d_total = np.diff(h_relapse, axis=1), np.diff(h_relapse + h_nrm, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(d_total > 0, d_relapse / d_total, 0.0)
        totals["relapse"] += np.cumsum(share * falls, axis=1)[:, read]
        totals["nrm"] += np.cumsum((1 - share) * falls, axis=1)[:, read]
    return {name: total / draws for name, total in totals.items()}


# --- observation: follow-up, censoring, MRD kinetics, missingness -------------------------------------------

def _to_months(years: np.ndarray) -> np.ndarray:
    """Whole days (ceiling, at least day 1), reported in months; inf/NaN stay NaN."""
    finite = np.isfinite(years)
    days = np.ceil(np.where(finite, years, 0.0) * DAYS_PER_YEAR - 1e-9).clip(min=1.0)
    return np.where(finite, np.round(days / DAYS_PER_MONTH, 3), np.nan)


def _observe(rng: np.random.Generator, frame: pd.DataFrame, latent: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(frame)
    centre = {c.code: c for c in CENTRES}
    loss_rate = frame["centre"].map(lambda code: centre[code].loss_to_follow_up_per_year).to_numpy(float)
    follow_up = np.minimum(DATA_CUT_YEAR - frame["_transplant_date"].to_numpy(float),
                           rng.exponential(1.0 / loss_rate))
    cured = rng.uniform(size=n) < POST_RELAPSE_CURED
    after_relapse = np.where(cured, np.inf, rng.exponential(POST_RELAPSE_MEDIAN_YEARS / np.log(2), size=n))

    relapse, nrm = latent["relapse"], latent["nrm"]
    relapsed = (relapse < nrm) & (relapse <= follow_up)
    died_without_relapse = (nrm < relapse) & (nrm <= follow_up)
    death = np.where(relapsed, relapse + after_relapse, np.where(died_without_relapse, nrm, np.inf))
    dead = death <= follow_up
    first_event = np.minimum(np.minimum(relapse, nrm), follow_up)
    relapse_or_last = np.where(relapsed, relapse, np.where(died_without_relapse, nrm, follow_up))
    death_or_last = np.where(dead, death, follow_up)

    def recorded_gvhd(t: np.ndarray) -> np.ndarray:
        return _to_months(np.where(t < first_event, t, np.inf))

    return pd.DataFrame({
        TIME_TO_RELAPSE: _to_months(relapse_or_last),
        RELAPSED: relapsed.astype(int),
        TIME_TO_DEATH: _to_months(death_or_last),
        DEAD: dead.astype(int),
        TIME_TO_AGVHD34: recorded_gvhd(latent["agvhd34"]),
        TIME_TO_CGVHD: recorded_gvhd(latent["cgvhd"]),
    }, index=frame.index)


def _mrd_kinetics(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    """End-of-induction and end-of-consolidation MRD from a latent chain anchored on pre-transplant MRD."""
    n = len(frame)
    rho = MRD_CHAIN_CORRELATION
    latent_eoc = rho * frame["_latent_pre_mrd"].to_numpy(float) + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    latent_eoi = rho * latent_eoc + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    level_eoi = np.clip(MRD_EOI_MEAN + MRD_SD * latent_eoi, -6.0, -0.3)
    level_eoc = np.clip(MRD_EOC_MEAN + MRD_SD * latent_eoc, -6.0, -0.3)
    centre = {c.code: c for c in CENTRES}
    sensitivity = frame["centre"].map(lambda code: centre[code].assay_sensitivity_log10).to_numpy(float)
    recorded_share = frame["centre"].map(lambda code: centre[code].kinetics_recorded).to_numpy(float)
    recorded_share = recorded_share * np.where(frame["disease_stage"] == "CR1", 1.0, 0.6)
    recorded = rng.uniform(size=n) < recorded_share
    eoc_recorded = recorded & (rng.uniform(size=n) >= 0.10)

    def observed(level: np.ndarray, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detectable = level >= sensitivity
        value = np.where(shown & detectable, np.round(level, 2), np.nan)
        flag = np.where(shown, detectable, None).astype(object)
        return value, flag

    eoi_value, eoi_flag = observed(level_eoi, recorded)
    eoc_value, eoc_flag = observed(level_eoc, eoc_recorded)
    kinetics = pd.DataFrame({
        "mrd_eoi_log10": eoi_value,
        "mrd_eoi_detectable": eoi_flag,
        "mrd_eoc_log10": eoc_value,
        "mrd_eoc_detectable": eoc_flag,
        "mrd_assay_sensitivity_log10": np.where(recorded, sensitivity, np.nan),
        "_true_mrd_eoi_log10": np.round(level_eoi, 2),
        "_true_mrd_eoc_log10": np.round(level_eoc, 2),
    }, index=frame.index)
    kinetics["mrd_log_reduction"] = mrd_log_reduction(kinetics)
    return kinetics


def _mask_optional(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    """Pre-transplant MRD and HCT-CI go unrecorded in some patients, at centre-specific rates."""
    centre = {c.code: c for c in CENTRES}
    masked = frame.copy()
    mrd_recorded = frame["centre"].map(lambda code: centre[code].mrd_pre_recorded).to_numpy(float)
    masked.loc[rng.uniform(size=len(frame)) >= mrd_recorded, "mrd_pre_hct"] = None
    hct_ci_recorded = frame["centre"].map(lambda code: centre[code].hct_ci_recorded).to_numpy(float)
    masked["hct_ci"] = masked["hct_ci"].astype(object)
    masked.loc[rng.uniform(size=len(frame)) >= hct_ci_recorded, "hct_ci"] = None
    return masked


def generate_all_hsct_cohort(n_patients: int = 4000, seed: int = 42, *, keep_truth: bool = False) -> pd.DataFrame:
    """A synthetic registry extract: one row per patient (no identifiers), the schema's predictors, centre and
    country, and the six raw outcome columns of clarifications section 2 (months; GVHD empty = did not happen
    before relapse, death or last contact).

    With `keep_truth`, `true_*` columns are added for tests (never for a training file): the linear predictors
    of relapse, NRM and both GVHD processes, the unmasked pre-transplant MRD and HCT-CI, and the latent MRD levels.
    """
    rng = np.random.default_rng(seed)
    complete = _draw_covariates(rng, n_patients)
    processes = _Processes.of(complete, rng.exponential(size=(n_patients, 4)))
    latent = _latent_times(processes, FITTED_SCALES)
    outcome = _observe(rng, complete, latent)
    kinetics = _mrd_kinetics(rng, complete)
    cohort = _mask_optional(rng, complete)
    for name in kinetics.columns:
        if not name.startswith("_"):
            cohort[name] = kinetics[name]
    spec = load_spec(Path(__file__).resolve().parent)
    columns = [*(p.name for p in spec.predictors), *(g.name for g in spec.grouping)]
    cohort = pd.concat([cohort[columns], outcome], axis=1)
    derive_endpoints(cohort, allow_all_censored=True)  # the one gate for every derived target
    if keep_truth:
        cohort["true_relapse_linear_predictor"] = processes.relapse_lp
        cohort["true_nrm_linear_predictor"] = processes.nrm_lp
        cohort["true_agvhd34_linear_predictor"] = processes.agvhd_lp
        cohort["true_cgvhd_linear_predictor"] = processes.cgvhd_lp
        cohort["true_mrd_pre_hct"] = complete["mrd_pre_hct"]
        cohort["true_hct_ci"] = complete["hct_ci"]
        cohort["true_mrd_eoi_log10"] = kinetics["_true_mrd_eoi_log10"]
        cohort["true_mrd_eoc_log10"] = kinetics["_true_mrd_eoc_log10"]
    return cohort.reset_index(drop=True)
