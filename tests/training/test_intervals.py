"""95 % intervals: coverage of the generator's true probabilities on held-out synthetic patients (cml_tfr).

The truth given what a registry records: the generator's S(t | x) averaged over the optional predictors it hid
(halving time, NK level), drawn from their generating distributions (Monte Carlo).
"""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import HALVING_TIME_MEDIAN_DAYS, generate_cml_tfr_cohort, true_relapse_free_probability
from training.families import CoxFamily
from training.pipeline import complete_bundle
from training.replicates import fit_replicates

HORIZONS = np.array([12.0, 24.0])
# Stated share. The intervals carry sampling error only; the fitted Cox model is misspecified against this truth
# (TKI < 5 years is a step in the generator but linear in the model; a hidden halving time, HR 2 per doubling,
# makes the truth given recorded predictors a mixture that is not proportional hazards). Seen when written:
# 0.645 overall at 12 and 24 months, median width 14 points. The test holds at least 0.55 and prints the figures.
MIN_COVERAGE = 0.55


def truth_given_recorded(patients: pd.DataFrame, draws: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    total = np.zeros((len(patients), len(HORIZONS)))
    for _ in range(draws):
        complete = patients.copy()
        hidden_halving = complete["bcr_abl1_halving_time_days"].isna()
        drawn = np.exp(np.log(HALVING_TIME_MEDIAN_DAYS) + 0.63 * rng.standard_normal(len(complete)))
        complete.loc[hidden_halving, "bcr_abl1_halving_time_days"] = np.clip(drawn, 2, 200)[hidden_halving]
        hidden_nk = complete["nk_cell_level"].isna()
        nk = np.where(rng.uniform(size=len(complete)) < 0.5, "above_median", "below_median")
        complete.loc[hidden_nk, "nk_cell_level"] = nk[hidden_nk]
        total += true_relapse_free_probability(complete, HORIZONS)
    return 1.0 - total / draws


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    task = TASKS["cml_tfr"]
    development = validate_frame(generate_cml_tfr_cohort(2000, seed=3), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, task.cause_targets(development)["relapse"])
    bundle = ModelBundle(task="cml_tfr", family="cox_ph", outcome="single_event",
                         causes={"relapse": fitted.cause_model()}, horizons_months=[6, 12, 24, 36, 60],
                         main_horizon_months=12, schema=CML_TFR_SCHEMA.to_json())
    bundle = complete_bundle(bundle, development, CML_TFR_SCHEMA, seed=0)
    bundle.replicates = fit_replicates(bundle, task, development, tuned={}, seed=0)
    return bundle


def test_intervals_cover_the_true_probabilities(bundle):
    patients = validate_frame(generate_cml_tfr_cohort(400, seed=4), CML_TFR_SCHEMA)[CML_TFR_SCHEMA.predictor_names]
    truth = truth_given_recorded(patients)
    estimate = bundle.endpoint_probabilities(patients, HORIZONS)
    lower, upper = endpoint_intervals(bundle, patients, HORIZONS, {"relapse": estimate["relapse"]})["relapse"]
    covered = (lower <= truth) & (truth <= upper)
    width = 100 * np.median(upper - lower)
    recorded = patients["bcr_abl1_halving_time_days"].notna().to_numpy()
    print(f"95 % interval coverage of the true relapse risk at 12/24 months: {covered.mean():.3f} "
          f"({covered.mean(axis=0).round(3)}), median width {width:.1f} points; halving time recorded "
          f"{covered[recorded].mean():.3f}, hidden {covered[~recorded].mean():.3f}")
    assert covered.mean() >= MIN_COVERAGE
    assert np.all(lower <= estimate["relapse"]) and np.all(estimate["relapse"] <= upper)
    assert np.all((lower >= 0) & (upper <= 1))


def test_intervals_survive_a_save_and_load(bundle, tmp_path):
    patients = validate_frame(generate_cml_tfr_cohort(5, seed=9), CML_TFR_SCHEMA)[CML_TFR_SCHEMA.predictor_names]
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    assert len(loaded.replicates) == len(bundle.replicates)
    estimate = {"relapse_free": bundle.endpoint_probabilities(patients, HORIZONS)["relapse_free"]}
    before = endpoint_intervals(bundle, patients, HORIZONS, estimate)["relapse_free"]
    after = endpoint_intervals(loaded, patients, HORIZONS, estimate)["relapse_free"]
    np.testing.assert_allclose(before, after, atol=1e-12)
    assert np.all(before[0] <= estimate["relapse_free"]) and np.all(estimate["relapse_free"] <= before[1])
