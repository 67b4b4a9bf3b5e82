"""Both model families end in a bundle that saves, loads, explains additively and wraps as an MLflow pyfunc.

One small synthetic cohort (n = 600, fixed seed); a Cox model and a small xgboost survival:cox model
(eta 0.1, depth 2, 50 rounds) are fitted once for the module and completed as `make train` completes them.
"""

import numpy as np
import pandas as pd
import pytest

from features.cml_tfr_schema import CML_TFR_SCHEMA
from features.synthetic_cml_tfr import generate_cml_tfr_cohort
from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.bundle import CURVE_MONTHS, ModelBundle
from risk_model.preprocessing import Preprocessor
from training.explain import MIN_CLUSTER_SIZE
from training.families import CoxFamily, XGBoostCoxFamily
from training.pipeline import complete_bundle

SEED = 13
HORIZONS = np.array(CML_TFR_SCHEMA.horizons_months, dtype=float)
FAMILIES = ("cox_ph", "xgboost_cox")


@pytest.fixture(scope="module")
def development() -> pd.DataFrame:
    return validate_frame(generate_cml_tfr_cohort(600, seed=SEED), CML_TFR_SCHEMA)


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    """New patients from another seed, predictor columns only (as a request would carry)."""
    frame = validate_frame(generate_cml_tfr_cohort(40, seed=SEED + 1), CML_TFR_SCHEMA)
    return frame[CML_TFR_SCHEMA.predictor_names]


