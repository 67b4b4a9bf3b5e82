"""What `make ui` shows of a training run: the experiment opens as a model-training experiment (its runs table,
not MLflow's GenAI view), and the parent run's description holds the closing summary of `make train`."""

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from training.run_note import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, NOTE_TAG, task_experiment

pytestmark = pytest.mark.slow  # reads the run of the session's trained store (conftest.py)


def test_experiment_is_marked_as_model_training_also_when_it_existed_before(trained_store):
    client = MlflowClient(trained_store.tracking_uri)
    experiment = client.get_experiment(trained_store.summary.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    client.delete_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG)  # as made before this change
    mlflow.set_tracking_uri(trained_store.tracking_uri)
    assert task_experiment(mlflow, trained_store.settings) == experiment.experiment_id
    assert client.get_experiment(experiment.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_parent_run_description_is_the_closing_summary(trained_store, tmp_path):
    summary = trained_store.summary
    client = MlflowClient(trained_store.tracking_uri)
    note = client.get_run(summary.run_id).data.tags[NOTE_TAG]
    assert f"registered version **{summary.version}** ({summary.family})" in note
    assert ("promoted to champion" if summary.promoted else "not promoted") in note
    assert summary.reason in note
    header = next(line for line in note.splitlines() if line.startswith("| metric |"))
    assert header == "| metric | " + " | ".join(summary.metrics) + " |"
    for metric in ("uno_c", "ibs", "cal_slope_12m"):
        row = next(line for line in note.splitlines() if line.startswith(f"| {metric} |"))
        assert row == f"| {metric} | " + " | ".join(f"{m[metric]:.3f}" for m in summary.metrics.values()) + " |"
    decision = json.loads(Path(client.download_artifacts(summary.run_id, "promotion.json", str(tmp_path))).read_text())
    for gate, value in decision["gates"].items():
        if isinstance(value, bool):
            assert f"| {gate} | {'pass' if value else 'FAIL'} |" in note, gate
    # The family runs and trials keep no summary of their own.
    children = client.search_runs([summary.experiment_id], f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert children and not [run for run in children if NOTE_TAG in run.data.tags]
