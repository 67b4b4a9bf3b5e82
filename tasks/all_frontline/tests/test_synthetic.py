"""The frontline-ALL generator against clinical-evidence F.8 (E11-E18) on a large simulated population, and the
landmark cohort's own guarantees. Each check's tolerance is max(2 SE, the stated band); the figures are printed
(`pytest -s`). Checks stated from diagnosis are judged on the population simulated from diagnosis (induction
deaths and failures included); the rest on the landmark cohort. Incidences are Aalen-Johansen estimates with
every other first event competing; EFS and DFS are Kaplan-Meier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from tasks.all_frontline import SCHEMA
from tasks.all_frontline.generator import (
    TRIAL_GROUPS,
    generate_all_frontline_cohort,
    landmark_cohort,
    simulate_from_diagnosis,
)
from tests.survival_checks import survival_with_se
from training.evaluate import observed_risk

N_POPULATION = 40_000
SEED = 20_261_201


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return simulate_from_diagnosis(N_POPULATION, SEED)


@pytest.fixture(scope="module")
def cohort(population) -> pd.DataFrame:
    return landmark_cohort(population)


# --- estimators --------------------------------------------------------------------------------------------------


def incidence(months: np.ndarray, code: np.ndarray, cause: int, horizon: float) -> tuple[float, float]:
    """Aalen-Johansen cumulative incidence of `cause` by `horizon` (other codes > 0 compete: training/evaluate.py's
    estimator) and a simple SE."""
    months, code = np.asarray(months, float), np.asarray(code)
    cif = observed_risk(months, code, cause, horizon)
    n_eff = max(np.sum(months >= horizon) + np.sum((code > 0) & (months < horizon)), 1)
    return cif, float(np.sqrt(cif * (1 - cif) / n_eff))


def within(value: float, se: float, low: float, high: float) -> bool:
    """In [low, high], widened by 2 SE (tolerance max(2 SE, stated band))."""
    return low - 2 * se <= value <= high + 2 * se


def _children(frame: pd.DataFrame) -> pd.Series:
    return frame["age_years"] < 18


def _efs_from_diagnosis(frame: pd.DataFrame, horizon: float = 60) -> tuple[float, float]:
    return survival_with_se(frame["months_from_diagnosis"], frame["event_from_diagnosis"] > 0, horizon)


def _from_diagnosis_for_landmark(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Landmark-cohort rows of the population: months from diagnosis and any event."""
    return frame["months_from_diagnosis"].to_numpy(), frame["event_from_diagnosis"].to_numpy() > 0


# --- the landmark cohort -----------------------------------------------------------------------------------------


def test_the_landmark_cohort_holds_no_patient_whose_first_event_preceded_the_landmark(population, cohort):
    kept = population[population["in_landmark_cohort"]]
    assert (kept["months_from_diagnosis"] > kept["months_to_landmark"]).all()
    assert (kept["event_from_diagnosis"].isin([0, 1, 2])).all()
    assert (cohort["months_from_landmark"] > 0).all()
    assert set(cohort["first_event"]) == {0, 1, 2}
    before = population[~population["in_landmark_cohort"] & (population["event_from_diagnosis"] > 0)]
    assert (before["months_from_diagnosis"] <= before["months_to_landmark"]).all()
    print(f"\nfrom diagnosis {len(population)}, at the landmark {len(cohort)}")


def test_undetectable_mrd_is_empty_never_zero_and_the_cohort_passes_its_schema(cohort):
    for point in ("eoi", "eoc"):
        level, detectable = cohort[f"mrd_{point}_log10"], cohort[f"mrd_{point}_detectable"]
        assert level[~detectable].isna().all()
        assert level[detectable].notna().all()
        assert (level[detectable] >= cohort.loc[detectable, "mrd_assay_sensitivity_log10"]).all()
        assert not (level == 0).any()
        assert 0.2 < (~detectable).mean() < 0.9
    validate_frame(generate_all_frontline_cohort(500, 3), SCHEMA)


def test_the_generator_is_deterministic_and_centres_differ_in_follow_up_and_mrd_method(cohort):
    first, again = generate_all_frontline_cohort(300, 9), generate_all_frontline_cohort(300, 9)
    pd.testing.assert_frame_equal(first, again)
    longest = cohort.groupby("centre")["months_from_landmark"].max()
    assert (longest > 72).mean() >= 0.4
    assert (longest < 72).any()
    assert set(cohort.groupby("centre")["mrd_method"].first()) == {"pcr", "flow"}
    assert cohort["mrd_assay_sensitivity_log10"].nunique() >= 2
    assert len(longest) == len(TRIAL_GROUPS)


