"""Strata declared in the spec: a baseline per stratum in both families.

A small synthetic cohort whose two strata have very different baseline hazards (early events in one, late in the
other: no proportional hazards between them) and one covariate acting proportionally within each. Stratified, the
mean predicted incidence in each stratum follows that stratum's Kaplan-Meier / Aalen-Johansen estimate; one pooled
baseline does not. The bundle keeps the baselines through save and load, explains additively with the stratum as
a player, and refuses a stratum it never saw.
"""

import copy

import numpy as np
import pandas as pd
import pytest
from sksurv.nonparametric import cumulative_incidence_competing_risks, kaplan_meier_estimator

from features.task_schema import Predictor, TaskSchema
from risk_model.bundle import ModelBundle
from risk_model.shapley import exact_contributions
from risk_model.strata import StratifiedBaseline
from training.families import CoxFamily, XGBoostCoxFamily

MONTHS = np.array([6.0, 12.0, 24.0, 36.0])
PREDICTORS = (
    Predictor("x", "number", "a covariate", minimum=-10, maximum=10),
    Predictor("group", "category", "the stratum", categories=("early", "late", "never_seen")),
)


def schema(
    strata: tuple[str, ...], endpoints: dict[str, str], predictors: tuple[Predictor, ...] = PREDICTORS
) -> TaskSchema:
    return TaskSchema(
        task="toy",
        title="toy",
        predictors=predictors,
        grouping=(),
        time_column="time",
        event_column="code",
        event_description="event",
        time_zero="t0",
        horizons_months=(12, 24),
        main_horizon_months=12,
        endpoint_names=endpoints,
        strata=strata,
    )


SINGLE = {"event": "incidence", "event_free": "survival"}
COMPETING = {"relapse": "incidence", "nrm": "incidence", "lfs": "survival"}


