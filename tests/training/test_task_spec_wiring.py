"""Training reads a task's report subgroups, intended use and default-training flag from its task.toml. No task
is named here: the shipped ones are found by discovery, a new one is a folder in a temporary directory."""

import tomllib

import pandas as pd
import pytest

from features.tasks import TASKS, TASKS_DIR, load_task
from tests.features.test_task_spec import GOOD_SPEC, _folder, _three_cause_file
from training import cli
from training.model_card import DEFAULT_INTENDED_USE, intended_use
from training.subgroups import subgroup_variables

LISTED_SUBGROUPS = [name for name, task in TASKS.items()
                    if task.spec and task.spec.trained_by_default and task.spec.report.subgroups]


@pytest.mark.parametrize("name", LISTED_SUBGROUPS)
def test_subgroups_follow_the_spec_report_table(name):
    task = TASKS[name]
    cohort = task.generate_cohort(300, 1)
    variables = subgroup_variables(cohort, task.schema)
    listed = set(task.spec.report.subgroups)
    assert {column for column in listed if cohort[column].notna().any()} <= set(variables)
    unlisted = {p.name for p in task.schema.predictors if p.kind == "category"} - listed - {"sex"}
    assert not unlisted & set(variables)  # only the groups the spec lists


def test_a_new_task_gets_its_own_age_bands_and_groups(tmp_path, monkeypatch):
    spec = GOOD_SPEC + '\n[report]\nage_bands = [30, 50]\nsubgroups = ["risk_group"]\n'
    monkeypatch.setitem(TASKS, "three_causes", load_task(_folder(tmp_path, spec)))
    frame = _three_cause_file().assign(age_years=[25.0, 40.0, 70.0] * 10)
    variables = subgroup_variables(frame, TASKS["three_causes"].schema)
    assert list(pd.unique(variables["age band"])) == ["< 30", "30-49", ">= 50"]
    assert "risk_group" in variables


def test_model_card_intended_use_is_the_spec_text(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "three_causes", load_task(_folder(tmp_path, GOOD_SPEC)))
    assert intended_use("three_causes") == ("Demonstrate a task folder without Python.",
                                            "Developers; not a clinical tool.")
    assert intended_use("no_such_task") == DEFAULT_INTENDED_USE


def test_plain_make_train_trains_the_tasks_whose_spec_says_so():
    # Read from the folders' task.toml files, not through the registry the CLI uses.
    specs = {path.parent.name: tomllib.loads(path.read_text()) for path in TASKS_DIR.glob("*/task.toml")}
    flagged = sorted((spec.get("position", 100), name) for name, spec in specs.items()
                     if spec.get("trained_by_default"))
    assert flagged and tuple(name for _, name in flagged) == cli.DEFAULT_TASKS


def test_a_named_report_group_is_reported_and_defined_with_the_age_bands(tmp_path, monkeypatch):
    from tests.features.test_task_spec import GROUPS
    from training.subgroups import report_group_definitions

    monkeypatch.setitem(TASKS, "three_causes", load_task(_folder(tmp_path, GOOD_SPEC + GROUPS)))
    frame = _three_cause_file().assign(age_years=[25.0, 40.0, 70.0] * 10, risk_group=["high", "low"] * 15)
    schema = TASKS["three_causes"].schema
    labels = subgroup_variables(frame, schema)["older_high_risk"]
    expected = (frame["age_years"] >= 65) & (frame["risk_group"] == "high")
    assert (labels == "patients aged 65 or over in the high-risk group").tolist() == expected.tolist()
    groups = report_group_definitions(schema)
    assert [g["name"] for g in groups] == ["age < 40", "age >= 40", "older_high_risk"]
    assert groups[0]["conditions"] == [{"column": "age_years", "minimum": None, "below": 40, "categories": []}]
