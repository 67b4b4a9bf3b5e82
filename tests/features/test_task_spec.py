"""Task folders: every task is a folder with a declarative task.toml. The spec is checked by one typed model
that reports every problem with its path and line; the schemas built from the four specs equal, field by field,
the ones the Python modules built before the move (snapshot taken from the old code)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.task_schema import SchemaValidationError, validate_frame
from features.task_spec import TaskSpecError, line_of, load_spec
from features.tasks import TASKS, TASKS_DIR, discover_tasks, load_task

# Each task folder keeps its schema as the Python code defined it before the specs existed, with its place in the
# old task order (tasks/<task>/tests/snapshots/): every task that has one must still build the same schema.
SNAPSHOTS = {path.parents[2].name: json.loads(path.read_text())
             for path in sorted(TASKS_DIR.glob("*/tests/snapshots/schema_before_spec.json"))}
SNAPSHOT = {name: SNAPSHOTS[name]["schema"] for name in sorted(SNAPSHOTS, key=lambda name: SNAPSHOTS[name]["position"])}


FORM_FIELDS = ("transform", "spline_knots", "cuts")


def _plain(value):
    """Tuples as lists, as the JSON snapshot holds them."""
    return json.loads(json.dumps(value, default=list))


def test_every_task_folder_is_discovered_in_the_old_order():
    # A registry's own drafted folder (make task) may sit beside the shipped ones: they come first, in order.
    assert len(SNAPSHOT) >= 4  # the tasks that had Python schemas keep their snapshot
    assert [name for name in TASKS if name in SNAPSHOT] == list(SNAPSHOT)
    assert sorted(p.parent.name for p in TASKS_DIR.glob("*/task.toml")) == sorted(TASKS)


@pytest.mark.parametrize("name", list(SNAPSHOT))
def test_schema_built_from_the_spec_equals_the_old_python_schema(name):
    before, task = SNAPSHOT[name], TASKS[name]
    schema = task.schema
    # The bundle's schema now also carries the spec's wording (title, endpoint titles and phrases, intended use,
    # predictor labels); everything the old schema said is unchanged.
    document = _plain(schema.to_json())
    for group in ("predictors", "grouping"):
        document[group] = [{k: v for k, v in p.items() if k != "label"} for p in document[group]]
    assert {key: document[key] for key in before["to_json"]} == before["to_json"]
    assert document["endpoint_wording"] == {e.name: {"title": e.plot_title, "phrase": e.answer_phrase}
                                            for e in task.spec.endpoints}
    assert document["use"] == task.spec.use.model_dump()
    for group in ("predictors", "grouping", "extra_outcome_columns"):
        # The forms a number enters the Cox family in (log2, spline, cuts) came after the snapshot.
        now = [{k: v for k, v in dataclasses.asdict(p).items() if k not in FORM_FIELDS} for p in getattr(schema, group)]
        assert _plain(now) == before[group], group
    # int vs float matters where a value is printed (data dictionary, OpenAPI): 18 must stay 18, 58.0 stay 58.0
    for p, old in zip(schema.predictors, before["predictors"], strict=True):
        for key in ("minimum", "maximum", "example"):
            assert type(getattr(p, key)) is type(old[key]), (p.name, key)
    assert [[r.name, list(r.columns)] for r in schema.cross_field_rules] == before["cross_field_rules"]
    assert [n for n, _ in schema.derived_predictors] == before["derived_predictors"]
    assert (schema.outcome_check is not None) == before["has_outcome_check"]
    for key in ("title", "time_column", "event_column", "main_horizon_months", "endpoint_descriptions",
                "time_unit_suffixes"):
        assert _plain(getattr(schema, key)) == before[key], key
    assert task.default_cohort_size == before["default_cohort_size"]
    assert task.outcome == before["outcome"]
    assert (task.post_relapse_target is not None) == before["has_post_relapse_target"]
    extract = None if task.public_extract is None else {
        k: v for k, v in dataclasses.asdict(task.public_extract).items() if k != "load"}
    assert _plain(extract) == before["public_extract"]


# --- a broken spec: every problem at once, with its path and line --------------------------------------------

GOOD_SPEC = """\
title = "Three-cause demo"
time_zero = "the day of diagnosis"
horizons_months = [12, 24]
main_horizon_months = 12
explained_endpoint = "relapse"
default_cohort_size = 60

