"""The Breslow baseline reproduces lifelines' Cox survival curves when fed lifelines' own margins."""

import json

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from risk_model.breslow import BreslowBaseline

COVARIATES = ["age", "dose", "flag"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(31)
    n = 150
    frame = pd.DataFrame({"age": rng.normal(60, 10, n), "dose": rng.lognormal(1.0, 0.5, n),
                          "flag": (rng.uniform(size=n) < 0.4).astype(float)})
    eta = 0.03 * (frame["age"] - 60) + 0.4 * frame["dose"] + 0.7 * frame["flag"]
    event_time = rng.exponential(150 * np.exp(-eta))
    censor_time = rng.uniform(3, 50, n)
    # Whole months, so there are ties among event times and between events and censorings.
    frame["T"] = np.ceil(np.minimum(event_time, censor_time))
    frame["E"] = (event_time <= censor_time).astype(int)
    return frame


@pytest.fixture(scope="module")
def fitter(data) -> CoxPHFitter:
    return CoxPHFitter().fit(data, "T", "E")


def margins(data: pd.DataFrame, fitter: CoxPHFitter) -> np.ndarray:
    return data[COVARIATES].to_numpy() @ fitter.params_[COVARIATES].to_numpy()


def test_ties_present(data):
    events = data.loc[data["E"] == 1, "T"]
    assert events.duplicated().any() and data["E"].sum() > 30


def test_survival_equals_lifelines(data, fitter):
    baseline = BreslowBaseline().fit(margins(data, fitter), data["T"], data["E"])
    # Compare only at times in lifelines' timeline: between them lifelines interpolates linearly.
    times = np.asarray(fitter.timeline)[:: max(1, len(fitter.timeline) // 12)]
    patients = data.iloc[[0, 5, 17, 42, 99]]
    expected = fitter.predict_survival_function(patients[COVARIATES], times=times).to_numpy().T
    ours = baseline.survival(margins(patients, fitter), times)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_constant_shift_of_margins_is_absorbed_by_h0(data, fitter):
    # lifelines centres the covariates, so its margins differ from X @ beta by a constant; H0 absorbs it.
    months = np.array([1.0, 3.0, 10.0, 24.0, 50.0])
    raw = margins(data, fitter)
    plain = BreslowBaseline().fit(raw, data["T"], data["E"])
    shifted = BreslowBaseline().fit(raw + 2.5, data["T"], data["E"])
    np.testing.assert_allclose(shifted.survival(raw + 2.5, months), plain.survival(raw, months), atol=1e-12)
    np.testing.assert_allclose(shifted.cumulative_hazard(months) * np.exp(2.5), plain.cumulative_hazard(months),
                               rtol=1e-12)
    # lifelines' own (centred) log partial hazards differ from X @ beta by a non-zero constant.
    centred = fitter.predict_log_partial_hazard(data[COVARIATES]).to_numpy()
    offset = raw - centred
    assert np.ptp(offset) < 1e-9 and abs(offset[0]) > 0.1
    from_centred = BreslowBaseline().fit(centred, data["T"], data["E"])
    np.testing.assert_allclose(from_centred.survival(centred, months), plain.survival(raw, months), atol=1e-12)


def test_nelson_aalen_when_all_margins_are_zero(data):
    # With margin 0 for everyone the Breslow estimator is the Nelson-Aalen estimator.
    from lifelines import NelsonAalenFitter

    baseline = BreslowBaseline().fit(np.zeros(len(data)), data["T"], data["E"])
    nelson_aalen = NelsonAalenFitter(nelson_aalen_smoothing=False).fit(data["T"], data["E"])
    months = np.unique(data["T"])
    np.testing.assert_allclose(baseline.cumulative_hazard(months),
                               nelson_aalen.cumulative_hazard_at_times(months).to_numpy(), atol=1e-12)


def test_shape_of_curves(data, fitter):
    margin = margins(data, fitter)
    baseline = BreslowBaseline().fit(margin, data["T"], data["E"])
    months = np.linspace(0, 80, 161)
    survival = baseline.survival(margin, months)
    assert np.all((survival >= 0) & (survival <= 1))
    assert np.all(np.diff(survival, axis=1) <= 0)
    first_event = data.loc[data["E"] == 1, "T"].min()
    before = np.array([0.0, first_event - 0.5, first_event - 1e-9])
    np.testing.assert_array_equal(baseline.cumulative_hazard(before), 0.0)
    assert baseline.cumulative_hazard(np.array([first_event]))[0] > 0  # right-continuous step
    # Flat after the last event time.
    last_event = data.loc[data["E"] == 1, "T"].max()
    hazard = baseline.cumulative_hazard(np.array([last_event, last_event + 100]))
    assert hazard[0] == hazard[1]


def test_last_reliable_month(data):
    baseline = BreslowBaseline(min_at_risk=20).fit(np.zeros(len(data)), data["T"], data["E"])
    time = data["T"].to_numpy()
    assert np.sum(time >= baseline.last_reliable_month_) >= 20
    later = np.unique(time[time > baseline.last_reliable_month_])
    assert all(np.sum(time >= t) < 20 for t in later)


def test_json_round_trip(data, fitter):
    margin = margins(data, fitter)
    baseline = BreslowBaseline().fit(margin, data["T"], data["E"])
    restored = BreslowBaseline.from_json(json.loads(json.dumps(baseline.to_json())))
    months = np.array([0.0, 0.5, 2.0, 7.0, 30.0, 100.0])
    np.testing.assert_array_equal(restored.survival(margin, months), baseline.survival(margin, months))
    assert restored.last_reliable_month_ == baseline.last_reliable_month_
    assert restored.min_at_risk == baseline.min_at_risk


def test_a_baseline_without_events_is_zero_and_round_trips(data):
    """A stratum of a small cohort can hold none of a cause's events: its H0 is 0 at every month, also after
    the bundle's JSON round trip (reading it used to index an empty array, so the champion failed to load)."""
    months = np.array([0.0, 6.0, 12.0, 60.0])
    baseline = BreslowBaseline().fit(np.zeros(len(data)), data["T"].to_numpy(), np.zeros(len(data), dtype=int))
    assert baseline.cumulative_hazard(months).tolist() == [0.0] * 4
    copy = BreslowBaseline.from_json(json.loads(json.dumps(baseline.to_json())))
    assert copy.cumulative_hazard(months).tolist() == [0.0] * 4
    assert copy.hazards(months).shape == (1, 4)
