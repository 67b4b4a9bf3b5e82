"""Survival after relapse that depends on the patient: the small Cox model on the relapsed patients recovers its
effects, overall survival integrates it over the relapse-time density, and the endpoints stay coherent."""

import numpy as np
import pandas as pd
import pytest

from risk_model.bundle import ModelBundle
from tests.training.test_competing_risks import competing_cohort, toy_bundle
from training.after_event import fit_after_event, kaplan_meier_curve

PREDICTORS = [{"name": "x1", "kind": "number"}, {"name": "x2", "kind": "number"}]
MONTHS = np.array([6.0, 12.0, 24.0, 36.0, 60.0])


def relapsed_patients(n: int, seed: int, age_effect: float, timing_effect: float) -> tuple:
    """Relapsed patients: death hazard after relapse exp(age_effect x1 + timing_effect (relapse month - 20))."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.integers(0, 2, n).astype(float)})
    relapse_month = rng.uniform(1, 40, n)
    hazard = 0.08 * np.exp(age_effect * rows["x1"] + timing_effect * (relapse_month - 20))
    death, censor = rng.exponential(1 / hazard), rng.uniform(5, 60, n)
    return rows, relapse_month, np.minimum(death, censor), (death <= censor).astype(int)


def test_the_post_relapse_model_recovers_age_and_timing_effects():
    rows, relapse_month, since, dead = relapsed_patients(3000, 1, age_effect=0.7, timing_effect=-0.03)
    post = fit_after_event(rows, PREDICTORS, relapse_month, since, dead)
    model = post["model"]
    coefficients = {p["name"]: p["coef"] for p in model["predictors"]}
    assert coefficients["x1"] == pytest.approx(0.7, abs=0.08)
    assert model["event_time_coef"] == pytest.approx(-0.03, abs=0.01)
    assert abs(coefficients.get("x2", 0.0)) < 0.15  # no effect in the generator
    assert np.all(np.diff(post["survival"]) <= 0) and 0 < post["survival"][-1] < 1


def test_too_few_deaths_or_no_time_after_the_event_keep_the_plain_curve():
    rows, relapse_month, since, dead = relapsed_patients(40, 2, 0.7, 0.0)
    dead = np.where(np.arange(40) < 12, 1, 0)  # 12 deaths: room for the time to relapse only
    assert set(fit_after_event(rows, PREDICTORS, relapse_month, since, dead)["model"]) >= {"event_time_coef"}
    assert fit_after_event(rows, PREDICTORS, relapse_month, since, dead)["model"]["predictors"] == []
    dead = np.where(np.arange(40) < 9, 1, 0)  # fewer than 10 deaths: no model
    few = fit_after_event(rows, PREDICTORS, relapse_month, since, dead)
    assert "model" not in few and few == kaplan_meier_curve(since, dead)
    # The cause is itself death (nobody alive after it): survival 0 at once, no model.
    instant = fit_after_event(rows, PREDICTORS, relapse_month, np.zeros(40), np.ones(40, dtype=int))
    assert instant == {"months": [0.0], "survival": [0.0]}


def with_model(bundle: ModelBundle, x1: float, timing: float, reference: float = 10.0) -> ModelBundle:
    bundle.post_relapse_survival = {
        **bundle.post_relapse_survival,
        "model": {
            "predictors": [{"name": "x1", "coef": x1, "fill": 0.0}],
            "reference_lp": 0.0,
            "event_time_coef": timing,
            "event_time_reference": reference,
        },
    }
    bundle._ensemble_cache = bundle._background_cache = None
    return bundle


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return competing_cohort(500, seed=11)


def test_overall_survival_depends_on_the_patient_and_stays_coherent(cohort):
    # Relapse and NRM depend on x2 only, so LFS does not move with x1; survival after relapse falls with x1.
    bundle = with_model(toy_bundle(cohort, {"relapse": [0.0, 0.8], "nrm": [0.0, 0.5]}), x1=1.0, timing=0.0)
    patients = pd.DataFrame({"x1": [-1.0, 0.0, 1.0, 2.0], "x2": [1.0, 1.0, 1.0, 1.0]})
    p = bundle.endpoint_probabilities(patients, MONTHS)
    np.testing.assert_allclose(p["lfs"] + p["relapse"] + p["nrm"], 1.0, atol=1e-12)
    np.testing.assert_allclose(p["lfs"], p["lfs"][[0]].repeat(4, axis=0), atol=1e-12)
    assert np.all(p["os"] >= p["lfs"] - 1e-12) and np.all(p["os"] <= 1.0)
    assert np.all(np.diff(p["os"][:, 1:], axis=0) < 0)  # higher x1, lower OS once relapses have happened

    # Prognosis worsening with the month of relapse (timing > 0, from month 0) lowers OS against a timing-free
    # model; with the reference at month 10, early relapses fare better and late ones worse.
    late = with_model(
        toy_bundle(cohort, {"relapse": [0.0, 0.8], "nrm": [0.0, 0.5]}), x1=1.0, timing=0.05, reference=0.0
    )
    assert np.all(late.endpoint_probabilities(patients, MONTHS)["os"][:, 1:] < p["os"][:, 1:])

    # Zero coefficients: exactly the covariate-free curve of older bundles.
    plain = toy_bundle(cohort, {"relapse": [0.0, 0.8], "nrm": [0.0, 0.5]})
    zero = with_model(toy_bundle(cohort, {"relapse": [0.0, 0.8], "nrm": [0.0, 0.5]}), x1=0.0, timing=0.0)
    np.testing.assert_allclose(
        zero.endpoint_probabilities(patients, MONTHS)["os"],
        plain.endpoint_probabilities(patients, MONTHS)["os"],
        atol=1e-12,
    )


def test_overall_survival_is_the_integral_over_the_relapse_time_density(cohort):
    """The vectorised OS equals LFS plus the sum over relapse times u of dCIR(u) S0(t - u)^exp(lp(x, u)), done by
    hand per patient from the bundle's own relapse incidence on a fine grid."""
    bundle = with_model(toy_bundle(cohort, {"relapse": [0.6, 0.2], "nrm": [0.3, 0.1]}), x1=0.8, timing=0.04)
    patients = competing_cohort(5, seed=4)[["x1", "x2"]]
    post = bundle.post_relapse_survival
    event_times = np.unique(cohort["time"].to_numpy())
    grid = event_times[event_times <= 60]
    p = bundle.endpoint_probabilities(patients, MONTHS)
    cir = bundle.endpoint_probabilities(patients, grid)["relapse"]
    for i, x1 in enumerate(patients["x1"]):
        increments = np.diff(np.r_[0.0, cir[i]])
        for k, t in enumerate(MONTHS):
            since = t - grid
            index = np.searchsorted(post["months"], since, side="right") - 1
            base = np.where(
                since < 0, 0.0, np.where(index >= 0, np.asarray(post["survival"])[np.maximum(index, 0)], 1.0)
            )
            alive = base ** np.exp(0.8 * x1 + 0.04 * (grid - 10.0))
            assert p["os"][i, k] == pytest.approx(p["lfs"][i, k] + np.sum(increments * alive), abs=1e-10)


def test_the_model_travels_in_the_bundle_and_explains_overall_survival(cohort, tmp_path):
    bundle = with_model(toy_bundle(cohort, {"relapse": [0.0, 0.8], "nrm": [0.0, 0.5]}), x1=1.0, timing=0.02)
    patients = pd.DataFrame({"x1": [1.5, -0.5], "x2": [0.0, 1.0]})
    bundle.save(tmp_path / "b")
    loaded = ModelBundle.load(tmp_path / "b")
    assert loaded.post_relapse_survival["model"] == bundle.post_relapse_survival["model"]
    np.testing.assert_allclose(
        loaded.endpoint_probabilities(patients, MONTHS)["os"],
        bundle.endpoint_probabilities(patients, MONTHS)["os"],
        atol=1e-12,
    )
    contributions, base = bundle.contributions(patients, 36, endpoint="os")
    os_36 = bundle.endpoint_probabilities(patients, np.array([36.0]))["os"][:, 0]
    np.testing.assert_allclose(contributions.sum(axis=1) + base, os_36, atol=1e-9)
    x1 = bundle.feature_names.index("x1")
    assert contributions[0, x1] < 0 < contributions[1, x1]  # x1 acts on OS only through survival after relapse
