"""95 % intervals on cml_tfr: coverage of the generator's true probabilities on held-out synthetic patients.

The model is fitted as training fits it (the Cox family with the spec's forms, the bootstrap replicates with the
run's default number of refits) on a development cohort of the default size, then its stated 95 % intervals are
compared with the truth given what a registry records for 400 fresh patients: the generator's S(t | x) averaged over
the optional predictors it hid (halving time, NK level), drawn from their generating distributions (Monte Carlo).
"""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS, get_task
from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import HALVING_TIME_MEDIAN_DAYS, generate_cml_tfr_cohort, true_relapse_free_probability
from tests.interval_coverage import N_PATIENTS, coverage_lines, within_band
from training.families import CoxFamily
from training.pipeline import complete_bundle, fit_family
from training.replicates import fit_replicates


def cml_truth_given_recorded(patients: pd.DataFrame, months: np.ndarray, draws: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    total = np.zeros((len(patients), len(months)))
    for _ in range(draws):
        complete = patients.copy()
        hidden_halving = complete["bcr_abl1_halving_time_days"].isna()
        drawn = np.exp(np.log(HALVING_TIME_MEDIAN_DAYS) + 0.63 * rng.standard_normal(len(complete)))
        complete.loc[hidden_halving, "bcr_abl1_halving_time_days"] = np.clip(drawn, 2, 200)[hidden_halving]
        hidden_nk = complete["nk_cell_level"].isna()
        nk = np.where(rng.uniform(size=len(complete)) < 0.5, "above_median", "below_median")
        complete.loc[hidden_nk, "nk_cell_level"] = nk[hidden_nk]
        total += true_relapse_free_probability(complete, months)
    return 1.0 - total / draws


@pytest.mark.slow
def test_cml_tfr_intervals_cover_the_true_probabilities():
    task = get_task("cml_tfr")
    development = validate_frame(task.generate_cohort(task.default_cohort_size, 3), task.schema)
    bundle = complete_bundle(fit_family("cox_ph", task, development, {}, 0), development, task.schema, 0)
    bundle.replicates = fit_replicates(bundle, task, development, tuned={}, seed=0)
    patients = validate_frame(generate_cml_tfr_cohort(N_PATIENTS, seed=4), task.schema)[task.schema.predictor_names]
    months = np.array([12.0, 24.0])
    shares = coverage_lines(
        "cml_tfr", bundle, patients, months, {"relapse": cml_truth_given_recorded(patients, months)}
    )
    assert within_band(shares), shares


def test_intervals_survive_a_save_and_load(tmp_path):
    task = TASKS["cml_tfr"]
    development = validate_frame(generate_cml_tfr_cohort(600, seed=3), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, task.cause_targets(development)["relapse"])
    bundle = ModelBundle(
        task="cml_tfr",
        family="cox_ph",
        outcome="single_event",
        causes={"relapse": fitted.cause_model()},
        horizons_months=[6, 12, 24, 36, 60],
        main_horizon_months=12,
        schema=CML_TFR_SCHEMA.to_json(),
    )
    bundle.replicates = fit_replicates(bundle, task, development, tuned={}, seed=0, n_replicates=5)
    patients = validate_frame(generate_cml_tfr_cohort(5, seed=9), CML_TFR_SCHEMA)[CML_TFR_SCHEMA.predictor_names]
    months = np.array([12.0, 24.0])
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    assert len(loaded.replicates) == len(bundle.replicates)
    estimate = {"relapse_free": bundle.endpoint_probabilities(patients, months)["relapse_free"]}
    before = endpoint_intervals(bundle, patients, months, estimate)["relapse_free"]
    after = endpoint_intervals(loaded, patients, months, estimate)["relapse_free"]
    np.testing.assert_allclose(before, after, atol=1e-12)
    assert np.all(before[0] <= estimate["relapse_free"]) and np.all(estimate["relapse_free"] <= before[1])
