"""End to end through MLflow: parent run, children, metrics, artifacts, registry aliases, export, reproducibility."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.sample_tasks import COMPETING, SINGLE, sample_tasks
from tests.stores import N_TRIALS, quick_settings
from training.pipeline import run_training

pytestmark = pytest.mark.slow  # the whole training pipeline (conftest.py `trained_store`, `competing_store`)


@pytest.fixture(scope="module", autouse=True)
def _sample_tasks_registered(sample_tasks) -> None:
    """The registered models and a second run read the sample tasks from the task registry."""


@pytest.fixture(scope="module")
def client(trained_store) -> MlflowClient:
    mlflow.set_tracking_uri(trained_store.tracking_uri)
    return MlflowClient(trained_store.tracking_uri)


def test_parent_run_holds_both_families_and_the_trials(trained_store, client):
    summary = trained_store.summary
    children = client.search_runs([summary.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    roles = sorted(r.data.tags["role"] for r in children)
    assert roles.count("tuning_trial") == N_TRIALS
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
    assert 0.5 < metrics["uno_c"] < 0.8  # the oracle C of the sample generator is about 0.69
    assert "cox_ph_uno_c" in metrics and "xgboost_cox_uno_c" in metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/calibration_12m.png", "plots/shap_summary_relapse_12m.png"} <= artifacts
    assert parent.inputs.dataset_inputs[0].dataset.digest == tags["data_digest"]
    # The Cox family's proportional-hazards check: its p values as metrics, the full table as an artifact.
    assert 0.0 <= metrics["ph_global_p_relapse"] <= 1.0
    assert "ph_check.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_registry_aliases_and_export(trained_store, client):
    summary = trained_store.summary
    challenger = client.get_model_version_by_alias(SINGLE, "challenger")
    assert str(challenger.version) == summary.version
    pointer_path = trained_store.models_dir / SINGLE / "champion.json"
    if summary.promoted:
        assert str(client.get_model_version_by_alias(SINGLE, "champion").version) == summary.version
        pointer = json.loads(pointer_path.read_text())
        assert pointer["version"] == summary.version and pointer["run_id"] == summary.run_id
        assert (trained_store.models_dir / SINGLE / summary.version / "bundle.json").exists()
    else:
        assert not pointer_path.exists()


def test_registered_pyfunc_predicts_probabilities(trained_store):
    model = mlflow.pyfunc.load_model(f"models:/{SINGLE}/{trained_store.summary.version}")
    answer = model.predict(sample_tasks()[SINGLE].generate_cohort(20, 99))
    risks = answer[[f"relapse_{h}m" for h in (6, 12, 24)]].to_numpy()
    assert np.all((risks >= 0) & (risks <= 1)) and np.all(np.diff(risks, axis=1) >= 0)


def test_same_seed_and_data_give_the_same_metrics_and_no_promotion(trained_store, client, tmp_path):
    """A second identical run reproduces the metrics, also without its figures; it does not beat the champion, so
    it is not promoted."""
    again = run_training(quick_settings(trained_store.root), gates=trained_store.gates)
    first = trained_store.summary.metrics
    for family in first:
        for name, value in first[family].items():
            assert again.metrics[family][name] == pytest.approx(value, abs=1e-9, nan_ok=True), (family, name)
    assert again.version != trained_store.summary.version
    assert not again.promoted
    # Drawn without figures (`--plots none`): none logged, the tables are, and the card says where figures went.
    logged = {a.path for a in client.list_artifacts(again.run_id)}
    assert not {"plots", "explanations"} & logged and {"validation", "decision_curves"} <= logged
    card = Path(client.download_artifacts(again.run_id, "model_card.md", str(tmp_path))).read_text()
    assert "plots/calibration/" not in card and "the run was trained with `--plots none`" in card


def test_competing_risk_run_reports_every_endpoint(competing_store, tmp_path):
    """A competing-risk task: pooled internal-external estimates, bootstrap intervals, plots and subgroups for every
    endpoint it declares, with the same metric names as a single-event task (endpoint prefixes aside)."""
    client = MlflowClient(competing_store.tracking_uri)
    task = sample_tasks()[COMPETING]
    endpoints = [endpoint.name for endpoint in task.spec.endpoints]
    assert len(endpoints) >= 3  # two causes and an event-free endpoint
    run = client.get_run(competing_store.summary.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    horizon = task.spec.main_horizon_months
    for endpoint in ["", *(f"{name}_" for name in endpoints[1:])]:
        for name in ("uno_c", "ibs", f"ici_{horizon}m", f"e50_{horizon}m", f"cal_oe_{horizon}m"):
            assert f"{endpoint}{name}" in metrics, endpoint + name
        assert f"{endpoint}uno_c_lower95" in metrics and f"pooled_{endpoint}uno_c" in metrics
        assert f"pooled_{endpoint}cal_slope_{horizon}m_pi_lower95" in metrics
    assert "leave-one-centre-out" in tags["validation_design"]
    forest = {a.path for a in client.list_artifacts(run.info.run_id, "plots/forest")}
    calibration = {a.path for a in client.list_artifacts(run.info.run_id, "plots/calibration")}
    curves = {a.path for a in client.list_artifacts(run.info.run_id, "plots/decision_curves")}
    for endpoint in endpoints:
        assert f"plots/forest/forest_{endpoint}_uno_c.png" in forest
        assert f"plots/calibration/calibration_{endpoint}.png" in calibration
        assert f"plots/decision_curves/decision_curve_{endpoint}.png" in curves
    table = Path(client.download_artifacts(run.info.run_id, "subgroups/subgroups.md", str(tmp_path))).read_text()
    for variable in (*task.spec.report.subgroups, "age band", "centre"):
        assert f"| {variable} |" in table, variable
    card = Path(client.download_artifacts(run.info.run_id, "model_card.md", str(tmp_path))).read_text()
    assert "competing risks" in card and f"| {endpoints[1]} | uno_c |" in card
    assert "Plots: `plots/calibration/` (main horizon only) on the run." in card  # as the store's run drew them
