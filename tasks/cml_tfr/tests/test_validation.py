"""Internal-external validation: the folds, the random-effects pooling against hand formulas, the per-centre
metrics with their skip rules, the bootstrap design and the subgroup table. On cml_tfr's cohort: the expected
concordance range, the thin 60-month horizons of small centres and the subgroup variables are this cohort's."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from features.task_schema import validate_frame
from features.tasks import TASKS
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort
from training import validation
from training.bootstrap import bootstrap_headline, bootstrap_indices
from training.evaluate import evaluable_horizons
from training.pipeline import fit_family
from training.splits import internal_external_folds
from training.subgroups import subgroup_markdown, subgroup_table

TASK = TASKS["cml_tfr"]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return validate_frame(generate_cml_tfr_cohort(1200, seed=31), CML_TFR_SCHEMA)


@pytest.fixture(scope="module")
def result(cohort) -> validation.ValidationResult:
    """Leave-one-centre-out with the Cox family only (cheap, deterministic)."""
    return validation.internal_external_validation(cohort, TASK, lambda family, train: fit_family(
        family, TASK, train, {}, 0), ("cox_ph",), seed=0)


def test_random_effects_equals_dersimonian_laird_by_hand():
    effect = np.array([0.10, 0.35, 0.20, 0.55, -0.05])
    se = np.array([0.10, 0.12, 0.08, 0.15, 0.11])
    w = 1 / se**2
    fixed = np.sum(w * effect) / w.sum()
    q = np.sum(w * (effect - fixed) ** 2)
    tau2 = max(0.0, (q - (len(effect) - 1)) / (w.sum() - np.sum(w**2) / w.sum()))
    w_re = 1 / (se**2 + tau2)
    mean = np.sum(w_re * effect) / w_re.sum()
    mean_se = np.sqrt(1 / w_re.sum())
    half = stats.t.ppf(0.975, len(effect) - 2) * np.sqrt(tau2 + mean_se**2)
    pooled = validation.random_effects(effect, se)
    assert pooled["estimate"] == pytest.approx(mean, abs=1e-12)
    assert pooled["tau2"] == pytest.approx(tau2, abs=1e-12)
    assert pooled["i2"] == pytest.approx(max(0.0, (q - 4) / q), abs=1e-12)
    assert pooled["lower"] == pytest.approx(mean - 1.959963984540054 * mean_se, abs=1e-12)
    assert (pooled["pi_lower"], pooled["pi_upper"]) == pytest.approx((mean - half, mean + half), abs=1e-12)
    # statsmodels agrees when tau^2 > 0 ...
    from statsmodels.stats.meta_analysis import combine_effects

    reference = combine_effects(effect, se**2, method_re="dl")
    assert pooled["estimate"] == pytest.approx(reference.mean_effect_re, abs=1e-12)
    assert pooled["i2"] == pytest.approx(reference.i2, abs=1e-12)
    # ... and homogeneous centres give tau^2 = 0, I^2 = 0 and the fixed-effect mean (truncated, unlike statsmodels).
    calm = validation.random_effects(np.array([0.50, 0.52, 0.49, 0.51]), np.array([0.1, 0.1, 0.14, 0.1]))
    assert calm["tau2"] == 0 and calm["i2"] == 0
    w = 1 / np.array([0.1, 0.1, 0.14, 0.1]) ** 2
    assert calm["estimate"] == pytest.approx(np.sum(w * [0.50, 0.52, 0.49, 0.51]) / w.sum(), abs=1e-12)


def test_pooling_works_on_the_logit_and_log_scales():
    c = np.array([0.62, 0.66, 0.60, 0.70])
    se = np.array([0.03, 0.04, 0.03, 0.05])
    pooled = validation.pool("uno_c", c, se)
    logit = validation.random_effects(np.log(c / (1 - c)), se / (c * (1 - c)))
    assert pooled["estimate"] == pytest.approx(1 / (1 + np.exp(-logit["estimate"])), abs=1e-12)
    assert pooled["lower"] < pooled["estimate"] < pooled["upper"]
    assert pooled["pi_lower"] <= pooled["lower"] and pooled["pi_upper"] >= pooled["upper"]
    oe = validation.pool("cal_oe", np.array([0.9, 1.1, 1.3]), np.array([0.1, 0.1, 0.1]))  # SE of log(O/E)
    assert oe["estimate"] == pytest.approx(np.exp(validation.random_effects(np.log([0.9, 1.1, 1.3]),
                                                                             np.full(3, 0.1))["estimate"]))
    # Missing or degenerate centres are left out; with fewer than 3 there is no prediction interval.
    two = validation.pool("cal_slope", np.array([0.9, np.nan, 1.1]), np.array([0.1, 0.1, 0.2]))
    assert two["k"] == 2 and np.isnan(two["pi_lower"])


def test_folds_leave_out_whole_centres_or_countries_or_fall_back_to_kfold(cohort):
    design = internal_external_folds(cohort, "relapsed")
    assert design.kind == "leave-one-centre-out" and len(design.folds) == cohort["centre"].nunique()
    for fold in design.folds:
        assert set(cohort["centre"].iloc[fold.test]) == {fold.name}
        assert fold.name not in set(cohort["centre"].iloc[fold.train])
        assert len(fold.train) + len(fold.test) == len(cohort)
    # Many small centres: leave one country out.
    tiny = cohort.assign(centre=cohort["country"] + "-" + (np.arange(len(cohort)) % 30).astype(str))
    by_country = internal_external_folds(tiny, "relapsed")
    assert by_country.kind == "leave-one-country-out" and "small" in by_country.description
    assert len(by_country.folds) == cohort["country"].nunique()
    # No centres: repeated stratified K-fold, every patient tested once per repeat, said so.
    no_centres = internal_external_folds(cohort.drop(columns=["centre"]), "relapsed", seed=1)
    assert no_centres.kind == "repeated stratified k-fold" and "fewer than 3 centres" in no_centres.description
    for repeat in (0, 1):
        tested = np.concatenate([f.test for f in no_centres.folds if f.repeat == repeat])
        assert np.array_equal(np.sort(tested), np.arange(len(cohort)))


def test_per_centre_metrics_skip_thin_horizons_and_pool_the_rest(result, cohort):
    rows = result.per_cluster
    assert set(rows["cluster"]) == set(cohort["centre"])
    assert set(rows["metric"]) == {"uno_c", "cal_oe", "cal_slope"}
    for row in rows.itertuples():
        if row.metric == "uno_c" or row.skipped_reason:
            continue
        time = cohort.loc[cohort["centre"] == row.cluster, CML_TFR_SCHEMA.time_column]
        assert (time >= row.horizon).sum() >= 20, (row.cluster, row.horizon)
    skipped = rows[rows["skipped_reason"] != ""]
    assert not skipped.empty and skipped["estimate"].isna().all()
    assert skipped["skipped_reason"].str.contains("fewer than 20 patients at risk").all()
    pooled = result.pooled.set_index(["metric", "horizon"])
    sixty = pooled.loc[("cal_oe", 60)]
    assert sixty["k"] == len(cohort["centre"].unique()) - sixty["k_skipped"]
    c = pooled.loc[("uno_c", np.nan)] if ("uno_c", np.nan) in pooled.index else result.pooled.query(
        "metric == 'uno_c'").iloc[0]
    assert 0.55 < c["estimate"] < 0.72 and c["lower"] < c["estimate"] < c["upper"]
    assert c["pi_lower"] <= c["lower"] and 0 <= c["i2"] <= 1
    # Every patient has an out-of-centre prediction, from a model that never saw the centre.
    assert np.isfinite(result.risks["cox_ph"]["relapse"]).all()
    metrics = result.mlflow_metrics("cox_ph")
    assert {"pooled_uno_c", "pooled_uno_c_lower95", "pooled_uno_c_pi_lower95", "pooled_uno_c_i2",
            "pooled_cal_oe_12m", "pooled_cal_slope_12m"} <= set(metrics)


def test_bootstrap_resamples_centres_or_patients_and_brackets_the_estimate(cohort):
    indices, unit = bootstrap_indices(cohort, 20, seed=0)
    assert unit == "centres"
    centres = cohort["centre"].to_numpy()
    for rows in indices:  # whole centres: a centre is either absent or fully present (possibly repeated)
        counts = pd.Series(centres[rows]).value_counts()
        sizes = cohort["centre"].value_counts()
        assert all(counts[c] % sizes[c] == 0 for c in counts.index)
    few = cohort[cohort["centre"].isin(sorted(cohort["centre"].unique())[:4])].reset_index(drop=True)
    assert bootstrap_indices(few, 5, seed=0)[1] == "patients"
    target = TASK.cause_targets(few)["relapse"]
    # The fitted model alone: the bootstrap scores its predictions, never what complete_bundle adds for serving.
    bundle = fit_family("cox_ph", TASK, cohort, {}, 0)
    targets = TASK.endpoint_targets(few)
    evaluable = {"relapse": evaluable_horizons(target[0], list(CML_TFR_SCHEMA.horizons_months))[0]}
    # 20 draws: every metric's point estimate stayed inside by a margin over bootstrap seeds 1-6 and two cohorts.
    intervals = bootstrap_headline(bundle, few, targets, evaluable, draws=20, seed=1)
    assert intervals.unit == "patients" and "20 draws resampling patients" in intervals.statement
    from training.evaluate import evaluate_bundle

    point = evaluate_bundle(bundle, few, targets).metrics
    for name in ("uno_c", "harrell_c", "ibs", "auc_12m", "cal_oe_12m", "ici_12m"):
        lower, upper = intervals.intervals[name]
        assert lower <= point[name] <= upper, name
    assert {"uno_c_lower95", "uno_c_upper95", "ici_12m_lower95"} <= set(intervals.mlflow_metrics())


def test_subgroup_table_covers_every_variable_and_flags_small_groups(result, cohort):
    table = subgroup_table(cohort, CML_TFR_SCHEMA, TASK.endpoint_targets(cohort),
                           {"relapse": result.risks["cox_ph"]["relapse"][:, result.months.index(12)]})
    assert {"sex", "age band", "centre", "country", "tki_at_stop", "transcript_type", "sokal_risk"} <= set(
        table["variable"])
    assert list(table.loc[table["variable"] == "age band", "group"]) == ["< 45", "45-64", ">= 65"]
    small = table[(table["n"] < 100) | (table["events"] < 20)]
    assert small["small"].all() and not table.loc[~table.index.isin(small.index), "small"].any()
    for variable, part in table.groupby("variable"):
        assert part["n"].sum() == len(cohort), variable
    markdown = subgroup_markdown(table, 12, "Subgroups")
    assert "| sex | female |" in markdown and "small" in markdown


def test_without_centres_the_folds_are_averaged_not_meta_analysed(cohort):
    # Half the cohort: still 10 folds of 60 patients, each with 12-month calibration (it costs 10 refits).
    no_centres = cohort.iloc[:600].drop(columns=["centre", "country"]).reset_index(drop=True)
    result = validation.internal_external_validation(no_centres, TASK, lambda family, train: fit_family(
        family, TASK, train, {}, 0), ("cox_ph",), seed=0)
    assert not result.design.by_cluster and len(result.design.folds) == 10
    c = result.pooled[result.pooled["metric"] == "uno_c"].iloc[0]
    per_fold = result.per_cluster[result.per_cluster["metric"] == "uno_c"]["estimate"]
    assert c["estimate"] == pytest.approx(per_fold.mean()) and np.isnan(c["i2"])
    assert c["lower"] < c["estimate"] < c["upper"]  # a confidence interval from the fold errors (for the gates)
    assert set(result.mlflow_metrics("cox_ph")) >= {"pooled_uno_c", "pooled_cal_oe_12m"}
    table = subgroup_table(no_centres, CML_TFR_SCHEMA, TASK.endpoint_targets(no_centres),
                           {"relapse": result.risks["cox_ph"]["relapse"][:, result.months.index(12)]})
    assert "centre" not in set(table["variable"]) and "sex" in set(table["variable"])
