"""Metrics (clarifications section 4) on cml_tfr's synthetic cohort against their references (lifelines,
scikit-survival, dcurves) and against its generator's own truth (the true linear predictor, baseline hazard and
relapse-free probability: only this task's generator exposes them). The metrics on hand-made data and on the
sample competing task are in tests/training/test_evaluate.py."""

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.metrics import (
    brier_score,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import (
    baseline_cumulative_hazard,
    generate_cml_tfr_cohort,
    true_relapse_free_probability,
)
from training import evaluate

TIME, EVENT = CML_TFR_SCHEMA.time_column, CML_TFR_SCHEMA.event_column


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """800 synthetic patients (monthly visit times, so many ties) and a noisy version of the true risk."""
    cohort = generate_cml_tfr_cohort(800, seed=21, keep_truth=True)
    rng = np.random.default_rng(0)
    risk = cohort["true_linear_predictor"].to_numpy() + rng.normal(0, 0.5, len(cohort))
    return cohort[TIME].to_numpy(float), cohort[EVENT].to_numpy(int), risk


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    return generate_cml_tfr_cohort(10_000, seed=99, keep_truth=True)


def survival_from_margin(margin: np.ndarray, months) -> np.ndarray:
    """S(t | x) of the generating model for margins on its scale (rows x months)."""
    return np.exp(-np.outer(np.exp(margin), baseline_cumulative_hazard(np.asarray(months, dtype=float))))


def test_harrell_c_equals_lifelines(small):
    time, event, risk = small
    expected = concordance_index(time, -risk, event)
    assert evaluate.harrell_c(time, event, risk) == pytest.approx(expected, abs=1e-12)
    # Ties in the score count one half in both.
    coarse = np.round(risk)
    assert evaluate.harrell_c(time, event, coarse) == pytest.approx(concordance_index(time, -coarse, event),
                                                                    abs=1e-12)
    assert evaluate.harrell_c(time, event, -risk) == pytest.approx(1 - expected, abs=1e-12)


def test_uno_c_auc_brier_ibs_equal_scikit_survival(small):
    time, event, risk = small
    surv = Surv.from_arrays(event=event == 1, time=time)
    tau = evaluate.uno_tau(time, list(CML_TFR_SCHEMA.horizons_months))
    assert evaluate.uno_c(time, event, risk, tau) == pytest.approx(
        concordance_index_ipcw(surv, surv, risk, tau=tau)[0], abs=1e-12)
    survival = survival_from_margin(risk, [12.0])[:, 0]
    assert evaluate.time_dependent_auc(time, event, 1 - survival, 12) == pytest.approx(
        cumulative_dynamic_auc(surv, surv, 1 - survival, [12])[0][0], abs=1e-12)
    assert evaluate.brier(time, event, survival, 12) == pytest.approx(
        brier_score(surv, surv, survival.reshape(-1, 1), [12])[1][0], abs=1e-12)
    grid = np.arange(6, 37, dtype=float)
    matrix = survival_from_margin(risk, grid)
    assert evaluate.integrated_brier(time, event, matrix, grid) == pytest.approx(
        integrated_brier_score(surv, surv, matrix, grid), abs=1e-12)


def test_uno_tau_is_largest_horizon_with_ten_percent_at_risk(small):
    time, _, _ = small
    horizons = list(CML_TFR_SCHEMA.horizons_months)
    tau = evaluate.uno_tau(time, horizons)
    assert tau in horizons and np.mean(time >= tau) >= 0.10
    assert all(np.mean(time >= h) < 0.10 or h >= time.max() for h in horizons if h > tau)


def test_a_better_score_has_better_metrics(small):
    time, event, risk = small
    noise = np.random.default_rng(1).normal(size=len(time))
    assert evaluate.harrell_c(time, event, risk) > evaluate.harrell_c(time, event, noise) + 0.1
    good = survival_from_margin(risk, [12.0])[:, 0]
    flat = np.full(len(time), good.mean())
    assert evaluate.brier(time, event, good, 12) < evaluate.brier(time, event, flat, 12)


def test_kaplan_meier_risk_equals_lifelines(small):
    time, event, _ = small
    fitter = KaplanMeierFitter().fit(time, event)
    for month in (0.0, 1.0, 2.5, 6.0, 12.0, 24.0, 60.0):
        expected = 1.0 - float(fitter.survival_function_at_times(month).iloc[0])
        assert evaluate.kaplan_meier_risk(time, event, month) == pytest.approx(expected, abs=1e-12), month


def test_truth_is_calibrated_and_overconfidence_is_detected(large):
    # The generator's own S(t | x), from the complete (unmasked) covariates, must look calibrated:
    # O/E ~ 1, slope ~ 1, intercept ~ 0 (tolerance 0.15 as briefed; n = 10,000).
    complete = large.assign(bcr_abl1_halving_time_days=large["true_bcr_abl1_halving_time_days"],
                            nk_cell_level=large["true_nk_cell_level"])
    months = np.array([6.0, 12.0, 24.0])
    truth = true_relapse_free_probability(complete, months)
    np.testing.assert_allclose(truth, survival_from_margin(large["true_linear_predictor"].to_numpy(), months),
                               rtol=1e-12)
    time, event = large[TIME].to_numpy(float), large[EVENT].to_numpy(int)
    for j, month in enumerate(months):
        cal = evaluate.calibration(time, event, 1.0 - truth[:, j], month)
        print(f"truth at {month:g} mo: {cal}")
        assert cal["oe"] == pytest.approx(1.0, abs=0.15)
        assert cal["slope"] == pytest.approx(1.0, abs=0.15)
        assert abs(cal["intercept"]) < 0.15
        # Twice as extreme on the cloglog scale (around its mean): the truth is then cloglog-linear in the
        # prediction with slope 1/2, which the calibration slope should recover.
        cloglog = np.log(-np.log(truth[:, j]))
        extreme = 2.0 * (cloglog - cloglog.mean()) + cloglog.mean()
        over = evaluate.calibration(time, event, 1.0 - np.exp(-np.exp(extreme)), month)
        print(f"twice as extreme at {month:g} mo: {over}")
        assert over["slope"] < 0.7
        assert over["slope"] == pytest.approx(0.5, abs=0.12)


# --- issue 6: concordance with standard errors, ICI/E50, decision curves ------------------------------------

def test_concordance_standard_error_matches_the_bootstrap(small):
    from features.tasks import EndpointTarget

    time, event, risk = small
    target = EndpointTarget(time, event)
    tau = evaluate.uno_tau(time, list(CML_TFR_SCHEMA.horizons_months))
    _, se = evaluate.concordance_with_se(target, risk, tau)
    rng = np.random.default_rng(7)
    draws = []
    for _ in range(300):
        rows = rng.integers(0, len(time), len(time))
        draw = EndpointTarget(time[rows], event[rows])
        draws.append(evaluate.concordance_with_se(draw, risk[rows], evaluate.uno_tau(time[rows], [6, 12, 24, 36]))[0])
    print(f"influence SE {se:.4f}, bootstrap SD {np.std(draws):.4f}")
    assert se == pytest.approx(np.std(draws), rel=0.25)


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """The generator's frame with the optional predictors unmasked (the truth needs them)."""
    return frame.assign(bcr_abl1_halving_time_days=frame["true_bcr_abl1_halving_time_days"],
                        nk_cell_level=frame["true_nk_cell_level"])


def test_log_oe_standard_error_matches_the_bootstrap(large):
    time, event = large[TIME].to_numpy(float)[:1500], large[EVENT].to_numpy(int)[:1500]
    risk = 1 - true_relapse_free_probability(complete(large.iloc[:1500]), np.array([12.0]))[:, 0]
    se = evaluate.calibration(time, event, risk, 12)["oe_log_se"]
    rng = np.random.default_rng(3)
    logs = []
    for _ in range(200):
        rows = rng.integers(0, len(time), len(time))
        logs.append(np.log(evaluate.kaplan_meier_risk(time[rows], event[rows], 12) / risk[rows].mean()))
    print(f"SE log O/E {se:.4f}, bootstrap SD {np.std(logs):.4f}")
    assert se == pytest.approx(np.std(logs), rel=0.25)


def test_ici_and_e50_are_the_loess_of_the_pseudo_observations(large):
    import statsmodels.api as sm

    frame = large.iloc[:3000]
    time, event = frame[TIME].to_numpy(float), frame[EVENT].to_numpy(int)
    truth = 1 - true_relapse_free_probability(complete(frame), np.array([12.0]))[:, 0]
    cal = evaluate.calibration(time, event, truth, 12)
    pseudo = evaluate.pseudo_observations(time, event, 12)
    smooth = np.clip(sm.nonparametric.lowess(pseudo, truth, frac=0.75, it=0, return_sorted=False), 0, 1)
    assert cal["ici"] == pytest.approx(np.mean(np.abs(smooth - truth)), abs=2e-3)  # delta interpolation
    assert cal["e50"] == pytest.approx(np.median(np.abs(smooth - truth)), abs=2e-3)
    # The truth is close to its own calibration curve; shrinking every risk halfway to 0.1 is not.
    shrunk = evaluate.calibration(time, event, 0.1 + 0.5 * (truth - 0.1), 12)
    print(f"ICI truth {cal['ici']:.4f}, shrunk {shrunk['ici']:.4f}")
    assert cal["ici"] < 0.03 and shrunk["ici"] > 2 * cal["ici"] and shrunk["e90"] >= shrunk["e50"]


def test_net_benefit_equals_dcurves_survival_decision_curve(small):
    from dcurves import dca

    time, event, score = small
    risk = 1 / (1 + np.exp(-(score - 0.3)))
    thresholds = np.round(np.arange(0.05, 0.61, 0.05), 2)
    ours = evaluate.net_benefit(time, event, risk, 12, thresholds)
    frame = pd.DataFrame({"time": time, "event": event, "risk": risk})
    reference = dca(data=frame, outcome="event", modelnames=["risk"], thresholds=thresholds, time=12,
                    time_to_outcome_col="time")
    model = reference[reference["model"] == "risk"].set_index("threshold")["net_benefit"]
    everyone = reference[reference["model"] == "all"].set_index("threshold")["net_benefit"]
    for row in ours.itertuples():
        assert row.model == pytest.approx(model.loc[row.threshold], abs=1e-10), row.threshold
        assert row.treat_all == pytest.approx(everyone.loc[row.threshold], abs=1e-10)
