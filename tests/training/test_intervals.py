"""95 % intervals: coverage of the generator's true probabilities on held-out synthetic patients.

Each task's model is fitted as training fits it (the family, the spec's forms, the bootstrap replicates with the
run's default number of refits) on a development cohort of the default size, then its stated 95 % intervals are
compared with what the generator knows for 400 fresh patients:
- cml_tfr: the truth given what a registry records, the generator's S(t | x) averaged over the optional predictors
  it hid (halving time, NK level), drawn from their generating distributions (Monte Carlo);
- all_hsct: relapse and NRM cumulative incidences of the generating model (GVHD times that switch both hazards
  drawn 200 times per patient), for patients whose covariates the registry recorded in full (the masking hid
  nothing that acts on the outcome), so that the truth given the record is the generator's truth.
Coverage between 90 and 98 % is asserted per endpoint and horizon (it pools 400 patients of one development
cohort, so a band rather than 95 % exactly: a development cohort's shared error moves all patients together).
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS, get_task
from risk_model.bundle import ModelBundle
from risk_model.intervals import endpoint_intervals
from tasks.all_hsct.generator import generate_all_hsct_cohort, true_cumulative_incidences
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import HALVING_TIME_MEDIAN_DAYS, generate_cml_tfr_cohort, true_relapse_free_probability
from training.families import CoxFamily
from training.pipeline import complete_bundle, fit_family
from training.replicates import fit_replicates

COVERAGE_BAND = (0.90, 0.98)
N_PATIENTS = 400


def cml_truth_given_recorded(patients: pd.DataFrame, months: np.ndarray, draws: int = 200, seed: int = 0
                             ) -> np.ndarray:
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


def coverage_lines(task: str, bundle: ModelBundle, patients: pd.DataFrame, months: np.ndarray,
                   truth: dict[str, np.ndarray]) -> dict[tuple[str, int], float]:
    """Print and return the coverage per endpoint and horizon of the bundle's stated 95 % intervals."""
    shares = {}
    for endpoint, true in truth.items():
        estimate = bundle.endpoint_probabilities(patients, months, only=endpoint)[endpoint]
        lower, upper = endpoint_intervals(bundle, patients, months, {endpoint: estimate})[endpoint]
        covered = (lower <= true) & (true <= upper)
        assert np.all(lower <= estimate) and np.all(estimate <= upper)
        for j, month in enumerate(months):
            shares[endpoint, int(month)] = share = float(covered[:, j].mean())
            width = 100 * np.median(upper[:, j] - lower[:, j])
            print(f"interval coverage {task} {endpoint} {int(month)}: {share:.3f} (median width {width:.1f})")
    return shares


@pytest.mark.slow
def test_cml_tfr_intervals_cover_the_true_probabilities():
    task = get_task("cml_tfr")
    development = validate_frame(task.generate_cohort(task.default_cohort_size, 3), task.schema)
    bundle = complete_bundle(fit_family("cox_ph", task, development, {}, 0), development, task.schema, 0)
    bundle.replicates = fit_replicates(bundle, task, development, tuned={}, seed=0)
    patients = validate_frame(generate_cml_tfr_cohort(N_PATIENTS, seed=4), task.schema)[task.schema.predictor_names]
    months = np.array([12.0, 24.0])
    shares = coverage_lines("cml_tfr", bundle, patients, months,
                            {"relapse": cml_truth_given_recorded(patients, months)})
    assert all(COVERAGE_BAND[0] <= share <= COVERAGE_BAND[1] for share in shares.values()), shares


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="with conditioning x TBI as strata (the chemotherapy-only MAC interaction): "
                   "relapse 0.83-0.85, NRM 0.86-0.88 (0.76-0.77 and 0.84-0.86 before); what remains is the "
                   "unrecorded GVHD acting like a frailty (NRM x 3 after grade III-IV aGVHD), which attenuates "
                   "the fitted effects: even on 40,000 patients the model misses the truth by 1.1-1.7 points RMS")
def test_all_hsct_intervals_cover_the_true_cumulative_incidences():
    full = get_task("all_hsct")
    # The relapse and NRM incidences need only their own two causes (GRFS is a model of its own).
    competing = replace(full, cause_targets=lambda frame: {name: target for name, target in
                                                           full.cause_targets(frame).items()
                                                           if name in ("relapse", "nrm")})
    development = validate_frame(full.generate_cohort(full.default_cohort_size, 3), full.schema)
    bundle = fit_family("cox_ph", competing, development, {}, 0)
    bundle.replicates = fit_replicates(bundle, competing, development, tuned={}, seed=0)
    cohort = generate_all_hsct_cohort(3 * N_PATIENTS, seed=4, keep_truth=True)
    recorded_fully = ((cohort["mrd_pre_hct"].fillna("none") == cohort["true_mrd_pre_hct"].fillna("none"))
                      & (cohort["hct_ci"].fillna("none") == cohort["true_hct_ci"].fillna("none")))
    cohort = cohort[recorded_fully].head(N_PATIENTS).reset_index(drop=True)
    patients = validate_frame(cohort, full.schema)[full.schema.predictor_names]
    months = np.array([12.0, 24.0, 60.0])
    truth = true_cumulative_incidences(cohort, months, draws=200, seed=1)
    shares = coverage_lines("all_hsct", bundle, patients, months, truth)
    assert all(COVERAGE_BAND[0] <= share <= COVERAGE_BAND[1] for share in shares.values()), shares


def test_intervals_survive_a_save_and_load(tmp_path):
    task = TASKS["cml_tfr"]
    development = validate_frame(generate_cml_tfr_cohort(600, seed=3), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, task.cause_targets(development)["relapse"])
    bundle = ModelBundle(task="cml_tfr", family="cox_ph", outcome="single_event",
                         causes={"relapse": fitted.cause_model()}, horizons_months=[6, 12, 24, 36, 60],
                         main_horizon_months=12, schema=CML_TFR_SCHEMA.to_json())
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
