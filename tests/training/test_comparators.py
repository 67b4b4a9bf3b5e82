"""Today's risk tools beside the model (training/comparators.py) and nested models (training/nested_models.py):
reclassification counts and the categorical NRI against hand-computed values, the nested models' pieces against
lifelines and linear algebra, and the whole comparison on a small spec-only task with a registered rule."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tasks import EndpointTarget, load_task
from tests.features.test_task_spec import GOOD_SPEC
from training.comparators import (
    categorical_nri,
    compare_with_comparators,
    high_share_threshold,
    reclassification_counts,
)
from training.nested_models import fit_cox, independent_columns, null_log_likelihood, spline_basis

# Ten patients: events of the cause (code 1) at months 2, 3, 4, 5; a competing death at 5; the rest censored at 24.
TIME = np.array([2, 3, 4, 5, 5, 24, 24, 24, 24, 24], float)
CODE = np.array([1, 1, 1, 1, 2, 0, 0, 0, 0, 0])
OLD = np.array([0, 0, 1, 1, 0, 0, 1, 0, 0, 1], bool)
NEW = np.array([1, 1, 0, 1, 0, 1, 1, 0, 0, 0], bool)


def test_reclassification_counts_each_move_and_its_events():
    counts = reclassification_counts(EndpointTarget(TIME, CODE, 1, True), OLD, NEW, 12).set_index("move")
    # up: patients 0, 1, 5 (events 0, 1); down: 2, 9 (event 2); stayed standard: 4, 7, 8; stayed high: 3, 6
    assert counts.loc["standard -> high", ["n", "events", "competing", "censored"]].tolist() == [3, 2, 0, 0]
    assert counts.loc["high -> standard", ["n", "events"]].tolist() == [2, 1]
    assert counts.loc["stayed standard", ["n", "events", "competing"]].tolist() == [3, 0, 1]
    assert counts.loc["stayed high", ["n", "events"]].tolist() == [2, 1]
    assert counts.loc["standard -> high", "cumulative_incidence"] == pytest.approx(2 / 3)


def test_categorical_nri_without_censoring_is_the_plain_proportions():
    nri = categorical_nri(EndpointTarget(TIME, CODE, 1, True), OLD, NEW, 12)
    # events (0-3): up 0 and 1, down 2 -> (2 - 1) / 4; non-events (4-9): up 5, down 9 -> (1 - 1) / 6
    assert nri["nri_events"] == pytest.approx(0.25)
    assert nri["nri_nonevents"] == pytest.approx(0.0)
    assert nri["nri"] == pytest.approx(0.25)


def test_censoring_enters_through_the_cumulative_incidence_of_each_moved_group():
    time, code = np.append(TIME, 6.0), np.append(CODE, 0)  # one more patient moved up, censored at 6 months
    old, new = np.append(OLD, False), np.append(NEW, True)
    target = EndpointTarget(time, code, 1, True)
    counts = reclassification_counts(target, old, new, 12).set_index("move")
    # Up: events at 2 (4 at risk) and 3 (3 at risk), censored at 6 and 24: F = 1/4 + 3/4 * 1/3 = 1/2.
    assert counts.loc["standard -> high", ["n", "events", "censored"]].tolist() == [4, 2, 1]
    assert counts.loc["standard -> high", "cumulative_incidence"] == pytest.approx(0.5)
    # Overall: 11 patients, events at 2, 3, 4, 5 (and the competing one at 5): F = 4/11 (no censoring before 6).
    nri = categorical_nri(target, old, new, 12)
    up, down = 4 / 11, 2 / 11
    assert nri["nri_events"] == pytest.approx((up * 0.5 - down * 0.5) / (4 / 11))
    assert nri["nri_nonevents"] == pytest.approx((down * 0.5 - up * 0.5) / (7 / 11))


def test_the_same_classification_moves_nobody():
    nri = categorical_nri(EndpointTarget(TIME, CODE, 1, True), OLD, OLD, 12)
    assert nri == {"nri_events": 0.0, "nri_nonevents": 0.0, "nri": 0.0}


def test_the_share_threshold_puts_that_share_at_or_above_it():
    risk = np.arange(1, 101) / 100
    assert np.mean(risk >= high_share_threshold(risk, 0.25)) == pytest.approx(0.25)


def test_null_log_likelihood_is_lifelines_with_efron_ties():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    time = np.round(rng.exponential(10 * np.exp(-0.5 * x)), 0) + 1  # rounded: many ties
    event = rng.random(200) < 0.7
    data = pd.DataFrame({"x": x, "t": time, "e": event})
    fitter = CoxPHFitter().fit(data, "t", "e")
    statistic = fitter.log_likelihood_ratio_test().test_statistic
    assert 2 * (fitter.log_likelihood_ - null_log_likelihood(time, event)) == pytest.approx(statistic, rel=1e-6)
    assert fit_cox(x[:, None], time, event)[1] == pytest.approx(fitter.log_likelihood_, rel=1e-8)


def test_collinear_and_constant_columns_are_left_out_in_order():
    rng = np.random.default_rng(1)
    eoi, eoc = rng.normal(-3, 1, 300), rng.normal(-4, 1, 300)
    matrix = np.column_stack([eoi, eoc, np.ones(300), eoi - eoc, (eoi - eoc) ** 2])
    assert independent_columns(matrix).tolist() == [True, True, False, False, True]


def test_the_spline_is_linear_beyond_its_outer_knots():
    knots = np.array([0.0, 1.0, 2.0, 3.0])
    x = np.linspace(3.5, 6, 6)
    basis = spline_basis(x, knots)
    assert basis.shape == (6, 3)
    assert np.allclose(np.diff(basis[:, 1:], n=2, axis=0), 0.0, atol=1e-9)  # no curvature after the last knot
    assert np.allclose(spline_basis(np.array([-1.0, 0.0]), knots)[:, 1:], 0.0)  # nor before the first


# --- the whole comparison on a small spec-only task with a rule registered by its folder ---------------------

COMPARATORS = """
[[comparators]]
name = "risk_group_rule"
title = "Risk group as recorded"
kind = "groups"
function = "risk_group_rule"
groups = ["low", "high"]
high_intensity = ["high"]