# --- E11-E18 -----------------------------------------------------------------------------------------------------


def test_e11_children_relapse_and_death_in_remission_from_diagnosis(population):
    children = population[_children(population)]
    months, code = children["months_from_diagnosis"], children["event_from_diagnosis"]
    cir, cir_se = incidence(months, code, 1, 60)
    dir_, dir_se = incidence(months, code, 2, 60)
    print(f"\nE11 children 5-y CIR {cir:.3f} (8-12 %), death in remission {dir_:.3f} (2-4 %)")
    assert within(cir, cir_se, 0.08, 0.12)
    assert within(dir_, dir_se, 0.02, 0.04)


def _aieop_bfm_group(frame: pd.DataFrame) -> pd.Series:
    """SR: negative (undetectable or < 10^-4) at both time points; HR: >= 10^-3 at EOC; IR: the others."""
    eoi = frame["mrd_eoi_log10"].fillna(-np.inf)
    eoc = frame["mrd_eoc_log10"].fillna(-np.inf)
    return pd.Series(np.select([eoc >= -3, (eoi < -4) & (eoc < -4)], ["HR", "SR"], "IR"), index=frame.index)


def test_e12_aieop_bfm_mrd_groups_of_b_lineage_children(population):
    children = population[population["in_landmark_cohort"] & _children(population) & (population["lineage"] == "B")]
    group = _aieop_bfm_group(children)
    targets = {"SR": (0.42, 0.923), "IR": (0.52, 0.776), "HR": (0.06, 0.501)}
    found = {}
    for name, (share_target, efs_target) in targets.items():
        members = children[group == name]
        found[name] = (len(members) / len(children), *survival_with_se(*_from_diagnosis_for_landmark(members), 60))
        print(f"\nE12 {name}: share {found[name][0]:.3f} ({share_target}), 5-y EFS {found[name][1]:.3f} ({efs_target})")
    for name, (share_target, efs_target) in targets.items():
        share, efs, se = found[name]
        assert abs(share - share_target) <= max(0.04, 2 * np.sqrt(share * (1 - share) / len(children))), name
        assert within(efs, se, efs_target - 0.04, efs_target + 0.04), name


def test_e13_eoi_positive_mrd_that_clears_by_eoc_against_mrd_that_persists(cohort):
    """COG AALL0232 (NCI high-risk B-ALL, 1-30 y): EOI >= 0.01 %, then EOC negative (< 0.01 %) or still >= 0.01 %;
    DFS from the landmark (relapse or death in remission)."""
    high_risk_b = cohort[(cohort["lineage"] == "B") & (cohort["nci_risk_group"] == "high") & (cohort["age_years"] < 31)]
    positive = high_risk_b[high_risk_b["mrd_eoi_log10"].fillna(-np.inf) >= -4]
    persists = positive["mrd_eoc_log10"].fillna(-np.inf) >= -4
    dfs = {}
    for name, members in (("cleared", positive[~persists]), ("persistent", positive[persists])):
        dfs[name] = survival_with_se(members["months_from_landmark"], members["first_event"] > 0, 60)
        print(f"\nE13 {name}: n {len(members)}, 5-y DFS {dfs[name][0]:.3f}")
    assert within(*dfs["cleared"], 0.79 - 0.06, 0.79 + 0.06)
    assert within(*dfs["persistent"], 0.39 - 0.06, 0.39 + 0.06)
    assert dfs["cleared"][0] > dfs["persistent"][0]


def test_e14_t_lineage_share_and_efs_in_children(population):
    children = population[_children(population)]
    t_share = (children["lineage"] == "T").mean()
    efs = {lineage: _efs_from_diagnosis(children[children["lineage"] == lineage]) for lineage in ("T", "B")}
    print(f"\nE14 T share {t_share:.3f} (10-15 %); 5-y EFS T {efs['T'][0]:.3f} (0.81), B {efs['B'][0]:.3f} (0.88)")
    assert 0.10 <= t_share <= 0.15
    assert within(*efs["T"], 0.81 - 0.04, 0.81 + 0.04)
    assert within(*efs["B"], 0.88 - 0.04, 0.88 + 0.04)