@pytest.fixture(scope="module")
def bundles(development) -> dict[str, ModelBundle]:
    target = TASKS["cml_tfr"].cause_targets(development)["relapse"]
    fitted = {
        "cox_ph": CoxFamily().fit(development, CML_TFR_SCHEMA, target),
        "xgboost_cox": XGBoostCoxFamily(params={"eta": 0.1, "max_depth": 2}, num_boost_round=50,
                                        seed=SEED).fit(development, CML_TFR_SCHEMA, target),
    }

    def bundle_of(name: str, family) -> ModelBundle:
        bundle = ModelBundle(task="cml_tfr", family=name, outcome="single_event",
                             causes={"relapse": family.cause_model()},
                             horizons_months=list(CML_TFR_SCHEMA.horizons_months),
                             main_horizon_months=CML_TFR_SCHEMA.main_horizon_months, schema=CML_TFR_SCHEMA.to_json())
        return complete_bundle(bundle, development, CML_TFR_SCHEMA, SEED)

    return {name: bundle_of(name, family) for name, family in fitted.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(bundles, patients, family, tmp_path):
    bundle = bundles[family]
    folder = bundle.save(tmp_path / family)
    loaded = ModelBundle.load(folder)
    assert loaded.family == family
    np.testing.assert_array_equal(loaded.event_probability(patients, HORIZONS),
                                  bundle.event_probability(patients, HORIZONS))
    values, base = loaded.contributions(patients, 12)
    expected_values, expected_base = bundle.contributions(patients, 12)
    np.testing.assert_allclose(values, expected_values, atol=1e-12)
    assert base == pytest.approx(expected_base, abs=1e-12)
    assert loaded.risk_cut_points == bundle.risk_cut_points
    assert loaded.background_weights == bundle.background_weights


@pytest.mark.parametrize("family", FAMILIES)
def test_curves_are_survival_curves(bundles, patients, family):
    survival = bundles[family].endpoint_probabilities(patients, CURVE_MONTHS)["relapse_free"]
    assert np.all((survival >= 0) & (survival <= 1))
    assert np.all(np.diff(survival, axis=1) <= 0)
    np.testing.assert_array_equal(survival[:, 0], 1.0)  # nobody relapses at month 0
    risk = bundles[family].event_probability(patients, HORIZONS)
    np.testing.assert_allclose(risk, 1.0 - bundles[family].endpoint_probabilities(patients, HORIZONS)["relapse_free"])
    assert np.all(np.diff(risk, axis=1) >= 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_contributions_add_up_within_the_clarified_tolerance(bundles, patients, family):
    # clarifications section 7: additivity holds to 1e-6 on the probability scale.
    bundle = bundles[family]
    for horizon in (6, 12, 24):
        values, base = bundle.contributions(patients, horizon)
        probability = bundle.event_probability(patients, np.array([horizon]))[:, 0]
        assert values.shape == (len(patients), len(CML_TFR_SCHEMA.predictor_names))
        np.testing.assert_allclose(values.sum(axis=1), probability - base, atol=1e-6)


@pytest.mark.parametrize("family", ["cox_ph", "xgboost_cox"])
def test_contributions_add_up_to_1e9(bundles, patients, family):
    # The brief asks for SHAP additivity to 1e-9: contributions sum to f(x) minus the base value, and the
    # base value is the weighted mean of f (as `event_probability` computes it) over the background.
    bundle = bundles[family]
    for horizon in (6, 12, 24):
        values, base = bundle.contributions(patients, horizon)
        probability = bundle.event_probability(patients, np.array([horizon]))[:, 0]
        np.testing.assert_allclose(values.sum(axis=1), probability - base, atol=1e-9)
        assert base == pytest.approx(background_mean_risk(bundle, horizon), abs=1e-9)


def background_mean_risk(bundle: ModelBundle, horizon: float) -> float:
    risk = bundle.event_probability(pd.DataFrame(bundle.background), np.array([horizon], dtype=float))[:, 0]
    weights = np.asarray(bundle.background_weights)
    return float(weights @ risk / weights.sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_base_value_is_weighted_background_mean(bundles, patients, family):
    # clarifications section 7: the base value is the weighted mean of f over the background (to 1e-6).
    bundle = bundles[family]
    for horizon in (6, 12, 24):
        _, base = bundle.contributions(patients.iloc[:1], horizon)
        assert base == pytest.approx(background_mean_risk(bundle, horizon), abs=1e-6)


def test_xgboost_margin_contributions_sum_to_margin(bundles, patients):
    import xgboost as xgb

    bundle = bundles["xgboost_cox"].causes["relapse"]
    matrix = bundle.preprocessor.transform(patients)
    margin = bundle.margin(patients)
    parts = bundle.margin_contributions(patients)
    constant = margin - parts.sum(axis=1)
    # Same constant for every patient (xgboost's bias term), up to float32 rounding of the booster output.
    assert np.ptp(constant) < 1e-5
    bias = bundle.booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)[:, -1]
    np.testing.assert_allclose(constant, bias, atol=1e-5)
    assert parts.shape[1] == len(CML_TFR_SCHEMA.predictor_names)


def test_cox_margin_contributions_sum_to_margin(bundles, patients):
    bundle = bundles["cox_ph"].causes["relapse"]
    np.testing.assert_allclose(bundle.margin_contributions(patients).sum(axis=1), bundle.margin(patients),
                               atol=1e-12)


def test_risk_rises_with_sokal_risk(bundles, patients):
    # Generator: Sokal high HR 2.0 vs low (clarifications section 3), so the Cox model must rank high above low.
    bundle = bundles["cox_ph"]
    one = patients.iloc[[0, 1, 2]].copy()
    low, high = one.assign(sokal_risk="low"), one.assign(sokal_risk="high")
    months = np.array([6.0, 12.0, 24.0])
    assert np.all(bundle.event_probability(high, months) > bundle.event_probability(low, months))
    values, _ = bundle.contributions(high, 12)
    values_low, _ = bundle.contributions(low, 12)
    sokal = CML_TFR_SCHEMA.predictor_names.index("sokal_risk")
    assert np.all(values[:, sokal] > values_low[:, sokal])


@pytest.mark.parametrize("family", FAMILIES)
def test_background_holds_no_patient_and_clusters_of_ten(bundles, development, family):
    bundle = bundles[family]
    assert 1 <= len(bundle.background) <= 50
    assert min(bundle.background_weights) >= MIN_CLUSTER_SIZE
    assert sum(bundle.background_weights) == len(development)
    # Compare on one numeric encoding (missing = NaN, categories one-hot, flags 0/1).
    encoder = Preprocessor(impute=False).fit(development, CML_TFR_SCHEMA)
    background = validate_frame(pd.DataFrame(bundle.background), CML_TFR_SCHEMA, require_outcome=False)
    rows, people = encoder.transform(background), encoder.transform(development)
    same = (rows[:, None, :] == people[None, :, :]) | (np.isnan(rows)[:, None, :] & np.isnan(people)[None, :, :])
    assert not same.all(axis=2).any()
    assert not {"centre", "country", *CML_TFR_SCHEMA.outcome_columns} & set(bundle.background[0])


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A throwaway sqlite tracking store; the global tracking URI is restored afterwards."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("DO_NOT_TRACK", "true")
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        experiment = mlflow.create_experiment("test_pyfunc", artifact_location=(folder / "artifacts").as_uri())
        try:
            yield mlflow, experiment
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("family", FAMILIES)
def test_pyfunc_round_trip(bundles, patients, family, mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow, experiment = mlflow_store
    from training.pyfunc_model import RelapseRiskModel

    bundle = bundles[family]
    bundle_dir = bundle.save(tmp_path / "bundle")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="model", python_model=RelapseRiskModel(),
                                       artifacts={"bundle": str(bundle_dir)})
    model = mlflow.pyfunc.load_model(info.model_uri)
    answer = model.predict(patients)
    expected = bundle.event_probability(patients, HORIZONS)
    for i, h in enumerate(CML_TFR_SCHEMA.horizons_months):
        np.testing.assert_allclose(answer[f"relapse_{h}m"].to_numpy(), expected[:, i], atol=1e-12)
        np.testing.assert_allclose(answer[f"relapse_free_{h}m"].to_numpy(), 1 - expected[:, i],
                                   atol=1e-12)
    assert list(answer.index) == list(patients.index)
