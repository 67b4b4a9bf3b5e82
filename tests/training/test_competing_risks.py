"""Competing-risk endpoints: Aalen-Johansen without covariates, coherence (LFS + CIR + NRM = 1, OS >= LFS >= GRFS),
additive explanations, and the competing-risk metrics against reference implementations."""

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import cumulative_dynamic_auc
from sksurv.nonparametric import cumulative_incidence_competing_risks
from sksurv.util import Surv

from risk_model.breslow import BreslowBaseline
from risk_model.bundle import GRFS_CAUSES, CauseModel, ModelBundle
from risk_model.preprocessing import Preprocessor
from training.evaluate import competing_auc, observed_risk, pseudo_observations

ENDPOINTS = {"relapse": "incidence", "nrm": "incidence", "os": "survival", "lfs": "survival", "grfs": "survival"}


def competing_cohort(n: int, seed: int) -> pd.DataFrame:
    """Two covariates, relapse (1) and NRM (2) with covariate effects, monthly-rounded times (ties)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.integers(0, 2, n).astype(float)
    relapse = rng.exponential(40 / np.exp(0.6 * x1), n)
    nrm = rng.exponential(80 / np.exp(0.5 * x2), n)
    censor = rng.uniform(6, 90, n)
    time = np.ceil(np.minimum.reduce([relapse, nrm, censor]))
    code = np.select([relapse <= np.minimum(nrm, censor), nrm <= np.minimum(relapse, censor)], [1, 2], 0)
    return pd.DataFrame({"x1": x1, "x2": x2, "time": time, "code": code})


SCHEMA = {"task": "toy", "horizons_months": [12, 24, 36, 60], "endpoints": ENDPOINTS,
          "predictors": [{"name": "x1", "kind": "number", "categories": [], "required": True, "unit": None},
                         {"name": "x2", "kind": "number", "categories": [], "required": True, "unit": None}]}


def cause_model(frame: pd.DataFrame, event: np.ndarray, coefficients: list[float]) -> CauseModel:
    preprocessor = Preprocessor(impute=False, columns=["x1", "x2"], sources=["x1", "x2"],
                                schema_predictors=SCHEMA["predictors"])
    margin = preprocessor.transform(frame) @ np.asarray(coefficients)
    baseline = BreslowBaseline().fit(margin, frame["time"].to_numpy(), event)
    return CauseModel("cox_ph", preprocessor, baseline, coefficients=coefficients)


def toy_bundle(frame: pd.DataFrame, coefficients: dict[str, list[float]]) -> ModelBundle:
    code = frame["code"].to_numpy()
    causes = {"relapse": cause_model(frame, (code == 1).astype(int), coefficients["relapse"]),
              "nrm": cause_model(frame, (code == 2).astype(int), coefficients["nrm"])}
    # A GRFS cause set made of the same two causes plus two more hazards on the same times.
    for name, cause_code in zip(GRFS_CAUSES, (1, 2, 1, 2), strict=True):
        causes[name] = cause_model(frame, (code == cause_code).astype(int), coefficients.get(name, [0.0, 0.0]))
    post = {"months": [3.0, 6.0, 12.0], "survival": [0.7, 0.4, 0.2]}
    bundle = ModelBundle(task="toy", family="cox_ph", outcome="competing_risks", causes=causes,
                         horizons_months=[12, 24, 36, 60], main_horizon_months=24, schema=SCHEMA,
                         post_relapse_survival=post)
    bundle.background = frame[["x1", "x2"]].iloc[:20].to_dict("records")
    bundle.background_weights = list(np.arange(1, 21, dtype=float))
    return bundle


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return competing_cohort(500, seed=11)


def test_without_covariates_incidences_equal_aalen_johansen(cohort):
    # Reference: sksurv.nonparametric.cumulative_incidence_competing_risks (clarifications §2, tolerance 1e-8).
    bundle = toy_bundle(cohort, {"relapse": [0.0, 0.0], "nrm": [0.0, 0.0]})
    times, cif = cumulative_incidence_competing_risks(cohort["code"].to_numpy(), cohort["time"].to_numpy())
    months = times[times <= 60]
    predicted = bundle.endpoint_probabilities(cohort.iloc[:3], months)
    for cause, name in ((1, "relapse"), (2, "nrm")):
        np.testing.assert_allclose(predicted[name][0], cif[cause][: len(months)], atol=1e-8)
    np.testing.assert_allclose(predicted["lfs"][0], 1 - cif[1][: len(months)] - cif[2][: len(months)], atol=1e-8)


def test_endpoints_are_coherent_and_monotone(cohort):
    bundle = toy_bundle(cohort, {"relapse": [1.5, 0.0], "nrm": [0.0, 2.0], "grfs_agvhd": [0.8, 0.3]})
    months = np.arange(0, 61, dtype=float)
    p = bundle.endpoint_probabilities(competing_cohort(50, seed=3), months)
    np.testing.assert_allclose(p["lfs"] + p["relapse"] + p["nrm"], 1.0, atol=1e-12)
    assert np.all(p["os"] >= p["lfs"] - 1e-12) and np.all(p["lfs"] >= p["grfs"] - 1e-12)
    for name, values in p.items():
        assert np.all((values >= -1e-12) & (values <= 1 + 1e-12)), name
        steps = np.diff(values, axis=1)
        assert np.all(steps >= -1e-12) if ENDPOINTS[name] == "incidence" else np.all(steps <= 1e-12), name


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_contributions_add_up_for_every_endpoint(cohort, endpoint):
    bundle = toy_bundle(cohort, {"relapse": [0.6, -0.2], "nrm": [0.1, 0.5], "grfs_cgvhd": [0.4, 0.4]})
    patients = competing_cohort(5, seed=8)[["x1", "x2"]]
    values, base = bundle.contributions(patients, 24, endpoint)
    probability = bundle.endpoint_probabilities(patients, np.array([24.0]), only=endpoint)[endpoint][:, 0]
    np.testing.assert_allclose(values.sum(axis=1), probability - base, atol=1e-10)
    weights = np.asarray(bundle.background_weights) / np.sum(bundle.background_weights)
    background = bundle.endpoint_probabilities(pd.DataFrame(bundle.background), np.array([24.0]))[endpoint][:, 0]
    assert base == pytest.approx(float(weights @ background), abs=1e-12)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_contributions_at_several_horizons_are_each_horizons_own(cohort, endpoint):
    """Training explains every horizon of an endpoint in one pass (`contributions_at`): each horizon must read
    what a request for that horizon alone is answered with (to rounding: the pass runs over the longer grid)."""
    bundle = toy_bundle(cohort, {"relapse": [0.6, -0.2], "nrm": [0.1, 0.5], "grfs_cgvhd": [0.4, 0.4]})
    patients = competing_cohort(5, seed=8)[["x1", "x2"]]
    values, bases = bundle.contributions_at(patients, [12, 24, 60], endpoint)
    assert values.shape == (3, 5, 2)
    for i, horizon in enumerate((12, 24, 60)):
        alone, base = bundle.contributions(patients, horizon, endpoint)
        np.testing.assert_allclose(values[i], alone, rtol=0, atol=1e-12)
        assert bases[i] == pytest.approx(base, abs=1e-12)
    assert np.abs(values[0] - values[2]).max() > 1e-3  # the horizons do differ


def test_x2_explains_nrm_and_x1_explains_relapse(cohort):
    bundle = toy_bundle(cohort, {"relapse": [1.0, 0.0], "nrm": [0.0, 1.0]})
    patient = pd.DataFrame({"x1": [2.0], "x2": [0.0]})
    relapse, _ = bundle.contributions(patient, 24, "relapse")
    assert relapse[0, 0] > 0.05 and abs(relapse[0, 1]) < abs(relapse[0, 0])


def test_aalen_johansen_pseudo_observations_match_brute_force_jackknife():
    frame = competing_cohort(60, seed=5)
    time, code = frame["time"].to_numpy(), frame["code"].to_numpy()
    month = 24.0

    def aj(t, c):
        times, cif = cumulative_incidence_competing_risks(c, t)
        index = np.searchsorted(times, month, side="right") - 1
        return cif[2][index] if index >= 0 else 0.0

    full = aj(time, code)
    assert observed_risk(time, code, 2, month) == pytest.approx(full, abs=1e-12)
    expected = [60 * full - 59 * aj(np.delete(time, i), np.delete(code, i)) for i in range(60)]
    np.testing.assert_allclose(pseudo_observations(time, code, month, cause=2), expected, atol=1e-10)


def test_competing_auc_reduces_to_uno_auc_without_competing_events():
    frame = competing_cohort(400, seed=9)
    time, code = frame["time"].to_numpy(), (frame["code"] > 0).astype(int).to_numpy()
    risk = frame["x1"].to_numpy() + 0.1 * frame["x2"].to_numpy()
    survival = Surv.from_arrays(code == 1, time)
    reference = cumulative_dynamic_auc(survival, survival, risk, [24.0])[0][0]
    assert competing_auc(time, code, risk, 24.0, 1) == pytest.approx(reference, abs=2e-3)


def test_competing_auc_counts_competing_events_as_controls():
    # A perfect relapse score among relapses vs. patients who died first gives AUC 1 (Blanche definition 2).
    time = np.array([5.0, 6.0, 7.0, 8.0, 30.0, 40.0])
    code = np.array([1, 1, 2, 2, 0, 0])
    risk = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.05])
    assert competing_auc(time, code, risk, 24.0, 1) == pytest.approx(1.0)