[use]
intended_use = "Demonstrate a task folder without Python."
users_and_limits = "Developers; not a clinical tool."

[outcome]
kind = "competing_risks"
time_column = "months_to_event"
event_column = "event_code"
event_description = "the first of relapse, death in remission or graft failure"

[[causes]]
code = 1
name = "relapse"
description = "relapse"

[[causes]]
code = 2
name = "death_in_remission"
description = "death without a prior relapse"

[[causes]]
code = 3
name = "graft_failure"
description = "graft failure"

[[endpoints]]
name = "relapse"
kind = "incidence"
description = "cumulative incidence of relapse"
plot_title = "Relapse incidence"
answer_phrase = "relapse"

[[endpoints]]
name = "death_in_remission"
kind = "incidence"
description = "cumulative incidence of death in remission"
plot_title = "Death in remission"
answer_phrase = "death in remission"

[[endpoints]]
name = "graft_failure"
kind = "incidence"
description = "cumulative incidence of graft failure"
plot_title = "Graft failure"
answer_phrase = "graft failure"

[[endpoints]]
name = "event_free"
kind = "survival"
description = "alive in remission with a working graft"
plot_title = "Event-free survival"
answer_phrase = "staying event-free"

[[predictors]]
name = "age_years"
kind = "number"
description = "Age at diagnosis"
unit = "years"
minimum = 18
maximum = 90
example = 50.0

[[predictors]]
name = "risk_group"
kind = "category"
description = "Risk group"
categories = ["low", "high"]
example = "low"

