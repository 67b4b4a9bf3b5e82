"""The proportional-hazards check (scaled Schoenfeld residuals against the rank of time, per predictor and
global) finds a hazard ratio that changes with time and passes one that does not."""

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.statistics import proportional_hazard_test

from training.ph_check import schoenfeld_tests


def _cohort(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steady = rng.normal(size=n)  # HR 1.6 per unit throughout
    fading = rng.uniform(size=n) < 0.5  # HR 4 in the first 6 months, 0.5 after
    first = rng.exponential(1 / (0.05 * np.exp(0.47 * steady + np.log(4.0) * fading)))
    later = 6 + rng.exponential(1 / (0.05 * np.exp(0.47 * steady + np.log(0.5) * fading)))
    event_time = np.where(first < 6, first, later)
    censor = rng.uniform(6, 40, n)
    return pd.DataFrame({"steady": steady, "fading": fading.astype(float), "T": np.minimum(event_time, censor),
                         "E": (event_time <= censor).astype(int)})


def test_a_fading_hazard_ratio_is_found_and_a_steady_one_passes():
    data = _cohort()
    fitter = CoxPHFitter().fit(data, "T", "E")
    x = data[["steady", "fading"]].to_numpy()
    result = schoenfeld_tests(x, x @ fitter.params_[["steady", "fading"]].to_numpy(), data["T"].to_numpy(),
                              data["E"].to_numpy(), np.array(["steady", "fading"]))
    assert result["predictors"]["fading"]["p"] < 1e-6
    assert result["predictors"]["steady"]["p"] > 0.01
    assert result["global"]["df"] == 2 and result["global"]["p"] < 1e-6
    # The same statistic as lifelines' rank test, per predictor (without ties they agree closely).
    lifelines = proportional_hazard_test(fitter, data, time_transform="rank").summary["test_statistic"]
    for name in ("steady", "fading"):
        assert abs(result["predictors"][name]["statistic"] - lifelines[name]) <= 0.1 * lifelines[name] + 0.5


def test_the_check_of_a_cox_bundle_reaches_the_model_card(sample_tasks):
    from types import SimpleNamespace

    from features.task_schema import validate_frame
    from features.tasks import get_task
    from tests.sample_tasks import SINGLE
    from training.model_card import _ph_section
    from training.ph_check import proportional_hazards_check
    from training.pipeline import fit_family

    task = get_task(SINGLE)
    development = validate_frame(task.generate_cohort(600, 8), task.schema)
    check = proportional_hazards_check(fit_family("cox_ph", task, development, {}, 0), task, development)
    assert set(check) == {"relapse"}
    assert set(check["relapse"]["predictors"]) <= set(task.schema.predictor_names)
    assert 0.0 <= check["relapse"]["global"]["p"] <= 1.0
    assert check["relapse"]["global"]["df"] >= len(task.schema.predictor_names)  # every encoded column is tested
    section = "\n".join(_ph_section(SimpleNamespace(ph_check=check)))
    assert "## Proportional hazards (Cox family)" in section and "| relapse |" in section


def test_with_the_fading_predictor_as_a_stratum_the_risk_sets_lie_within_it():
    data = _cohort()
    fitter = CoxPHFitter().fit(data, "T", "E", strata=["fading"])
    x = data[["steady"]].to_numpy()
    result = schoenfeld_tests(x, x @ fitter.params_[["steady"]].to_numpy(), data["T"].to_numpy(),
                              data["E"].to_numpy(), np.array(["steady"]), strata=data["fading"].to_numpy())
    assert result["predictors"]["steady"]["p"] > 0.01 and result["global"]["df"] == 1
    # Pooled risk sets mix the strata: the steady predictor's residuals then drift with time.
    pooled = schoenfeld_tests(x, x @ fitter.params_[["steady"]].to_numpy(), data["T"].to_numpy(),
                              data["E"].to_numpy(), np.array(["steady"]))
    assert pooled["predictors"]["steady"]["statistic"] != result["predictors"]["steady"]["statistic"]