def test_e15_genetic_prevalence_and_relapse_order_in_children(population):
    from lifelines import CoxPHFitter

    children = population[_children(population) & (population["lineage"] == "B")]
    share = children["genetic_subgroup"].value_counts(normalize=True)
    heh = share.get("heh_good_risk", 0) + share.get("heh_poor_risk", 0)
    print(
        f"\nE15 prevalence: HeH {heh:.3f}, ER {share['etv6_runx1']:.3f}, KMT2A {share['kmt2a']:.3f}, "
        f"Ph+ {share['bcr_abl1']:.3f}, iAMP21 {share['iamp21']:.3f}"
    )
    assert 0.25 <= heh <= 0.30 and 0.20 <= share["etv6_runx1"] <= 0.25
    assert 0.01 <= share["kmt2a"] <= 0.03 and 0.02 <= share["bcr_abl1"] <= 0.04 and 0.02 <= share["iamp21"] <= 0.03
    # Cause-specific Cox of relapse on the genetic groups alone (HeH as one group), from diagnosis
    group = children["genetic_subgroup"].replace({"heh_good_risk": "heh", "heh_poor_risk": "heh"})
    design = pd.get_dummies(group)[["etv6_runx1", "heh", "iamp21", "bcr_abl1", "kmt2a", "ph_like"]].astype(float)
    design["_time"] = children["months_from_diagnosis"].to_numpy()
    design["_event"] = (children["event_from_diagnosis"] == 1).astype(int).to_numpy()
    fit = CoxPHFitter().fit(design, "_time", "_event")
    hr, se = np.exp(fit.params_), fit.standard_errors_
    print("E15 relapse HR vs B-other: " + ", ".join(f"{k} {v:.2f}" for k, v in hr.items()))
    for name, target in (("etv6_runx1", 0.5), ("heh", 0.6)):
        assert abs(np.log(hr[name]) - np.log(target)) <= max(2 * se[name], np.log(1.25)), name
    for name in ("iamp21", "bcr_abl1"):  # HR > 3
        assert np.log(hr[name]) > np.log(3) - 2 * se[name], name
    assert hr["etv6_runx1"] < hr["heh"] < 1 < hr["kmt2a"]


def test_e16_nci_rome_groups_in_children(population):
    children = population[_children(population)]
    standard = children["nci_risk_group"] == "standard"
    efs_sr, efs_hr = _efs_from_diagnosis(children[standard]), _efs_from_diagnosis(children[~standard])
    gap, gap_se = efs_sr[0] - efs_hr[0], float(np.hypot(efs_sr[1], efs_hr[1]))
    print(
        f"\nE16 SR share {standard.mean():.3f} (65-70 %); 5-y EFS SR {efs_sr[0]:.3f}, HR {efs_hr[0]:.3f}, "
        f"gap {gap:.3f} (0.08-0.15)"
    )
    assert within(standard.mean(), 0.0, 0.65, 0.70)
    assert within(gap, gap_se, 0.08, 0.15)


def test_e17_older_adults_with_ph_negative_b_all(population):
    ph_negative_b = population[(population["lineage"] == "B") & (population["genetic_subgroup"] != "bcr_abl1")]
    older = ph_negative_b[ph_negative_b["age_years"] >= 55]
    younger = ph_negative_b[(ph_negative_b["age_years"] >= 18) & (ph_negative_b["age_years"] < 55)]
    in_remission = older[older["event_from_diagnosis"] < 3]  # CIR and death in CR among those reaching CR
    cir = incidence(in_remission["months_from_diagnosis"], in_remission["event_from_diagnosis"], 1, 36)
    dcr = incidence(in_remission["months_from_diagnosis"], in_remission["event_from_diagnosis"], 2, 36)
    efs_older, efs_younger = _efs_from_diagnosis(older), _efs_from_diagnosis(younger)
    print(
        f"\nE17 >= 55 y: 3-y CIR {cir[0]:.3f} (40-60 %), death in CR {dcr[0]:.3f} (15-28 %), "
        f"5-y EFS {efs_older[0]:.3f} (0.26) vs < 55 y {efs_younger[0]:.3f} (0.56)"
    )
    assert within(*cir, 0.40, 0.60)
    assert within(*dcr, 0.15, 0.28)
    assert within(*efs_older, 0.26 - 0.06, 0.26 + 0.06)
    assert within(*efs_younger, 0.56 - 0.06, 0.56 + 0.06)


