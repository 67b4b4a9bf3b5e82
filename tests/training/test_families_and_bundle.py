"""Both model families end in a bundle that saves, loads, explains additively and wraps as an MLflow pyfunc.

One small synthetic cohort of the sample single-event task (tests/sample_tasks/; n = 600, fixed seed); a Cox
model and a small xgboost survival:cox model (eta 0.1, depth 2, 50 rounds) are fitted once for the module and
completed as `make train` completes them.
Bundles carry their format: another one is refused with what to do, and `make promote` re-exports older ones.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from risk_model.bundle import BUNDLE_FILE, BUNDLE_FORMAT_VERSION, CURVE_MONTHS, BundleFormatError, ModelBundle
from risk_model.preprocessing import Preprocessor
from tests.sample_tasks import SINGLE, sample_tasks
from tests.stores import tracking_store
from training.explain import MIN_CLUSTER_SIZE
from training.families import CoxFamily, XGBoostCoxFamily
from training.pipeline import complete_bundle

SEED = 13
SAMPLE = sample_tasks()[SINGLE]
SAMPLE_SCHEMA = SAMPLE.schema
HORIZONS = np.array(SAMPLE_SCHEMA.horizons_months, dtype=float)
FAMILIES = ("cox_ph", "xgboost_cox")


@pytest.fixture(scope="module")
def development() -> pd.DataFrame:
    return validate_frame(SAMPLE.generate_cohort(600, SEED), SAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    """New patients from another seed, predictor columns only (as a request would carry)."""
    frame = validate_frame(SAMPLE.generate_cohort(40, SEED + 1), SAMPLE_SCHEMA)
    return frame[SAMPLE_SCHEMA.predictor_names]


@pytest.fixture(scope="module")
def bundles(development) -> dict[str, ModelBundle]:
    target = SAMPLE.cause_targets(development)["relapse"]
    fitted = {
        "cox_ph": CoxFamily().fit(development, SAMPLE_SCHEMA, target),
        "xgboost_cox": XGBoostCoxFamily(params={"eta": 0.1, "max_depth": 2}, num_boost_round=50,
                                        seed=SEED).fit(development, SAMPLE_SCHEMA, target),
    }

    def bundle_of(name: str, family) -> ModelBundle:
        bundle = ModelBundle(task=SINGLE, family=name, outcome="single_event",
                             causes={"relapse": family.cause_model()},
                             horizons_months=list(SAMPLE_SCHEMA.horizons_months),
                             main_horizon_months=SAMPLE_SCHEMA.main_horizon_months, schema=SAMPLE_SCHEMA.to_json())
        return complete_bundle(bundle, development, SAMPLE_SCHEMA, SEED)

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
        assert values.shape == (len(patients), len(SAMPLE_SCHEMA.predictor_names))
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
    bias = bundle.loaded_booster().predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)[:, -1]
    np.testing.assert_allclose(constant, bias, atol=1e-5)
    assert parts.shape[1] == len(SAMPLE_SCHEMA.predictor_names)


def test_cox_margin_contributions_sum_to_margin(bundles, patients):
    bundle = bundles["cox_ph"].causes["relapse"]
    np.testing.assert_allclose(bundle.margin_contributions(patients).sum(axis=1), bundle.margin(patients),
                               atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_background_holds_no_patient_and_clusters_of_ten(bundles, development, family):
    bundle = bundles[family]
    assert 1 <= len(bundle.background) <= 50
    assert min(bundle.background_weights) >= MIN_CLUSTER_SIZE
    assert sum(bundle.background_weights) == len(development)
    # Compare on one numeric encoding (missing = NaN, categories one-hot, flags 0/1).
    encoder = Preprocessor(impute=False).fit(development, SAMPLE_SCHEMA)
    background = validate_frame(pd.DataFrame(bundle.background), SAMPLE_SCHEMA, require_outcome=False)
    rows, people = encoder.transform(background), encoder.transform(development)
    same = (rows[:, None, :] == people[None, :, :]) | (np.isnan(rows)[:, None, :] & np.isnan(people)[None, :, :])
    assert not same.all(axis=2).any()
    assert not {"centre", "country", *SAMPLE_SCHEMA.outcome_columns} & set(bundle.background[0])


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A throwaway sqlite tracking store; the global tracking URI is restored afterwards."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("DO_NOT_TRACK", "true")
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_store(folder))
        experiment = mlflow.create_experiment("test_pyfunc", artifact_location=(folder / "artifacts").as_uri())
        try:
            yield mlflow, experiment
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.mark.slow  # logs and loads MLflow models
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
    for i, h in enumerate(SAMPLE_SCHEMA.horizons_months):
        np.testing.assert_allclose(answer[f"relapse_{h}m"].to_numpy(), expected[:, i], atol=1e-12)
        np.testing.assert_allclose(answer[f"relapse_free_{h}m"].to_numpy(), 1 - expected[:, i],
                                   atol=1e-12)
    assert list(answer.index) == list(patients.index)


# --- the bundle format ---------------------------------------------------------------------------------------

def _saved_in_format(bundle: ModelBundle, folder: Path, found: int | None, version: str) -> Path:
    """The bundle saved, then its bundle.json rewritten as one of format `found` would be (None: saved before
    formats were numbered), registered as `version`."""
    bundle.save(folder)
    spec = json.loads((folder / BUNDLE_FILE).read_text())
    spec.pop("format_version")
    if found is not None:
        spec["format_version"] = found
    spec["lineage"] = {**spec["lineage"], "version": version}
    (folder / BUNDLE_FILE).write_text(json.dumps(spec))
    return folder


def test_a_bundle_carries_its_format_and_another_is_refused_with_what_to_do(bundles, patients, tmp_path):
    bundle = bundles["cox_ph"]
    saved = bundle.save(tmp_path / "current")
    assert json.loads((saved / BUNDLE_FILE).read_text())["format_version"] == BUNDLE_FORMAT_VERSION
    unnumbered = _saved_in_format(bundle, tmp_path / "unnumbered", None, version="3")
    with pytest.raises(BundleFormatError) as refused:
        ModelBundle.load(unnumbered)
    message = str(refused.value)
    assert "no format version" in message and f"this code reads format {BUNDLE_FORMAT_VERSION}" in message
    assert f"`make train TASK={SINGLE}`" in message and f"`make promote TASK={SINGLE} VERSION=3`" in message
    upgraded = ModelBundle.load(unnumbered, upgrade=True)  # the export's read: unnumbered bundles have format 1
    np.testing.assert_array_equal(upgraded.event_probability(patients, HORIZONS),
                                  bundle.event_probability(patients, HORIZONS))
    newer = _saved_in_format(bundle, tmp_path / "newer", BUNDLE_FORMAT_VERSION + 1, version="4")
    for upgrade in (False, True):
        with pytest.raises(BundleFormatError, match=f"format {BUNDLE_FORMAT_VERSION + 1}, this code reads format "
                                                    f"{BUNDLE_FORMAT_VERSION}: serve it with the newer release"):
            ModelBundle.load(newer, upgrade=upgrade)


def test_a_champion_of_another_format_fails_to_load_and_the_old_one_keeps_serving(bundles, tmp_path):
    from serving.champions import ChampionRegistry

    task_dir = tmp_path / "models" / SINGLE
    bundles["cox_ph"].save(task_dir / "1")
    pointer = {"task": SINGLE, "version": "1", "path": "1", "run_id": "run-1",
               "exported_at": "2030-01-01T00:00:01+00:00"}
    (task_dir / "champion.json").write_text(json.dumps(pointer))
    registry = ChampionRegistry(tmp_path / "models", [SINGLE])
    assert [report["status"] for report in registry.refresh(force=True)] == ["loaded"]
    _saved_in_format(bundles["cox_ph"], task_dir / "2", None, version="2")
    (task_dir / "champion.json").write_text(json.dumps({**pointer, "version": "2", "path": "2", "run_id": "run-2",
                                                        "exported_at": "2030-01-01T00:00:02+00:00"}))
    [report] = registry.refresh(force=True)
    assert report["status"] == "failed" and report["serving_version"] == "1"
    assert report["message"].startswith("version 2 cannot be served: bundle has no format version")
    assert f"`make promote TASK={SINGLE} VERSION=2`" in report["message"]
    assert report["message"].endswith("version 1 keeps serving")
    assert registry.get(SINGLE).pointer["version"] == "1"


@pytest.mark.slow  # registers in an MLflow store
def test_make_promote_re_exports_an_older_registered_bundle_in_this_format(bundles, patients, mlflow_store, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow, experiment = mlflow_store
    from serving.champions import ChampionRegistry
    from training.promotion import promote_version
    from training.pyfunc_model import RelapseRiskModel

    bundle = bundles["cox_ph"]
    bundle_dir = _saved_in_format(bundle, tmp_path / "bundle", None, version="1")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="model", python_model=RelapseRiskModel(), pip_requirements=["mlflow"],
                                       artifacts={"bundle": str(bundle_dir)}, registered_model_name=SINGLE)
    expected = bundle.event_probability(patients, HORIZONS)
    registered = mlflow.pyfunc.load_model(info.model_uri).predict(patients)  # the registry's pyfunc still reads it
    np.testing.assert_allclose(registered["relapse_12m"].to_numpy(), expected[:, HORIZONS.tolist().index(12)])
    version = str(info.registered_model_version)
    promote_version(SINGLE, version, models_dir=tmp_path / "models")
    exported = tmp_path / "models" / SINGLE / version
    assert json.loads((exported / BUNDLE_FILE).read_text())["format_version"] == BUNDLE_FORMAT_VERSION
    np.testing.assert_array_equal(ModelBundle.load(exported).event_probability(patients, HORIZONS), expected)
    assert [r["status"] for r in ChampionRegistry(tmp_path / "models", [SINGLE]).refresh(force=True)] == ["loaded"]


def test_retraining_over_a_champion_it_cannot_read_compares_with_the_cox_baseline_instead(bundles, tmp_path):
    from training.config import TrainSettings
    from training.pipeline import champion_bundle

    settings = TrainSettings(task=SINGLE, models_dir=tmp_path)
    _saved_in_format(bundles["cox_ph"], tmp_path / SINGLE / "5", BUNDLE_FORMAT_VERSION + 1, version="5")
    current, why = champion_bundle(settings, {"version": "5", "path": "5"})
    assert current is None and why.startswith(f"is a bundle this code cannot read (bundle format "
                                              f"{BUNDLE_FORMAT_VERSION + 1}")
    _saved_in_format(bundles["cox_ph"], tmp_path / SINGLE / "4", None, version="4")
    current, why = champion_bundle(settings, {"version": "4", "path": "4"})
    assert current.family == "cox_ph" and why == ""


def test_a_format_1_bundle_reads_as_one_stratum_when_training_upgrades_it(bundles, patients, tmp_path):
    bundle = bundles["xgboost_cox"]
    older = _saved_in_format(bundle, tmp_path / "format1", 1, version="2")
    with pytest.raises(BundleFormatError, match=f"bundle format 1, this code reads format {BUNDLE_FORMAT_VERSION}"):
        ModelBundle.load(older)  # serving never upgrades
    upgraded = ModelBundle.load(older, upgrade=True)
    assert upgraded.strata is None
    np.testing.assert_array_equal(upgraded.event_probability(patients, HORIZONS),
                                  bundle.event_probability(patients, HORIZONS))