[[comparators]]
name = "coin_rule"
title = "A rule that ignores the patient"
kind = "groups"
function = "coin"
groups = ["standard", "high"]
high_intensity = ["high"]

[[comparators]]
name = "age_index"
title = "Age index, refitted"
kind = "index"
predictors = ["age_years"]
high_intensity_share = 0.3

[[nested_models]]
name = "age_then_group"
title = "Risk group beyond age"
steps = [["age_years"], ["risk_group"], ["spline(age_years)"]]
"""

FOLDER_CODE = """
import numpy as np
import pandas as pd

from features.task_spec import TaskCode


def risk_group_rule(frame):
    return frame["risk_group"]


def coin(frame):
    rng = np.random.default_rng(len(frame))
    return pd.Series(np.where(rng.random(len(frame)) < 0.4, "high", "standard"), index=frame.index)


TASK_CODE = TaskCode(comparators={"risk_group_rule": risk_group_rule, "coin": coin})
"""


def three_cause_frame(n: int, seed: int) -> pd.DataFrame:
    """Relapse hazard 2.5-fold in the high risk group; death rising with age; uniform censoring; eight centres."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n).round(1)
    high = rng.random(n) < 0.4
    rates = np.stack([0.02 * np.exp(0.9 * high), 0.008 * np.exp(0.03 * (age - 50)), np.full(n, 0.004)])
    times = rng.exponential(1 / rates)
    censor = rng.uniform(6, 60, n)
    return pd.DataFrame(
        {
            "age_years": age,
            "risk_group": np.where(high, "high", "low"),
            "centre": rng.choice([f"C{i}" for i in range(8)], n),
            "months_to_event": np.minimum(times.min(axis=0), censor).round(2),
            "event_code": np.where(times.min(axis=0) <= censor, times.argmin(axis=0) + 1, 0),
        }
    )


def write_task_folder(root: Path, name: str = "three_with_rules") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text(GOOD_SPEC + COMPARATORS)
    (folder / "__init__.py").write_text(FOLDER_CODE)
    return folder


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from training.pipeline import fit_family

    task = load_task(write_task_folder(tmp_path_factory.mktemp("rules")))
    development, held_out = three_cause_frame(800, 1), three_cause_frame(500, 2)
    # The "model" knows only the risk group: its high-intensity class at the rule's share is the rule itself.
    model_task = replace(task, schema=replace(task.schema, predictors=task.schema.predictors[1:]))
    model = fit_family("cox_ph", model_task, development, {}, seed=0)
    full = fit_family("cox_ph", task, development, {}, seed=0)  # another family of the run: a row, no NRI
    report = compare_with_comparators(
        task,
        development,
        held_out,
        task.endpoint_targets(held_out),
        model,
        "cox_ph",
        draws=40,
        seed=0,
        thresholds=np.arange(0.05, 0.5, 0.05),
        others={"cox_ph": model, "xgboost_cox": full},
    )
    return report


def test_the_table_has_the_model_and_every_comparator(comparison):
    table = comparison.table.set_index("name")
    assert list(table.index) == ["model", "xgboost_cox", "risk_group_rule", "coin_rule", "age_index"]
    assert np.isfinite(table.loc["xgboost_cox", "uno_c_lower95"]) and np.isnan(table.loc["xgboost_cox", "nri"])
    assert table.loc["model", "uno_c"] > table.loc["coin_rule", "uno_c"] + 0.05
    assert table.loc["coin_rule", "uno_c_lower95"] < 0.5 < table.loc["coin_rule", "uno_c_upper95"] + 0.02
    assert np.isfinite(table.loc["age_index", "cal_oe_12m"])
    assert table.loc["age_index", "high_share"] == pytest.approx(0.3, abs=0.07)