def cohort(n: int, seed: int) -> pd.DataFrame:
    """Stratum `early`: Weibull shape 0.5 (hazard falling fast); `late`: shape 3 (rising); same 2-year median.
    Relapse (code 1) with log-hazard ratio 0.7 per unit of x within each stratum; NRM (code 2) a constant hazard."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = np.where(rng.random(n) < 0.5, "early", "late")
    shape = np.where(group == "early", 0.5, 3.0)
    scale = 24.0 / np.log(2) ** (1 / shape)
    relapse = scale * (rng.exponential(size=n) / np.exp(0.7 * x)) ** (1 / shape)
    nrm = rng.exponential(120.0, n)
    censor = rng.uniform(12, 60, n)
    time = np.round(np.minimum.reduce([relapse, nrm, censor]), 1)
    code = np.select([relapse <= np.minimum(nrm, censor), nrm <= np.minimum(relapse, censor)], [1, 2], 0)
    return pd.DataFrame({"x": x, "group": group, "time": np.maximum(time, 0.1), "code": code})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return cohort(1500, seed=7)


def fit_single(data: pd.DataFrame, family: str, strata: tuple[str, ...]) -> ModelBundle:
    task_schema = schema(strata, SINGLE)
    target = (data["time"].to_numpy(), (data["code"] > 0).astype(int).to_numpy())
    fitted = (
        CoxFamily(ties="breslow")
        if family == "cox_ph"
        else XGBoostCoxFamily({"eta": 0.1, "max_depth": 2}, 60, seed=0, ties="breslow")
    )
    return ModelBundle(
        task="toy",
        family=family,
        outcome="single_event",
        causes={"event": fitted.fit(data, task_schema, target).cause_model()},
        horizons_months=[12, 24],
        main_horizon_months=12,
        schema=task_schema.to_json(),
    )


def fit_competing(data: pd.DataFrame, family: str, strata: tuple[str, ...]) -> ModelBundle:
    task_schema = schema(strata, COMPETING)
    causes = {}
    for name, code in (("relapse", 1), ("nrm", 2)):
        target = (data["time"].to_numpy(), (data["code"] == code).astype(int).to_numpy())
        fitted = (
            CoxFamily(ties="breslow")
            if family == "cox_ph"
            else XGBoostCoxFamily({"eta": 0.1, "max_depth": 2}, 60, seed=0, ties="breslow")
        )
        causes[name] = fitted.fit(data, task_schema, target).cause_model()
    return ModelBundle(
        task="toy",
        family=family,
        outcome="competing_risks",
        causes=causes,
        horizons_months=[12, 24],
        main_horizon_months=12,
        schema=task_schema.to_json(),
    )


_FITTED: dict[tuple[str, str, tuple[str, ...]], tuple[pd.DataFrame, ModelBundle]] = {}


def _fitted_once(build, data: pd.DataFrame, family: str, strata: tuple[str, ...]) -> ModelBundle:
    """Each bundle fitted once on the module's cohort (several tests read the same one); every caller gets its own
    copy, which it may give a background or replicates."""
    key = (build.__name__, family, strata)
    if key not in _FITTED or _FITTED[key][0] is not data:
        _FITTED[key] = (data, build(data, family, strata))
    return copy.deepcopy(_FITTED[key][1])


def single_bundle(data: pd.DataFrame, family: str, strata: tuple[str, ...]) -> ModelBundle:
    return _fitted_once(fit_single, data, family, strata)


def competing_bundle(data: pd.DataFrame, family: str, strata: tuple[str, ...]) -> ModelBundle:
    return _fitted_once(fit_competing, data, family, strata)


def kaplan_meier_incidence(frame: pd.DataFrame) -> np.ndarray:
    times, survival = kaplan_meier_estimator((frame["code"] > 0).to_numpy(), frame["time"].to_numpy())
    return 1 - survival[np.searchsorted(times, MONTHS, side="right") - 1]


def largest_gap_by_stratum(bundle: ModelBundle, data: pd.DataFrame, endpoint: str, observed) -> float:
    gaps = []
    for group in ("early", "late"):
        members = data[data["group"] == group]
        predicted = bundle.endpoint_probabilities(members[["x", "group"]], MONTHS, only=endpoint)[endpoint]
        gaps.append(np.abs(predicted.mean(axis=0) - observed(members)).max())
    return float(max(gaps))


@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_a_stratified_model_follows_kaplan_meier_in_each_stratum(data, family):
    stratified = largest_gap_by_stratum(single_bundle(data, family, ("group",)), data, "event", kaplan_meier_incidence)
    pooled = largest_gap_by_stratum(single_bundle(data, family, ()), data, "event", kaplan_meier_incidence)
    print(f"{family}: largest gap to Kaplan-Meier by stratum {stratified:.3f} stratified, {pooled:.3f} pooled")
    assert stratified < 0.03 < 0.06 < pooled


def aalen_johansen_relapse(frame: pd.DataFrame) -> np.ndarray:
    times, cif = cumulative_incidence_competing_risks(frame["code"].to_numpy(), frame["time"].to_numpy())
    return cif[1][np.searchsorted(times, MONTHS, side="right") - 1]


@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_each_cause_gets_a_baseline_per_stratum_and_follows_aalen_johansen(data, family):
    bundle = competing_bundle(data, family, ("group",))
    assert all(
        isinstance(c.baseline, StratifiedBaseline) and set(c.baseline.strata) == {0, 1} for c in bundle.causes.values()
    )
    stratified = largest_gap_by_stratum(bundle, data, "relapse", aalen_johansen_relapse)
    pooled = largest_gap_by_stratum(competing_bundle(data, family, ()), data, "relapse", aalen_johansen_relapse)
    print(f"{family}: largest gap to Aalen-Johansen by stratum {stratified:.3f} stratified, {pooled:.3f} pooled")
    assert stratified < 0.03 < 0.06 < pooled
    p = bundle.endpoint_probabilities(data[["x", "group"]].iloc[:50], MONTHS)
    np.testing.assert_allclose(p["relapse"] + p["nrm"] + p["lfs"], 1.0, atol=1e-12)


def test_the_cox_family_takes_no_coefficient_for_the_stratum(data):
    cause = competing_bundle(data, "cox_ph", ("group",)).causes["relapse"]
    sources = np.array(cause.preprocessor.sources)
    assert np.all(np.asarray(cause.coefficients)[sources == "group"] == 0.0)
    assert np.asarray(cause.coefficients)[sources == "x"][0] == pytest.approx(0.7, abs=0.12)


@pytest.mark.parametrize("strata", [("group",), ()])
def test_the_cox_family_fits_lifelines_coefficients(data, strata):
    """The Cox family fits with lifelines' own Newton-Raphson, a vectorised Efron likelihood (training/efron.py)
    and a cheaper reference row: stratified or not, the coefficients equal those of lifelines' CoxPHFitter on the
    same columns to rounding (the sums run in another order)."""
    from lifelines import CoxPHFitter

    toy = schema(strata, COMPETING)
    target = (data["time"].to_numpy(), (data["code"] == 1).astype(int).to_numpy())
    fitted = CoxFamily().fit(data, toy, target)
    used = np.asarray(fitted.coefficients_) != 0
    columns = fitted.preprocessor_.transform(data)[:, used]
    frame = pd.DataFrame(columns, columns=[f"c{i}" for i in range(columns.shape[1])]).assign(
        time=target[0], event=target[1], stratum=data["group"].to_numpy())
    reference = CoxPHFitter(penalizer=fitted.penalizer).fit(
        frame if strata else frame.drop(columns="stratum"), "time", "event", strata=["stratum"] if strata else None)
    np.testing.assert_allclose(np.asarray(fitted.coefficients_)[used], reference.params_.to_numpy(), rtol=1e-10,
                               atol=1e-12)


def with_background(bundle: ModelBundle, data: pd.DataFrame) -> ModelBundle:
    rows = data[["x", "group"]].iloc[:12]
    bundle.background = rows.to_dict("records")
    bundle.background_weights = list(np.arange(1, 13, dtype=float))
    return bundle


# Largest gap to the exact Shapley values, probability units. Cox: the stratum is a player of its own and the
# margin holds x alone, so the split is exact up to the gradient mapping. xgboost: the stratum is also a feature of
# the trees, its two parts (margin and baseline) are shared one after the other: as in test_shapley.py, ~1 pp.
EXACT_BOUNDS = {"cox_ph": 0.001, "xgboost_cox": 0.02}


@pytest.mark.parametrize(
    ("family", "outcome"),
    [("cox_ph", "single"), ("xgboost_cox", "single"), ("cox_ph", "competing"), ("xgboost_cox", "competing")],
)
def test_contributions_add_up_with_the_stratum_as_a_player(data, family, outcome):
    bundle = with_background(
        (single_bundle if outcome == "single" else competing_bundle)(data, family, ("group",)), data
    )
    endpoint = bundle.main_endpoint
    patients = cohort(6, seed=3)[["x", "group"]]
    values, base = bundle.contributions(patients, 24, endpoint)
    probability = bundle.endpoint_probabilities(patients, np.array([24.0]), only=endpoint)[endpoint][:, 0]
    np.testing.assert_allclose(values.sum(axis=1), probability - base, atol=1e-10)
    for i in range(len(patients)):  # two players: the fast path is the exact Shapley value up to the mapping
        exact, exact_base = exact_contributions(bundle, patients.iloc[[i]], 24, endpoint)
        assert exact_base == pytest.approx(base, abs=1e-12)
        print(
            f"{family} {outcome} patient {i}: largest difference to exact Shapley "
            f"{100 * np.abs(values[i] - exact).max():.3f} pp"
        )
        assert np.abs(values[i] - exact).max() <= EXACT_BOUNDS[family]


@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_contributions_at_several_horizons_keep_the_stratum_player(data, family):
    bundle = with_background(competing_bundle(data, family, ("group",)), data)
    patients = cohort(6, seed=3)[["x", "group"]]
    values, bases = bundle.contributions_at(patients, [12, 24], bundle.main_endpoint)
    for i, horizon in enumerate((12, 24)):
        alone, base = bundle.contributions(patients, horizon, bundle.main_endpoint)
        np.testing.assert_allclose(values[i], alone, rtol=0, atol=1e-12)
        assert bases[i] == pytest.approx(base, abs=1e-12)


def test_a_stratified_bundle_saves_loads_and_refuses_a_stratum_it_never_saw(data, tmp_path):
    bundle = with_background(competing_bundle(data, "cox_ph", ("group",)), data)
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    patients = cohort(20, seed=4)[["x", "group"]]
    np.testing.assert_array_equal(
        loaded.endpoint_probabilities(patients, MONTHS)["relapse"],
        bundle.endpoint_probabilities(patients, MONTHS)["relapse"],
    )
    assert loaded.unseen_stratum_problems({"x": 0.0, "group": "late"}) == []
    [problem] = loaded.unseen_stratum_problems({"x": 0.0, "group": "never_seen"})
    assert problem["location"] == "body.group" and "no training patient" in problem["reason"]
    assert "never_seen" not in problem["reason"]  # a 422 never echoes a value


def test_a_replicate_that_missed_a_stratum_reads_its_pooled_baseline(data):
    task_schema = schema(("group",), SINGLE)
    early = data[data["group"] == "early"]
    target = (early["time"].to_numpy(), (early["code"] > 0).astype(int).to_numpy())
    baseline = CoxFamily(ties="breslow").fit(early, task_schema, target).baseline_
    hazards = baseline.hazards(MONTHS)
    assert hazards.shape == (4, len(MONTHS)) and set(baseline.strata) == {0}
    np.testing.assert_array_equal(hazards[1], hazards[-1])  # `late`: the pooled row


def test_unstratified_schema_keeps_one_baseline(data):
    bundle = single_bundle(data, "cox_ph", ())
    assert bundle.strata is None and bundle.unseen_stratum_problems({"x": 0.0, "group": "never_seen"}) == []


def test_a_stratum_with_few_events_of_a_cause_is_a_training_warning(data):
    from types import SimpleNamespace

    from training.pipeline import MIN_STRATUM_EVENTS, stratum_event_advice

    few = pd.concat([data[data["group"] == "early"], data[(data["group"] == "late") & (data["code"] != 2)]])
    few = pd.concat([few, data[(data["group"] == "late") & (data["code"] == 2)].iloc[:3]]).reset_index(drop=True)
    task = SimpleNamespace(
        schema=schema(("group",), COMPETING),
        cause_targets=lambda frame: {
            name: (frame["time"].to_numpy(), (frame["code"] == code).astype(int).to_numpy())
            for name, code in (("relapse", 1), ("nrm", 2))
        },
    )
    assert stratum_event_advice(task, few) == [
        f"stratum group=late: only 3 events of nrm (fewer than {MIN_STRATUM_EVENTS}): its baseline hazard rests on "
        "few steps"
    ]
    assert stratum_event_advice(SimpleNamespace(schema=schema((), COMPETING)), few) == []


@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_the_interval_replicates_are_stratified_like_the_point_model(data, family, monkeypatch):
    from types import SimpleNamespace

    from risk_model.intervals import endpoint_intervals
    from training.parallel import JOBS_ENV
    from training.replicates import fit_replicates
    from training.tune import TuningResult

    bundle = competing_bundle(data, family, ("group",))
    task = SimpleNamespace(
        schema=schema(("group",), COMPETING),
        outcome="competing_risks",
        cause_targets=lambda f: {
            name: (f["time"].to_numpy(), (f["code"] == code).astype(int).to_numpy())
            for name, code in (("relapse", 1), ("nrm", 2))
        },
    )
    settings = TuningResult(params={"eta": 0.1, "max_depth": 2}, num_boost_round=60, cv_harrell_c=np.nan, n_trials=0)
    monkeypatch.setenv(JOBS_ENV, "1")  # one process: the tests run on a shared machine
    bundle.replicates = fit_replicates(bundle, task, data, dict.fromkeys(bundle.causes, settings), 0, 4)
    assert all(
        isinstance(c.baseline, StratifiedBaseline) and set(c.baseline.strata) == {0, 1}
        for member in bundle.replicates
        for c in member.values()
    )
    patients = cohort(40, seed=9)[["x", "group"]]
    estimates = bundle.endpoint_probabilities(patients, MONTHS, only="relapse")
    lower, upper = endpoint_intervals(bundle, patients, MONTHS, estimates)["relapse"]
    assert np.all(lower <= estimates["relapse"] + 1e-12) and np.all(estimates["relapse"] <= upper + 1e-12)
    for group in ("early", "late"):  # each stratum's interval holds its own Aalen-Johansen estimate on average
        rows = (patients["group"] == group).to_numpy()
        observed = aalen_johansen_relapse(data[data["group"] == group])
        inside = (lower[rows].mean(axis=0) - 0.02 <= observed) & (observed <= upper[rows].mean(axis=0) + 0.02)
        assert inside.all(), group


def test_a_boolean_stratum_reads_false_and_true_from_frames_and_requests(data):
    """A boolean stratum (MAC conditioning with or without TBI, say): its levels are "false" and "true", a request
    sends true/false, and both paths pick the same stratum."""
    flagged = data.assign(flag=data["group"] == "late")[["x", "flag", "time", "code"]]
    task_schema = schema(("flag",), SINGLE, (PREDICTORS[0], Predictor("flag", "boolean", "the stratum")))
    target = (flagged["time"].to_numpy(), (flagged["code"] > 0).astype(int).to_numpy())
    fitted = CoxFamily(ties="breslow").fit(flagged, task_schema, target)
    assert [fitted.baseline_.label(s) for s in sorted(fitted.baseline_.strata)] == ["flag=false", "flag=true"]
    bundle = ModelBundle(
        task="toy",
        family="cox_ph",
        outcome="single_event",
        causes={"event": fitted.cause_model()},
        horizons_months=[12, 24],
        main_horizon_months=12,
        schema=task_schema.to_json(),
    )
    requests = [{"x": 0.3, "flag": False}, {"x": 0.3, "flag": True}]
    from_requests = bundle.endpoint_probabilities(bundle.encode(requests), MONTHS, only="event")["event"]
    from_frame = bundle.endpoint_probabilities(pd.DataFrame(requests), MONTHS, only="event")["event"]
    np.testing.assert_allclose(from_requests, from_frame, atol=1e-12)
    assert not np.allclose(from_requests[0], from_requests[1])  # each value its own baseline
    early, late = (flagged[flagged["flag"] == value] for value in (False, True))
    for row, members in ((0, early), (1, late)):  # the stratum's own Kaplan-Meier at x = 0.3, roughly
        assert np.abs(from_requests[row] - kaplan_meier_incidence(members)).max() < 0.1
    assert bundle.unseen_stratum_problems({"x": 0.0, "flag": True}) == []