[[grouping]]
name = "centre"
kind = "text"
description = "Centre code (grouping only)"
required = false
"""


def _folder(tmp_path: Path, text: str, name: str = "three_causes") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "task.toml").write_text(text)
    return folder


def _line(text: str, fragment: str, occurrence: int = 0) -> int:
    return [i for i, line in enumerate(text.splitlines(), start=1) if fragment in line][occurrence]


HAZARD = 'kind = "hazard"'


def test_a_broken_spec_reports_every_problem_with_its_path_and_line(tmp_path):
    broken = (GOOD_SPEC
              .replace("maximum = 90", "maximum = \"ninety\"")  # predictors[0].maximum: not a number
              .replace('categories = ["low", "high"]', "categories = []")  # predictors[1]: a category without any
              .replace('kind = "survival"', 'kind = "hazard"')  # endpoints[3].kind
              .replace("default_cohort_size = 60", "default_cohort_size = 60\nhorizon = 12")  # misspelt key
              .replace('users_and_limits = "Developers; not a clinical tool."\n', ""))  # missing key
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken))
    problems = caught.value.problems
    assert len(problems) == 5, problems
    expected = {
        f"line {_line(broken, 'maximum = ')}, predictors[0].maximum: must be int or float, not 'ninety'",
        f"line {_line(broken, '[[predictors]]', 1)}, predictors[1]: a category needs its categories",
        f"line {_line(broken, HAZARD)}, endpoints[3].kind:",
        f"line {_line(broken, 'horizon = 12')}, horizon: unknown key",
        f"line {_line(broken, '[use]')}, use.users_and_limits: required key is missing",
    }
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    message = str(caught.value)
    assert message.startswith("5 problem(s) in ") and "the task was not loaded" in message
    assert "Traceback" not in message


def test_cross_field_problems_of_a_spec_come_together_with_their_lines(tmp_path):
    broken = (GOOD_SPEC.replace("main_horizon_months = 12", "main_horizon_months = 18")
              .replace("code = 3", "code = 4")
              .replace('explained_endpoint = "relapse"', 'explained_endpoint = "relapse_free"'))
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken))
    problems = caught.value.problems
    assert f"line {_line(broken, 'main_horizon_months')}, main_horizon_months: must be one of horizons_months" \
        in problems
    assert any(p.startswith(f"line {_line(broken, '[[causes]]')}, causes: cause codes must be 1..3") for p in problems)
    assert any(p.startswith(f"line {_line(broken, 'explained_endpoint')}, explained_endpoint:") for p in problems)


def test_a_rule_the_folder_does_not_register_is_named_with_its_line(tmp_path):
    text = GOOD_SPEC + '\n[[rules]]\ncode = "age_below_limit"\ncolumns = ["age_years"]\nmessage = "too old"\n'
    with pytest.raises(TaskSpecError, match=rf"line {_line(text, 'age_below_limit')}, rules\[0\]\.code: no rule "
                                            "'age_below_limit' is registered"):
        load_task(_folder(tmp_path, text))


def test_settings_of_a_route_the_folder_does_not_register_are_refused_with_their_line(tmp_path):
    text = GOOD_SPEC + "\n[routes.stop_timing]\nmargin_percentage_points = 5.0\n"
    with pytest.raises(TaskSpecError, match=rf"line {_line(text, '[routes.stop_timing]')}, routes\.stop_timing: no "
                                            "route 'stop_timing' is registered"):
        load_task(_folder(tmp_path, text))


def test_line_of_points_at_keys_tables_and_array_entries():
    text = GOOD_SPEC
    assert line_of(text, ("predictors", 1, "categories")) == _line(text, 'categories = ["low", "high"]')
    assert line_of(text, ("endpoints", 2)) == _line(text, "[[endpoints]]", 2)
    assert line_of(text, ("outcome", "kind")) == _line(text, 'kind = "competing_risks"')
    assert line_of(text, ("predictors", 0, "whole_number")) == _line(text, "[[predictors]]", 0)  # absent key
    assert line_of(text, ("title",)) == 1


def test_invalid_toml_is_one_clear_problem(tmp_path):
    with pytest.raises(TaskSpecError, match=r"(?s)1 problem\(s\).*not valid TOML.*line 2"):
        load_spec(_folder(tmp_path, 'title = "x"\nthis is not toml\n'))


# --- a task folder with only a task.toml: three competing causes, no Python -----------------------------------

def _three_cause_file(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame({
        "age_years": rng.uniform(20, 80, n).round(1), "risk_group": rng.choice(["low", "high"], n),
        "centre": rng.choice(["A", "B"], n), "months_to_event": rng.uniform(1, 40, n).round(1),
        "event_code": np.arange(n) % 4,  # 0 censored, then causes 1, 2, 3
    })


def test_a_folder_with_only_a_spec_loads_and_validates_a_three_cause_file(tmp_path):
    _folder(tmp_path, GOOD_SPEC)
    tasks = discover_tasks(tmp_path)
    task = tasks["three_causes"]
    assert task.outcome == "competing_risks"
    frame = _three_cause_file()
    clean = validate_frame(frame, task.schema)
    assert list(clean["event_code"].unique()) == [0, 1, 2, 3]
    causes = task.cause_targets(clean)
    assert list(causes) == ["relapse", "death_in_remission", "graft_failure"]
    for number, (months, event) in enumerate(causes.values(), start=1):
        assert event.sum() == int((frame["event_code"] == number).sum())
        assert np.allclose(months, frame["months_to_event"])
    endpoints = task.endpoint_targets(clean)
    assert endpoints["graft_failure"].event_of_interest == 3 and endpoints["graft_failure"].competing
    assert endpoints["event_free"].code.sum() == int((frame["event_code"] > 0).sum())
    with pytest.raises(ValueError, match="no synthetic generator"):
        task.generate_cohort(10, 0)


def test_a_three_cause_file_with_an_unknown_cause_code_is_refused_with_its_row(tmp_path):
    task = load_task(_folder(tmp_path, GOOD_SPEC))
    frame = _three_cause_file()
    frame.loc[6, "event_code"] = 4
    with pytest.raises(SchemaValidationError) as caught:
        validate_frame(frame, task.schema)
    assert [(p.row, p.column) for p in caught.value.problems] == [(7, "event_code")]
    assert "0 (censored) to 3" in caught.value.problems[0].rule


def test_a_single_event_folder_without_python_gives_one_cause(tmp_path):
    single = GOOD_SPEC.replace('kind = "competing_risks"', 'kind = "single_event"')
    single = single.split("[[causes]]\ncode = 2")[0]  # keep cause 1 only
    single += (GOOD_SPEC[GOOD_SPEC.index("[[endpoints]]"):GOOD_SPEC.index("[[endpoints]]\nname = \"death")]
               + GOOD_SPEC[GOOD_SPEC.index("[[predictors]]"):])
    task = load_task(_folder(tmp_path, single, "one_cause"))
    frame = _three_cause_file().assign(event_code=lambda f: (f["event_code"] > 0).astype(int))
    months, event = task.cause_targets(validate_frame(frame, task.schema))["relapse"]
    assert event.sum() == int(frame["event_code"].sum())
    assert list(task.endpoint_targets(validate_frame(frame, task.schema))) == ["relapse"]


def test_make_validate_checks_a_file_against_a_folder_without_python(tmp_path, monkeypatch, capsys):
    from training import cli

    monkeypatch.setitem(TASKS, "three_causes", load_task(_folder(tmp_path, GOOD_SPEC)))
    monkeypatch.chdir(tmp_path)
    _three_cause_file().to_csv("three.csv", index=False)
    assert cli.main(["validate", "--task", "three_causes", "--data", "three.csv"]) == 0
    out = capsys.readouterr().out
    # 30 rows, codes 0,1,2,3 in turn: 22 events (not the sum of the codes), 7 or 8 of each cause
    assert "30 patients, 22 events (event_code = 1..3)" in out
    assert "relapse 8, death_in_remission 7, graft_failure 7, event_free 22" in out


def test_trained_by_default_without_a_generator_is_refused_with_its_line(tmp_path):
    text = GOOD_SPEC.replace("default_cohort_size = 60", "default_cohort_size = 60\ntrained_by_default = true")
    with pytest.raises(TaskSpecError, match=rf"line {_line(text, 'trained_by_default')}, trained_by_default: needs"):
        load_task(_folder(tmp_path, text))


def test_a_column_named_twice_is_refused(tmp_path):
    text = GOOD_SPEC.replace('name = "risk_group"', 'name = "age_years"')
    with pytest.raises(TaskSpecError, match="predictors: name 'age_years' is used more than once"):
        load_spec(_folder(tmp_path, text))


def test_a_broken_spec_among_the_tasks_ends_the_command_with_its_problems_not_a_traceback(tmp_path):
    from features.tasks import tasks_or_exit

    _folder(tmp_path, GOOD_SPEC)
    _folder(tmp_path, GOOD_SPEC.replace("main_horizon_months = 12", "main_horizon_months = 13"), "broken")
    with pytest.raises(SystemExit) as caught:
        tasks_or_exit(tmp_path)
    message = caught.value.code  # SystemExit(str): Python prints it to stderr, exits 1, shows no traceback
    assert isinstance(message, str) and "broken/task.toml" in message
    assert f"line {_line(GOOD_SPEC, 'main_horizon_months')}, main_horizon_months: must be one of" in message
    assert list(tasks_or_exit(tmp_path / "none")) == []


def test_examples_must_fit_their_column(tmp_path):
    text = GOOD_SPEC.replace("example = 50.0", "example = 95.0").replace('example = "low"', 'example = "medium"')
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, text))
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == [
        f"line {_line(text, '[[predictors]]', 0)}, predictors[0]",
        f"line {_line(text, '[[predictors]]', 1)}, predictors[1]"]
    assert "example 95.0 is not a number within minimum and maximum" in caught.value.problems[0]


def test_binary_event_coding_with_competing_causes_needs_the_folders_code(tmp_path):
    text = GOOD_SPEC.replace('event_column = "event_code"', 'event_column = "event_code"\nevent_coding = "binary"')
    with pytest.raises(TaskSpecError, match=r"outcome\.event_coding: 'binary' with several causes needs"):
        load_task(_folder(tmp_path, text))


def test_a_cause_column_needs_binary_coding_and_each_cause_its_own_labels_with_their_lines(tmp_path):
    text = (GOOD_SPEC.replace('event_column = "event_code"', 'event_column = "event_code"\ncause_column = "cause"')
            .replace('description = "relapse"', 'description = "relapse"\nlabels = ["Relapse", 1]')
            .replace('description = "death without a prior relapse"',
                     'description = "death without a prior relapse"\nlabels = ["relapse"]'))
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, text))
    assert caught.value.problems == [
        f"line {_line(text, 'cause_column')}, outcome.cause_column: a cause_column goes with event_coding = "
        '"binary" (the event column holds 0 = censored, 1 = an event)',
        f"line {_line(text, 'labels', 1)}, causes[1].labels: label 'relapse' is also a label of 'relapse'",
        f"line {_line(text, '[[causes]]', 2)}, causes[2].labels: which values of 'cause' mean 'graft_failure'? list "
        "them in labels",
    ]
    unused = GOOD_SPEC.replace('description = "relapse"', 'description = "relapse"\nlabels = ["relapse"]')
    with pytest.raises(TaskSpecError, match=r"causes\[0\]\.labels: labels are for an \[outcome\] cause_column"):
        load_spec(_folder(tmp_path, unused, "unused"))


# --- predictors_from: one task's predictors taken by a sibling folder --------------------------------------------

def _without_predictors(text: str, source: str) -> str:
    head, tail = text.split("[[predictors]]", 1)
    return head.replace('default_cohort_size = 60', f'default_cohort_size = 60\npredictors_from = "{source}"') + \
        "[[grouping]]" + tail.split("[[grouping]]", 1)[1]


def test_predictors_from_takes_a_sibling_tasks_predictors(tmp_path):
    _folder(tmp_path, GOOD_SPEC, "source")
    taking = load_spec(_folder(tmp_path, _without_predictors(GOOD_SPEC, "source"), "taking"))
    assert taking.predictors == load_spec(tmp_path / "source").predictors
    assert [p.name for p in taking.predictors] == ["age_years", "risk_group"]


def test_predictors_from_a_missing_task_or_beside_predictors_is_refused_with_its_line(tmp_path):
    text = _without_predictors(GOOD_SPEC, "nowhere")
    with pytest.raises(TaskSpecError, match=rf"line {_line(text, 'predictors_from')}, predictors_from: no task "
                                            "'nowhere' beside this one"):
        load_spec(_folder(tmp_path, text, "missing"))
    _folder(tmp_path, GOOD_SPEC, "source")
    both = GOOD_SPEC.replace('default_cohort_size = 60', 'default_cohort_size = 60\npredictors_from = "source"')
    with pytest.raises(TaskSpecError, match=r"predictors_from: give either predictors_from or \[\[predictors\]\]"):
        load_spec(_folder(tmp_path, both, "both"))
    _folder(tmp_path, _without_predictors(GOOD_SPEC, "circle_b"), "circle_a")
    _folder(tmp_path, _without_predictors(GOOD_SPEC, "circle_a"), "circle_b")
    with pytest.raises(TaskSpecError, match="circle_a -> circle_b -> circle_a: the predictors are taken in a circle"):
        load_spec(tmp_path / "circle_a")


GROUPS = """
[report]
age_bands = [40]

