"""Today's risk tools and nested models through `make train`: a task folder written to a temporary directory (spec
with [[comparators]] and [[nested_models]], a rule registered by its __init__.py) trains, and the run holds the
comparison table, the reclassification counts, the nested models and their metrics, and the card their section."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from features.tasks import TASKS, load_task
from tests.stores import quick_settings, small_gates, tracking_store
from tests.training.test_comparators import three_cause_frame, write_task_folder

pytestmark = pytest.mark.slow  # trains a task through the pipeline

BY_GROUP = """
[[nested_models]]
name = "age_by_group"
title = "Age, linear then spline, by risk group"
by = "risk_group"
steps = [["age_years"], ["spline(age_years)"]]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules_pipeline")
    folder = write_task_folder(root / "tasks")
    (folder / "task.toml").write_text((folder / "task.toml").read_text() + BY_GROUP)
    data = root / "three_with_rules.csv"
    three_cause_frame(900, 5).to_csv(data, index=False)
    patch = pytest.MonkeyPatch()
    patch.setitem(TASKS, "three_with_rules", load_task(folder))
    from training.pipeline import run_training

    settings = replace(
        quick_settings(root), task="three_with_rules", data_path=str(data), n_patients=None, n_replicates=2, n_trials=1
    )
    tracking_store(root)
    summary = run_training(settings, gates=small_gates())
    yield settings, summary
    patch.undo()


def _artifact(settings, run_id: str, path: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)


def test_the_run_holds_the_comparison_table_with_the_model_and_every_tool(trained):
    settings, summary = trained
    table = pd.read_csv(_artifact(settings, summary.run_id, "comparators/comparison_table.csv")).set_index("name")
    other = "xgboost_cox" if summary.family == "cox_ph" else "cox_ph"
    assert list(table.index) == ["model", other, "risk_group_rule", "coin_rule", "age_index"]
    assert table.loc[other, "uno_c"] == pytest.approx(summary.metrics[other]["uno_c"], abs=1e-9)
    # the same held-out patients: the model's C is the registered family's held-out C
    assert table.loc["model", "uno_c"] == pytest.approx(summary.metrics[summary.family]["uno_c"], abs=1e-9)
    assert table.loc["model", "uno_c"] > table.loc["coin_rule", "uno_c"]
    assert table.loc["coin_rule", "delta_uno_c_lower95"] > 0  # the model beats a rule that ignores the patient
    assert (
        table.loc["coin_rule", "nri_lower95"] <= table.loc["coin_rule", "nri"] <= table.loc["coin_rule", "nri_upper95"]
    )
    import mlflow

    moves = pd.read_csv(_artifact(settings, summary.run_id, "comparators/reclassification.csv"))
    held_out = int(mlflow.get_run(summary.run_id).data.params["n_held_out"])
    assert moves.groupby("comparator")["n"].sum().tolist() == [held_out] * 3  # every patient in one move


def test_the_run_holds_the_nested_models_overall_and_by_level(trained):
    settings, summary = trained
    nested = pd.read_csv(_artifact(settings, summary.run_id, "comparators/nested_models.csv"))
    assert set(nested["level"]) == {"all", "risk_group=high", "risk_group=low"}
    group_step = nested[(nested["nested"] == "age_then_group") & (nested["step"] == 2)].iloc[0]
    assert group_step["lr_p"] < 0.01 and group_step["df"] == 1


def test_metrics_and_card_carry_the_comparison(trained):
    import mlflow

    settings, summary = trained
    mlflow.set_tracking_uri(settings.tracking_uri)
    metrics = mlflow.get_run(summary.run_id).data.metrics
    assert {
        "comparator_coin_rule_uno_c",
        "comparator_coin_rule_nri",
        "comparator_age_index_cal_oe_12m",
        "nested_age_by_group_risk_group_high_step2_df",
    } <= set(metrics)
    card = Path(_artifact(settings, summary.run_id, "model_card.md")).read_text()
    assert "## Comparison with today's risk tools" in card and "### Nested models" in card
