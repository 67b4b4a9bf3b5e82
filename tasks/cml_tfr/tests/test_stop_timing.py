"""Stop timing moves the way the data-generating model says (later stops after longer deep response are safer),
and calls a later stop better only within its evidence: the difference from stopping now, paired within each
bootstrap replicate, must have an interval below zero and exceed the margin the task spec states."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from risk_model.stop_timing import (
    ADVANCED_WITH_TIME,
    STATEMENT,
    StopTimingSettings,
    projected_patient,
    stop_timing,
)
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort, true_relapse_free_probability
from training.families import CoxFamily
from training.pipeline import complete_bundle

# Two years of deep response on four years of TKI: the generator gives HR 0.92 per year of deep response and HR
# 1.8 while TKI duration is under 5 years, so waiting 12 or 24 months must lower the projected risk.
PATIENT = {"age_at_stop_years": 55.0, "sex": "male", "tki_years": 4.0, "dmr_years": 2.0, "depth_at_stop": "MR4",
           "sokal_risk": "intermediate", "transcript_type": "e14a2", "prior_interferon": False,
           "tki_at_stop": "imatinib", "prior_resistance": False, "more_than_one_tki_line": False,
           "bcr_abl1_halving_time_days": 14.3, "nk_cell_level": "below_median"}


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    development = validate_frame(generate_cml_tfr_cohort(3000, seed=21), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, TASKS["cml_tfr"].cause_targets(development)["relapse"])
    bundle = ModelBundle(task="cml_tfr", family="cox_ph", outcome="single_event",
                         causes={"relapse": fitted.cause_model()}, horizons_months=[6, 12, 24, 36, 60],
                         main_horizon_months=12, schema=CML_TFR_SCHEMA.to_json())
    return complete_bundle(bundle, development, CML_TFR_SCHEMA, seed=0)


def test_generator_truth_falls_with_later_stops():
    truth = [1 - true_relapse_free_probability(pd.DataFrame([projected_patient(PATIENT, d)]), [24.0])[0, 0]
             for d in (0, 6, 12, 24)]
    assert truth == sorted(truth, reverse=True) and truth[0] - truth[-1] > 0.05


def test_projection_follows_the_generator(bundle):
    answer = stop_timing(bundle, PATIENT).model_dump()
    risk_24 = [o["relapse_risk"][1]["probability"] for o in answer["options"]]
    assert [o["stop_after_months"] for o in answer["options"]] == [0, 6, 12, 24]
    assert risk_24[-1] < risk_24[0] and np.all(np.diff(risk_24) < 0)
    assert answer["statement"] == STATEMENT and "not a causal estimate" in STATEMENT
    assert answer["options"][2]["projected"]["tki_years"] == pytest.approx(5.0)
    # Without replicates there is no paired interval, so nothing is called better however large the difference.
    assert answer["options"][3]["difference_from_stopping_now"][1]["percentage_points"] < -5
    comparison = answer["comparison"]
    assert comparison["better_options"] == [] and "no bootstrap replicates" in comparison["conclusion"]


def test_the_margin_is_the_task_specs():
    settings = StopTimingSettings.model_validate(TASKS["cml_tfr"].spec.routes["stop_timing"])
    assert settings.margin_percentage_points == 5.0 and settings.decision_horizon_months == 24
    with pytest.raises(ValueError, match="decision_horizon_months"):
        StopTimingSettings(risk_horizons_months=(12,), decision_horizon_months=24)


def with_replicates(bundle: ModelBundle, factors: np.ndarray) -> ModelBundle:
    """The bundle with one replicate per factor: its own Cox model with the coefficients of the predictors that
    advance while waiting multiplied by that factor (factors across zero: the replicates disagree on the sign)."""
    cause = bundle.causes["relapse"]
    advanced = np.isin(np.array(cause.preprocessor.sources), ADVANCED_WITH_TIME)
    coefficients = np.array(cause.coefficients)
    return replace(bundle, replicates=[
        {"relapse": replace(cause, coefficients=np.where(advanced, f * coefficients, coefficients).tolist())}
        for f in factors])


def test_the_paired_interval_is_the_percentiles_of_each_replicates_difference(bundle):
    replicated = with_replicates(bundle, np.linspace(0.4, 1.6, 25))
    answer = stop_timing(replicated, PATIENT)
    patients = pd.DataFrame([projected_patient(PATIENT, d) for d in (0, 6, 12, 24)])
    months = np.array([12.0, 24.0])
    # Each replicate scored on its own, as a bundle of its own: risk of each stop minus risk of stopping now.
    differences = np.stack([
        100 * (risk - risk[0])
        for risk in (replace(bundle, causes=causes).endpoint_probabilities(patients, months, only="relapse")["relapse"]
                     for causes in replicated.replicates)])
    point = bundle.endpoint_probabilities(patients, months, only="relapse")["relapse"]
    lower, upper = np.percentile(differences, [2.5, 97.5], axis=0)
    for i, option in enumerate(answer.options[1:], start=1):
        for j, difference in enumerate(option.difference_from_stopping_now):
            assert difference.percentage_points == pytest.approx(100 * (point[i, j] - point[0, j]), abs=1e-9)
            assert (difference.lower, difference.upper) == pytest.approx((lower[i, j], upper[i, j]), abs=1e-9)
    assert answer.options[0].difference_from_stopping_now is None


def test_no_option_is_called_better_when_the_paired_interval_includes_zero(bundle):
    # Replicates that disagree on whether waiting helps: the point difference at 24 months passes the margin, but
    # the paired interval straddles zero.
    answer = stop_timing(with_replicates(bundle, np.linspace(-1.0, 3.0, 21)), PATIENT)
    latest = answer.options[-1].difference_from_stopping_now[1]
    assert latest.percentage_points < -answer.comparison.margin_percentage_points
    assert latest.lower < 0 < latest.upper
    assert not any(o.called_better for o in answer.options) and answer.comparison.better_options == []
    assert answer.comparison.conclusion.startswith("no later stop is called better")


def test_an_option_is_called_better_when_its_paired_interval_clearly_excludes_zero(bundle):
    replicated = with_replicates(bundle, np.linspace(0.9, 1.1, 21))
    first = stop_timing(replicated, PATIENT)
    reduction = {o.stop_after_months: -o.difference_from_stopping_now[1].percentage_points
                 for o in first.options[1:]}
    assert 0 < reduction[12] < reduction[24]
    # A margin between the two reductions: both intervals lie below zero, only 24 months clears the margin.
    settings = StopTimingSettings(margin_percentage_points=(reduction[12] + reduction[24]) / 2)
    answer = stop_timing(replicated, PATIENT, settings)
    by_delay = {o.stop_after_months: o for o in answer.options}
    latest, twelve = (by_delay[d].difference_from_stopping_now[1] for d in (24, 12))
    assert latest.upper < 0 and twelve.upper < 0
    assert by_delay[24].called_better and answer.comparison.better_options == [24]
    assert not by_delay[12].called_better
    assert "stopping after 24 more months" in answer.comparison.conclusion