[[report.groups]]
name = "older_high_risk"
title = "patients aged 65 or over in the high-risk group"

[[report.groups.conditions]]
column = "age_years"
minimum = 65

[[report.groups.conditions]]
column = "risk_group"
categories = ["high"]
"""


def test_a_named_report_group_holds_its_conditions_and_its_patients(tmp_path):
    from risk_model.report_groups import belongs

    spec = load_spec(_folder(tmp_path, GOOD_SPEC + GROUPS))
    [group] = spec.report.groups
    plain = {"name": group.name, "title": group.title, "conditions": [c.model_dump() for c in group.conditions]}
    assert belongs(plain, {"age_years": 70, "risk_group": "high"})
    assert not belongs(plain, {"age_years": 64.9, "risk_group": "high"})
    assert not belongs(plain, {"age_years": 70, "risk_group": "low"})
    assert not belongs(plain, {"age_years": None, "risk_group": "high"})


def test_a_report_group_on_unknown_columns_or_categories_is_refused_with_its_path(tmp_path):
    text = GOOD_SPEC + GROUPS.replace('categories = ["high"]', 'categories = ["very_high"]').replace(
        'column = "age_years"', 'column = "weight_kg"')
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, text))
    reasons = [p.split(", ", 1)[1] for p in caught.value.problems]
    assert "report.groups[0].conditions[0].column: 'weight_kg' is not a predictor" in reasons
    assert "report.groups[0].conditions[1].categories: not categories of 'risk_group': ['very_high']" in reasons
    both = GOOD_SPEC + GROUPS.replace("minimum = 65", 'minimum = 65\ncategories = ["x"]')
    with pytest.raises(TaskSpecError, match="either categories or a range"):
        load_spec(_folder(tmp_path, both, "both"))


# --- comparators and nested models: today's tools and MRD kinetics, declared in the spec ----------------------

COMPARISON = """
[[comparators]]
name = "risk_rule"
title = "Risk-group rule"
kind = "groups"
function = "risk_rule_group"
groups = ["standard", "high"]
high_intensity = ["high"]

