"""End to end through MLflow: parent run, children, metrics, artifacts, registry aliases, export, reproducibility."""

import json

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.stores import small_settings
from training.pipeline import run_training

pytestmark = pytest.mark.slow  # the whole training pipeline (conftest.py `trained_store`)


@pytest.fixture(scope="module")
def client(trained_store) -> MlflowClient:
    mlflow.set_tracking_uri(trained_store.tracking_uri)
    return MlflowClient(trained_store.tracking_uri)


def test_parent_run_holds_both_families_and_the_trials(trained_store, client):
    summary = trained_store.summary
    children = client.search_runs([summary.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    roles = sorted(r.data.tags["role"] for r in children)
    assert roles.count("tuning_trial") == 3
    assert {"baseline", "candidate"} <= set(roles)
    for run in children:
        if run.data.tags["role"] in ("baseline", "candidate"):
            for metric in ("uno_c", "harrell_c", "ibs", "auc_12m", "brier_12m", "cal_slope_12m", "cal_oe_12m"):
                assert metric in run.data.metrics, (run.data.tags["family"], metric)


def test_parent_run_records_data_metrics_plots_and_decision(trained_store, client):
    parent = client.get_run(trained_store.summary.run_id)
    tags, metrics = parent.data.tags, parent.data.metrics
    assert len(tags["data_digest"]) == 16 and tags["git_commit"]
    assert tags["promotion_decision"] in ("promoted", "not_promoted") and tags["promotion_reason"]
    assert 0.5 < metrics["uno_c"] < 0.8  # the oracle C of the generator is about 0.62-0.65
    assert "cox_ph_uno_c" in metrics and "xgboost_cox_uno_c" in metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/calibration_12m.png", "plots/shap_summary_relapse_12m.png"} <= artifacts
    assert parent.inputs.dataset_inputs[0].dataset.digest == tags["data_digest"]
    # The Cox family's proportional-hazards check: its p values as metrics, the full table as an artifact.
    assert 0.0 <= metrics["ph_global_p_relapse"] <= 1.0
    assert "ph_check.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_registry_aliases_and_export(trained_store, client):
    summary = trained_store.summary
    challenger = client.get_model_version_by_alias("cml_tfr", "challenger")
    assert str(challenger.version) == summary.version
    pointer_path = trained_store.models_dir / "cml_tfr" / "champion.json"
    if summary.promoted:
        assert str(client.get_model_version_by_alias("cml_tfr", "champion").version) == summary.version
        pointer = json.loads(pointer_path.read_text())
        assert pointer["version"] == summary.version and pointer["run_id"] == summary.run_id
        assert (trained_store.models_dir / "cml_tfr" / summary.version / "bundle.json").exists()
    else:
        assert not pointer_path.exists()


def test_registered_pyfunc_predicts_probabilities(trained_store):
    from tasks.cml_tfr.generator import generate_cml_tfr_cohort

    model = mlflow.pyfunc.load_model(f"models:/cml_tfr/{trained_store.summary.version}")
    answer = model.predict(generate_cml_tfr_cohort(20, seed=99))
    risks = answer[[f"relapse_{h}m" for h in (6, 12, 24)]].to_numpy()
    assert np.all((risks >= 0) & (risks <= 1)) and np.all(np.diff(risks, axis=1) >= 0)


def test_same_seed_and_data_give_the_same_metrics_and_no_promotion(trained_store):
    """A second identical run reproduces the metrics; it does not beat the champion, so it is not promoted."""
    again = run_training(small_settings(trained_store.root))
    first = trained_store.summary.metrics
    for family in first:
        for name, value in first[family].items():
            assert again.metrics[family][name] == pytest.approx(value, abs=1e-9, nan_ok=True), (family, name)
    assert again.version != trained_store.summary.version
    assert not again.promoted


def test_competing_risk_run_reports_every_endpoint(trained_all_hsct, client):
    """all_hsct: pooled internal-external estimates, bootstrap intervals, plots and subgroups for all five
    endpoints, with the same metric names as cml_tfr (endpoint prefixes aside)."""
    run = client.get_run(trained_all_hsct.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    for endpoint in ("", "nrm_", "os_", "lfs_", "grfs_"):
        for name in ("uno_c", "ibs", "ici_24m", "e50_24m", "cal_oe_24m"):
            assert f"{endpoint}{name}" in metrics, endpoint + name
        assert f"{endpoint}uno_c_lower95" in metrics and f"pooled_{endpoint}uno_c" in metrics
        assert f"pooled_{endpoint}cal_slope_24m_pi_lower95" in metrics
    assert "leave-one-centre-out" in tags["validation_design"]
    forest = {a.path for a in client.list_artifacts(run.info.run_id, "plots/forest")}
    calibration = {a.path for a in client.list_artifacts(run.info.run_id, "plots/calibration")}
    curves = {a.path for a in client.list_artifacts(run.info.run_id, "plots/decision_curves")}
    for endpoint in ("relapse", "nrm", "os", "lfs", "grfs"):
        assert f"plots/forest/forest_{endpoint}_uno_c.png" in forest
        assert f"plots/calibration/calibration_{endpoint}.png" in calibration
        assert f"plots/decision_curves/decision_curve_{endpoint}.png" in curves
    table = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/subgroups/subgroups.md")
    for variable in ("donor_type", "disease_stage", "ph_chromosome", "age band", "country"):
        assert f"| {variable} |" in table, variable
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "competing risks" in card and "| nrm | uno_c |" in card
