"""Promotion on evidence: gates judged on an interval, the family chosen on development data only, the Cox
baseline tried before a failure is registered, and the champion compared on patients neither model trained on."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from tests.sample_tasks import SINGLE, sample_tasks
from tests.stores import small_settings
from training.promotion import (
    GateEstimate,
    GateResult,
    PromotionGates,
    evidence_gates,
    fall_back_to_baseline,
    shared_held_out,
    split_lineage,
)
from training.selection import choose_family
from training.splits import ValidationDesign, hold_out_centres
from training.tune import TuningResult
from training.validation import ValidationResult, fold_mean

# The family choice, the held-out patients and the head-to-head comparison are mechanics of any single-event task.
TASK = SINGLE
SCHEMA = sample_tasks()[TASK].schema
SLOPE_BAND = (0.8, 1.25)


def slope(estimate: float, lower: float, upper: float) -> GateEstimate:
    return GateEstimate("cal_slope_12m", "calibration", estimate, lower, upper, SLOPE_BAND, "hand-made")


def c_index(estimate: float, lower: float, upper: float) -> GateEstimate:
    return GateEstimate("uno_c", "discrimination", estimate, lower, upper, (0.5, np.inf), "hand-made")


@pytest.mark.parametrize(
    ("estimate", "lower", "upper", "passed"),
    [
        (1.00, 0.90, 1.10, True),  # inside
        (0.70, 0.45, 0.95, True),  # point below the band, interval reaches into it: no evidence of miscalibration
        (1.40, 1.20, 1.60, True),  # point above, interval overlaps the upper bound
        (0.60, 0.40, 0.79, False),  # whole interval below the band
        (1.50, 1.26, 1.80, False),  # whole interval above the band
        (1.00, 0.20, 1.90, True),  # wide interval covering the band
    ],
)
def test_a_calibration_gate_fails_only_when_the_interval_lies_outside_the_band(estimate, lower, upper, passed):
    gate = slope(estimate, lower, upper)
    assert gate.passed is passed
    values = gate.values()
    assert values["cal_slope_ok"] is passed and values["cal_slope_12m_lower95"] == lower
    assert (values["cal_slope_12m_band_low"], values["cal_slope_12m_band_high"]) == SLOPE_BAND


@pytest.mark.parametrize(
    ("estimate", "lower", "upper", "passed"),
    [
        (0.62, 0.58, 0.66, True),
        (0.49, 0.44, 0.54, True),  # point below 0.5 but the interval reaches above it
        (0.45, 0.40, 0.499, False),  # whole interval below the floor
        (0.80, 0.75, 0.85, True),  # far above: never fails for being too good
    ],
)
def test_the_discrimination_gate_fails_only_when_the_interval_lies_below_the_floor(estimate, lower, upper, passed):
    assert c_index(estimate, lower, upper).passed is passed
    assert c_index(estimate, lower, upper).values()["uno_c_ok"] is passed


def test_without_an_interval_the_point_decides_and_a_missing_estimate_fails():
    assert slope(1.0, np.nan, np.nan).passed and not slope(0.7, np.nan, np.nan).passed
    assert not slope(np.nan, np.nan, np.nan).passed and not c_index(np.nan, np.nan, np.nan).passed


def _validation(pooled_rows: list[dict]) -> ValidationResult:
    design = ValidationDesign("leave-one-centre-out", "centre", [], "hand-made design")
    return ValidationResult(design, pd.DataFrame(), pd.DataFrame(pooled_rows))


def test_gates_read_the_pooled_estimate_and_interval_of_the_family():
    rows = [
        {"family": f, "endpoint": "relapse", "metric": m, "horizon": h, "estimate": e, "lower": lo, "upper": up}
        for f, shift in (("cox_ph", 0.0), ("xgboost_cox", 1.0))
        for m, h, e, lo, up in (
            ("cal_slope", 12.0, 0.7 + shift, 0.5 + shift, 0.9 + shift),
            ("cal_oe", 12.0, 1.0, 0.9, 1.1),
            ("uno_c", np.nan, 0.6, 0.55, 0.65),
            ("cal_slope", 24.0, 9.0, 8.0, 10.0),
        )
    ]
    validation = _validation(rows)
    gates = evidence_gates(validation, "cox_ph", "relapse", 12, PromotionGates())
    by_name = {g.name: g for g in gates}
    assert set(by_name) == {"cal_slope_12m", "cal_oe_12m", "uno_c"}
    assert (by_name["cal_slope_12m"].estimate, by_name["cal_slope_12m"].lower) == (0.7, 0.5)
    assert by_name["cal_slope_12m"].passed  # 0.5-0.9 reaches into 0.8-1.25
    boosted = {g.name: g for g in evidence_gates(validation, "xgboost_cox", "relapse", 12, PromotionGates())}
    assert not boosted["cal_slope_12m"].passed  # 1.5-1.9 lies above the band
    assert "leave-one-centre-out" in by_name["uno_c"].source


def test_repeated_cross_validation_gives_an_interval_from_the_fold_errors():
    folds = pd.DataFrame({"estimate": [0.9, 1.1, 1.0, 1.0], "se": [0.2, 0.2, 0.2, 0.2], "repeat": [0, 0, 1, 1]})
    pooled = fold_mean("cal_slope", folds)
    half = 1.959963984540054 * 0.2 / np.sqrt(2)  # two folds per repeat: a full-cohort estimate has half the variance
    assert pooled["estimate"] == pytest.approx(1.0)
    assert (pooled["lower"], pooled["upper"]) == pytest.approx((1.0 - half, 1.0 + half))
    c = fold_mean("uno_c", pd.DataFrame({"estimate": [0.6, 0.7], "se": [0.02, 0.02], "repeat": [0, 0]}))
    assert c["estimate"] == pytest.approx(0.65) and c["lower"] < 0.65 < c["upper"]
    logit_se = 0.02 / np.array([0.6 * 0.4, 0.7 * 0.3])  # delta method per fold; one repeat of two folds
    half = 1.959963984540054 * np.sqrt(np.mean(logit_se**2) / 2)
    assert c["upper"] == pytest.approx(1 / (1 + np.exp(-(np.log(0.65 / 0.35) + half))))


def _result(family: str, failed: tuple[str, ...] = ()) -> GateResult:
    values = {f"{name}_ok": name not in failed for name in ("cal_slope", "cal_oe", "uno_c", "net_benefit")}
    return GateResult(family, values, [])


def test_a_failing_boosted_family_falls_back_to_the_cox_baseline_when_that_passes():
    asked: list[str] = []

    def gate(results: dict[str, GateResult]):
        def result(family: str) -> GateResult:
            asked.append(family)
            return results[family]

        return result

    chosen, note = fall_back_to_baseline(
        "xgboost_cox", gate({"xgboost_cox": _result("xgboost_cox", ("cal_slope",)), "cox_ph": _result("cox_ph")})
    )
    assert chosen.family == "cox_ph" and not chosen.failed
    assert "xgboost_cox" in note and "cal_slope" in note and "registered instead" in note
    assert asked == ["xgboost_cox", "cox_ph"]

    chosen, note = fall_back_to_baseline(
        "xgboost_cox",
        gate({"xgboost_cox": _result("xgboost_cox", ("cal_oe",)), "cox_ph": _result("cox_ph", ("uno_c",))}),
    )
    assert chosen.family == "xgboost_cox" and chosen.failed == ["cal_oe"]
    assert "failed too" in note and "uno_c" in note

    asked.clear()
    chosen, note = fall_back_to_baseline("xgboost_cox", gate({"xgboost_cox": _result("xgboost_cox")}))
    assert chosen.family == "xgboost_cox" and note == "" and asked == ["xgboost_cox"]  # baseline never needed
    chosen, note = fall_back_to_baseline("cox_ph", gate({"cox_ph": _result("cox_ph", ("cal_slope",))}))
    assert chosen.family == "cox_ph" and chosen.failed == ["cal_slope"] and note == ""


def test_ties_on_development_go_to_the_cox_baseline():
    assert choose_family({"cox_ph": 0.600, "xgboost_cox": 0.604}) == "cox_ph"
    assert choose_family({"cox_ph": 0.600, "xgboost_cox": 0.610}) == "xgboost_cox"
    assert choose_family({"cox_ph": 0.620, "xgboost_cox": 0.610}) == "cox_ph"
    assert choose_family({"cox_ph": 0.600, "xgboost_cox": np.nan}) == "cox_ph"


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return validate_frame(sample_tasks()[TASK].generate_cohort(1200, 23), SCHEMA)


TUNED = {"relapse": TuningResult({"eta": 0.05, "max_depth": 2}, 80, 0.6, 0)}


def test_the_family_choice_does_not_read_the_held_out_patients(cohort, tmp_path):
    """Rewriting every held-out outcome changes the held-out C but neither the development scores nor the choice."""
    from training.evaluate import evaluate_bundle
    from training.pipeline import choose_on_development, fit_family
    from training.splits import tuning_folds

    task = sample_tasks()[TASK]
    settings = replace(small_settings(tmp_path), task=TASK, n_folds=3)
    split = hold_out_centres(cohort, SCHEMA.event_column, 0.25, 0)
    rng = np.random.default_rng(5)
    changed = cohort.copy()
    rows = split.held_out
    changed.loc[rows, SCHEMA.event_column] = 1 - changed.loc[rows, SCHEMA.event_column]
    changed.loc[rows, SCHEMA.time_column] = rng.uniform(1, 40, len(rows))
    results, held_out_c = [], []
    for frame in (cohort, changed):
        again = hold_out_centres(frame, SCHEMA.event_column, 0.25, 0)
        assert np.array_equal(again.held_out, split.held_out)  # centres are held out whatever their outcomes
        development = frame.iloc[again.development].reset_index(drop=True)
        held_out = frame.iloc[again.held_out].reset_index(drop=True)
        folds = tuning_folds(development, SCHEMA.event_column, settings.n_folds, settings.seed)
        results.append(choose_on_development(task, development, folds, TUNED, settings))
        bundle = fit_family("xgboost_cox", task, development, TUNED, settings.seed)
        held_out_c.append(evaluate_bundle(bundle, held_out, task.endpoint_targets(held_out)).metrics["uno_c"])
    (first, first_scores), (second, second_scores) = results
    assert first == second and first_scores == second_scores
    assert all(0.5 < v < 0.8 for v in first_scores.values())
    assert abs(held_out_c[0] - held_out_c[1]) > 0.01  # the held-out data did change what it would have said


def test_the_held_out_patients_both_models_never_trained_on(cohort):
    event = SCHEMA.event_column
    split = hold_out_centres(cohort, event, 0.25, 1)
    lineage = {"data_digest": "d", **split_lineage(cohort, split, 1, 0.25)}
    assert lineage["held_out_centres"] and lineage["split_seed"] == 1

    # Same data, same split: every held-out patient.
    rows, how = shared_held_out(lineage, "d", cohort, split, event)
    assert np.array_equal(rows, np.arange(len(split.held_out))) and "all of the new held-out patients" in how

    # Another split seed: only the patients of centres both held out; none was in the champion's development.
    other = hold_out_centres(cohort, event, 0.25, 7)
    rows, _ = shared_held_out(lineage, "d", cohort, other, event)
    positions = other.held_out[rows]
    assert not np.isin(positions, split.development).any()
    assert np.array_equal(np.sort(positions), np.intersect1d(split.held_out, other.held_out))

    # Changed data: the new held-out patients of the champion's held-out centres (it never saw those centres).
    changed = cohort.copy()
    changed[SCHEMA.time_column] = changed[SCHEMA.time_column] + 0.5
    rows, how = shared_held_out(lineage, "changed", changed, other, event)
    assert set(changed.iloc[other.held_out[rows]]["centre"]) <= set(lineage["held_out_centres"])
    assert "centres the champion held out" in how

    # Without centres: same data and another seed gives the patients held out by both splits; changed data cannot.
    no_centres = cohort.drop(columns=["centre"])
    patient_split = hold_out_centres(no_centres, event, 0.25, 1)
    patient_lineage = {"data_digest": "d", **split_lineage(no_centres, patient_split, 1, 0.25)}
    assert patient_lineage["held_out_centres"] is None
    second = hold_out_centres(no_centres, event, 0.25, 2)
    rows, how = shared_held_out(patient_lineage, "d", no_centres, second, event)
    assert np.array_equal(second.held_out[rows], np.intersect1d(patient_split.held_out, second.held_out))
    assert 0 < len(rows) < len(second.held_out) and "held out by both splits" in how
    rows, how = shared_held_out(patient_lineage, "other", no_centres, second, event)
    assert rows is None and "unknown" in how


def test_the_champion_is_compared_head_to_head_on_patients_neither_trained_on(cohort, tmp_path):
    """A champion trained with another split seed is re-scored only on the held-out patients of centres both
    runs held out; the comparison says how many and what it found."""
    from training.evaluate import evaluate_bundle, subset_target
    from training.pipeline import _gate, complete_bundle, fit_family

    task = sample_tasks()[TASK]
    event = SCHEMA.event_column
    old_split, new_split = hold_out_centres(cohort, event, 0.4, 1), hold_out_centres(cohort, event, 0.4, 2)
    old_dev = cohort.iloc[old_split.development].reset_index(drop=True)
    champion = complete_bundle(fit_family("cox_ph", task, old_dev, TUNED, 0), old_dev, SCHEMA, 0)
    champion.lineage = {"version": "3", **split_lineage(cohort, old_split, 1, 0.4)}
    champion.save(tmp_path / TASK / "3")
    (tmp_path / TASK / "champion.json").write_text(json.dumps({"version": "3", "path": "3", "data_digest": "d"}))

    new_dev = cohort.iloc[new_split.development].reset_index(drop=True)
    held_out = cohort.iloc[new_split.held_out].reset_index(drop=True)
    new = complete_bundle(fit_family("xgboost_cox", task, new_dev, TUNED, 0), new_dev, SCHEMA, 0)
    cox = complete_bundle(fit_family("cox_ph", task, new_dev, TUNED, 0), new_dev, SCHEMA, 0)
    targets = task.endpoint_targets(held_out)
    settings = replace(small_settings(tmp_path), task=TASK, models_dir=tmp_path)
    passed = GateResult("xgboost_cox", {"cal_slope_ok": True}, [{"gate": "cal_slope_12m"}])
    decision = _gate(
        new,
        passed,
        held_out,
        targets,
        settings,
        "d",
        PromotionGates(bootstrap_draws=50),
        cox,
        (cohort, new_split, event),
    )

    shared = np.flatnonzero(np.isin(new_split.held_out, old_split.held_out))
    assert 0 < len(shared) < len(new_split.held_out)
    assert "head_to_head_patients" in decision.gates, decision.reason
    assert decision.gates["head_to_head_patients"] == len(shared)
    assert f"compared head to head on {len(shared)} held-out patients neither trained on" in decision.reason
    shared_frame = held_out.iloc[shared].reset_index(drop=True)
    main = {"relapse": subset_target(targets["relapse"], shared)}
    expected = evaluate_bundle(champion, shared_frame, main).metrics["uno_c"]
    assert decision.gates["champion_uno_c"] == pytest.approx(expected)
    assert decision.table == [{"gate": "cal_slope_12m"}]


def test_the_run_note_and_tags_record_every_gate_with_its_interval_and_band():
    from training.pipeline import _gate_tag
    from training.run_note import run_note

    gates = [slope(0.84, 0.52, 1.16), c_index(0.45, 0.40, 0.49)]
    note = run_note(
        task="t",
        endpoint="relapse",
        horizon=12,
        data="d",
        split="s",
        metrics={"cox_ph": {}},
        family="cox_ph",
        version="1",
        promoted=False,
        reason="r",
        gates={},
        gate_table=[g.row() for g in gates],
    )
    assert "| cal_slope_12m | 0.840 | 0.520 to 1.160 | 0.800 to 1.250 | pass | hand-made |" in note
    assert "| uno_c | 0.450 | 0.400 to 0.490 | above 0.500 | FAIL | hand-made |" in note
    assert _gate_tag(gates[0].row()) == "0.840 (95 % CI 0.520 to 1.160), band 0.8 to 1.25: pass; hand-made"