[[comparators]]
name = "age_index"
title = "Age index, refitted"
kind = "index"
predictors = ["age_years"]
high_intensity_share = 0.25

[[nested_models]]
name = "age_then_group"
title = "Risk group beyond age"
by = "risk_group"
steps = [["age_years"], ["spline(age_years)"]]
"""


def test_comparators_and_nested_models_are_read_from_the_spec(tmp_path):
    spec = load_spec(_folder(tmp_path, GOOD_SPEC + COMPARISON))
    assert [c.name for c in spec.comparators] == ["risk_rule", "age_index"]
    assert spec.comparators[1].high_intensity_share == 0.25
    assert spec.nested_models[0].term_columns() == [("age_years", False), ("age_years", True)]


CENTRE_PREDICTOR = 'predictors = ["age_years", "centre"]'


def test_broken_comparators_and_nested_models_are_reported_with_their_lines(tmp_path):
    broken = (GOOD_SPEC + COMPARISON
              .replace('predictors = ["age_years"]', 'predictors = ["age_years", "centre"]')  # grouping never predicts
              .replace('by = "risk_group"', 'by = "age_years"')  # not a category
              .replace('["spline(age_years)"]', '["spline(risk_group)"]'))  # a spline of a category
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken))
    problems = caught.value.problems
    expected = [
        f"line {_line(broken, CENTRE_PREDICTOR)}, comparators[1].predictors: 'centre' is "
        "not a predictor",
        f"line {_line(broken, 'steps = ')}, nested_models[0].steps: spline(risk_group) needs a number predictor",
        f"line {_line(broken, 'by = ')}, nested_models[0].by: 'age_years' is not a category",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_each_comparator_says_how_its_high_intensity_class_is_set(tmp_path):
    broken = (GOOD_SPEC + COMPARISON.replace("high_intensity_share = 0.25", "")
              .replace('high_intensity = ["high"]', 'high_intensity = ["standard", "high"]'))
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken))
    assert caught.value.problems == [
        f"line {_line(broken, '[[comparators]]')}, comparators[0]: high_intensity must be some, not all, of the groups",
        f"line {_line(broken, '[[comparators]]', 1)}, comparators[1]: an 'index' comparator needs exactly one of "
        "high_intensity_share and high_intensity_risk"]


def test_a_comparator_may_not_take_the_name_of_the_runs_own_models(tmp_path):
    broken = GOOD_SPEC + COMPARISON.replace('name = "age_index"', 'name = "xgboost_cox"')
    with pytest.raises(TaskSpecError, match=r"comparators\[1\]\.name: 'xgboost_cox' is reserved"):
        load_spec(_folder(tmp_path, broken))


def test_a_nested_step_repeating_a_term_is_refused(tmp_path):
    broken = GOOD_SPEC + COMPARISON.replace('["spline(age_years)"]', '["age_years"]')
    with pytest.raises(TaskSpecError, match=r"nested_models\[0\]: a term is added more than once"):
        load_spec(_folder(tmp_path, broken))


def test_a_comparator_rule_the_folder_does_not_register_is_named_with_its_line(tmp_path):
    text = GOOD_SPEC + COMPARISON
    with pytest.raises(TaskSpecError, match=rf"line {_line(text, 'function = ')}, comparators\[0\]\.function: no "
                                            "comparator 'risk_rule_group' is registered"):
        load_task(_folder(tmp_path, text))


def test_a_numbers_form_is_checked_with_its_line(tmp_path):
    broken = (GOOD_SPEC.replace("example = 50.0", 'example = 50.0\nspline_knots = 9\ncuts = [100.0]')
              .replace('example = "low"', 'example = "low"\ntransform = "log2"'))
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken))
    problems = caught.value.problems
    number = next(p for p in problems if p.startswith(f"line {_line(broken, '[[predictors]]')}, predictors[0]"))
    assert "spline_knots 9 must be 3 to 7 knots" in number and "cuts must be increasing values within" in number
    assert any(p.startswith(f"line {_line(broken, '[[predictors]]', 1)}, predictors[1]: transform, spline_knots and "
                            "cuts are only for kind 'number'") for p in problems), problems
    fine = GOOD_SPEC.replace("example = 50.0", 'example = 50.0\nspline_knots = 4\ncuts = [65.0]\ntransform = "log2"')
    (tmp_path / "fine").mkdir()
    age = load_spec(_folder(tmp_path / "fine", fine)).predictors[0]
    assert (age.spline_knots, age.cuts, age.transform) == (4, [65.0], "log2")


def test_a_required_boolean_predictor_may_be_a_stratum(tmp_path):
    flag = '[[predictors]]\nname = "tbi"\nkind = "boolean"\ndescription = "Total-body irradiation"\n\n[[grouping]]'
    text = (GOOD_SPEC.replace("[[grouping]]", flag, 1)
            .replace("default_cohort_size = 60", 'default_cohort_size = 60\nstrata = ["risk_group", "tbi"]'))
    assert load_task(_folder(tmp_path, text)).schema.strata == ("risk_group", "tbi")


def test_strata_name_required_categorical_predictors_with_their_line(tmp_path):
    text = GOOD_SPEC.replace("default_cohort_size = 60", 'default_cohort_size = 60\nstrata = ["risk_group"]')
    assert load_task(_folder(tmp_path, text)).schema.strata == ("risk_group",)
    broken = (GOOD_SPEC.replace("default_cohort_size = 60",
                                'default_cohort_size = 60\nstrata = ["age_years", "centre", "stage", "risk_group"]')
              .replace('example = "low"', 'example = "low"\nrequired = false'))
    with pytest.raises(TaskSpecError) as caught:
        load_spec(_folder(tmp_path, broken, name="broken"))
    where = f"line {_line(broken, 'strata = ')}, strata: "
    assert caught.value.problems == [
        f"{where}'age_years' is a number, not a categorical or boolean predictor",
        f"{where}'centre' is a grouping column: a request does not carry it, so no baseline could be picked",
        f"{where}'stage' is not a predictor of the task",
        f"{where}'risk_group' must be required: a patient without it has no baseline",
    ]