def _relapse_c(cohort: pd.DataFrame) -> dict[str, float]:
    """Harrell's C of relapse (death in remission censors relapse) in the landmark cohort's children, where the
    NCI/Rome rule applies: each Cox fitted on a random half and judged on the other half. Also returns an
    approximate SE of C, sqrt(C (1 - C) / relapses judged)."""
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    frame = cohort[cohort["age_years"] < 18].reset_index(drop=True)
    frame["log_wbc"] = np.log10(frame["wbc_at_diagnosis"])
    for point in ("eoi", "eoc"):  # the assay sensitivity stands in for an undetectable level, with its flag
        frame[f"{point}_level"] = frame[f"mrd_{point}_log10"].fillna(frame["mrd_assay_sensitivity_log10"])
        frame[f"{point}_undetectable"] = (~frame[f"mrd_{point}_detectable"]).astype(float)
        frame[f"{point}_positive"] = (frame[f"mrd_{point}_log10"].fillna(-np.inf) >= -4).astype(float)
    frame["age_10_17"] = (frame["age_years"] >= 10).astype(float)
    categorical = pd.get_dummies(frame[["genetic_subgroup", "cns_status", "sex"]], drop_first=True)
    numeric = [
        "log_wbc",
        "eoi_level",
        "eoc_level",
        "eoi_undetectable",
        "eoc_undetectable",
        "eoi_positive",
        "eoc_positive",
        "ikzf1_deletion",
        "age_10_17",
    ]
    full = pd.concat([frame[numeric], categorical], axis=1).astype(float)
    nci = (frame[["nci_risk_group"]] == "high").astype(float)
    time, relapse = frame["months_from_landmark"].to_numpy(), (frame["first_event"] == 1).astype(int).to_numpy()
    train = np.random.default_rng(0).uniform(size=len(frame)) < 0.5
    c = {}
    for name, design in (("nci", nci), ("full", full)):
        data = design.loc[:, design.std() > 0].assign(_time=time, _event=relapse)
        fit = CoxPHFitter(penalizer=0.001).fit(data[train], "_time", "_event")
        risk = fit.predict_partial_hazard(data[~train]).to_numpy()
        c[name] = concordance_index(time[~train], -risk, relapse[~train])
    c["se"] = float(np.sqrt(c["nci"] * (1 - c["nci"]) / relapse[~train].sum()))
    print(
        f"\nE18 children, Harrell C of relapse (death censors): NCI rule {c['nci']:.3f} (0.58-0.65), "
        f"correctly specified Cox {c['full']:.3f} (0.72-0.80)"
    )
    return c


@pytest.fixture(scope="module")
def relapse_c(cohort) -> dict[str, float]:
    """Both E18 checks read the same two fits: made once."""
    return _relapse_c(cohort)


def test_e18_discrimination_of_the_nci_rule(relapse_c):
    assert within(relapse_c["nci"], relapse_c["se"], 0.58, 0.65)


def test_e18_discrimination_of_a_correctly_specified_cox(relapse_c):
    assert within(relapse_c["full"], relapse_c["se"], 0.72, 0.80)


def test_both_encodings_treat_undetectable_mrd_explicitly(cohort):
    """Cox: the empty level gets its missing indicator (beside the detectable flag), never a 0 level; xgboost:
    the level stays missing (NaN) and the flag says why."""
    from risk_model.preprocessing import Preprocessor

    sample = validate_frame(cohort.iloc[:2000].reset_index(drop=True), SCHEMA)
    undetectable = ~sample["mrd_eoc_detectable"].astype(bool).to_numpy()
    cox = Preprocessor(impute=True).fit(sample, SCHEMA)
    matrix = cox.transform(sample)
    column = {name: matrix[:, i] for i, name in enumerate(cox.columns)}
    np.testing.assert_array_equal(column["mrd_eoc_log10__missing"], undetectable.astype(float))
    np.testing.assert_array_equal(column["mrd_eoc_detectable"], (~undetectable).astype(float))
    assert (column["mrd_eoc_log10"][undetectable] == cox.fill_values["mrd_eoc_log10"]).all()
    assert cox.fill_values["mrd_eoc_log10"] != 0
    boosted = Preprocessor(impute=False).fit(sample, SCHEMA)
    level = boosted.transform(sample)[:, boosted.columns.index("mrd_eoc_log10")]
    assert np.isnan(level[undetectable]).all() and not np.isnan(level[~undetectable]).any()