def test_a_rule_equal_to_the_models_classification_moves_nobody(comparison):
    table = comparison.table.set_index("name")
    assert table.loc["risk_group_rule", "nri"] == 0.0
    assert table.loc["risk_group_rule", "delta_uno_c"] == pytest.approx(0.0, abs=1e-12)
    moves = comparison.reclassification.set_index(["comparator", "move"])["n"]
    assert moves[("risk_group_rule", "standard -> high")] == moves[("risk_group_rule", "high -> standard")] == 0
    assert moves[("coin_rule", "standard -> high")] > 0  # a random rule disagrees with the model


def test_nested_models_report_df_lr_tests_and_changes_in_c(comparison):
    nested = comparison.nested.set_index("step")
    assert nested.loc[1, "df"] == 1 and nested.loc[2, "df"] == 1
    assert nested.loc[2, "lr_p"] < 0.01  # the risk group drives relapse
    assert nested.loc[2, "delta_uno_c"] > 0
    assert nested.loc[2, "delta_uno_c_lower95"] <= nested.loc[2, "delta_uno_c"] <= nested.loc[2, "delta_uno_c_upper95"]
    # the spline's linear part is age itself: left out as collinear, only the non-linear terms add
    assert nested.loc[3, "df"] == 2 and "spline(age_years):0" in nested.loc[3, "aliased"]


def test_metrics_are_named_per_comparator_and_step(comparison):
    metrics = comparison.mlflow_metrics()
    assert {
        "comparator_coin_rule_uno_c",
        "comparator_coin_rule_nri_lower95",
        "comparator_model_uno_c",
        "comparator_age_index_cal_oe_12m",
        "comparator_coin_rule_moved_up",
        "nested_age_then_group_all_step2_lr_chi2",
    } <= set(metrics)


def test_a_rules_calibration_gap_is_taken_group_by_group():
    from training.comparators import group_calibration_gap

    time = np.array([1, 2, 20, 20, 20, 20, 20, 20, 20, 20], float)
    code = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    groups = np.array(["a"] * 4 + ["b"] * 6)
    risk = np.array([0.25] * 4 + [0.1] * 6)
    # a: observed 2/4 against 0.25; b: observed 0 against 0.1 -> (4 * 0.25 + 6 * 0.1) / 10
    assert group_calibration_gap(EndpointTarget(time, code, 1, True), groups, risk, 12) == pytest.approx(0.16)


def test_a_level_without_held_out_events_gets_its_lr_tests_and_no_c(tmp_path):
    from training.nested_models import nested_model_comparisons

    task = load_task(write_task_folder(tmp_path))
    development, held_out = three_cause_frame(600, 3), three_cause_frame(200, 4)
    held_out.loc[held_out["risk_group"] == "low", "event_code"] = 0  # no held-out event among the low group
    spec = task.spec.model_copy(
        update={
            "nested_models": [
                task.spec.nested_models[0].model_copy(
                    update={"by": "risk_group", "steps": [["age_years"], ["spline(age_years)"]]}
                )
            ]
        }
    )
    table = nested_model_comparisons(
        replace(task, spec=spec), development, held_out, task.endpoint_targets(held_out), "relapse", draws=10, seed=0
    )
    low = table[table["level"] == "risk_group=low"].set_index("step")
    assert np.isfinite(low.loc[1, "lr_chi2"]) and "no held-out events" in low.loc[1, "status"]
    assert np.isfinite(table[table["level"] == "all"]["uno_c"]).all()


def test_tools_of_a_predictor_dropped_from_the_run_are_skipped_with_the_reason(tmp_path):
    from features.predictor_variation import without_predictors
    from training.pipeline import fit_family

    task = load_task(write_task_folder(tmp_path))
    task = replace(task, schema=without_predictors(task.schema, ["age_years"]))
    development, held_out = three_cause_frame(500, 6), three_cause_frame(300, 7)
    model = fit_family("cox_ph", task, development, {}, seed=0)
    report = compare_with_comparators(
        task,
        development,
        held_out,
        task.endpoint_targets(held_out),
        model,
        "cox_ph",
        draws=10,
        seed=0,
        thresholds=np.array([0.1, 0.2]),
    )
    assert list(report.table["name"]) == ["model", "risk_group_rule", "coin_rule"]
    assert report.skipped == {"age_index": "not compared: its predictors age_years are not learned in this run"}
    assert report.nested["status"].tolist() == ["not fitted: age_years not learned in this run"]
