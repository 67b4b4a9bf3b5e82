"""Training reads a task's report subgroups, intended use and default-training flag from its task.toml."""

import pandas as pd

from features.tasks import TASKS, load_task
from tasks.cml_tfr.generator import generate_cml_tfr_cohort
from tests.features.test_task_spec import GOOD_SPEC, _folder, _three_cause_file
from training import cli
from training.model_card import DEFAULT_INTENDED_USE, intended_use
from training.subgroups import subgroup_variables


def test_subgroups_follow_the_spec_report_table():
    cohort = generate_cml_tfr_cohort(300, 1)
    variables = subgroup_variables(cohort, TASKS["cml_tfr"].schema)
    assert set(variables["age band"]) <= {"< 45", "45-64", ">= 65", "missing"}
    assert {"tki_at_stop", "transcript_type", "sokal_risk"} <= set(variables)
    assert "depth_at_stop" not in variables  # only the groups the spec lists


def test_a_new_task_gets_its_own_age_bands_and_groups(tmp_path, monkeypatch):
    spec = GOOD_SPEC + '\n[report]\nage_bands = [30, 50]\nsubgroups = ["risk_group"]\n'
    monkeypatch.setitem(TASKS, "three_causes", load_task(_folder(tmp_path, spec)))
    frame = _three_cause_file().assign(age_years=[25.0, 40.0, 70.0] * 10)
    variables = subgroup_variables(frame, TASKS["three_causes"].schema)
    assert list(pd.unique(variables["age band"])) == ["< 30", "30-49", ">= 50"]
    assert "risk_group" in variables


def test_model_card_intended_use_is_the_spec_text():
    use, users = intended_use("cml_tfr")
    assert use == TASKS["cml_tfr"].spec.use.intended_use and use.startswith("Estimate, for an adult with chronic")
    assert "Not for patients who do not meet the stopping criteria" in users
    assert intended_use("no_such_task") == DEFAULT_INTENDED_USE


def test_plain_make_train_trains_the_tasks_whose_spec_says_so():
    assert cli.DEFAULT_TASKS == ("cml_tfr", "all_hsct", "all_frontline")


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
