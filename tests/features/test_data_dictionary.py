"""The data dictionary is generated from the task schema, committed under docs/, and printed by the CLI."""

import pytest

from features.data_dictionary import DOCS_FOLDER, data_dictionary_markdown, dictionary_path
from features.tasks import TASKS
from tests.sample_tasks import SINGLE, registered
from training import cli


@pytest.mark.parametrize("task", sorted(TASKS))
def test_committed_dictionary_equals_the_generated_one(task):
    path = dictionary_path(task)
    assert path.exists(), f"{path} is missing: run `make data-dictionary` and commit docs/data-dictionary/"
    assert path.read_text() == data_dictionary_markdown(task), (
        f"{path} is stale: run `make data-dictionary` and commit it")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_field_of_the_schema_is_described(task):
    schema = TASKS[task].schema
    text = data_dictionary_markdown(task)
    for p in (*schema.predictors, *schema.grouping, *schema.extra_outcome_columns):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{p.name}` |"))
        assert p.description.split(" (")[0][:40] in row, p.name
        if p.kind == "category":
            assert all(f"`{c}`" in row for c in p.categories), p.name
        if p.kind == "number" and p.minimum is not None:
            assert f"{p.minimum:g} to {p.maximum:g}" in row, p.name
    for column in (schema.time_column, schema.event_column):
        assert f"| `{column}` |" in text
    for endpoint in schema.endpoint_names:
        assert f"- `{endpoint}`" in text
    assert "patient_pseudo_id" in text and "identif" in text and "dates of birth" in text
    for p in schema.predictors:  # a stratum column says it stratifies the baseline; no other does
        row = next(line for line in text.splitlines() if line.startswith(f"| `{p.name}` |"))
        assert ("stratifies the baseline" in row) == (p.name in schema.strata), p.name


def test_cli_prints_the_dictionary(capsys):
    with registered():  # a task folder's dictionary, whichever task it is: the sample one
        assert cli.main(["data-dictionary", "--task", SINGLE]) == 0
        printed = capsys.readouterr().out.strip()
        assert printed == data_dictionary_markdown(SINGLE).strip()
    assert "| `treatment_years` |" in printed


def test_cli_without_task_writes_every_dictionary(tmp_path, monkeypatch):
    import features.data_dictionary as dictionary

    monkeypatch.setattr(dictionary, "DOCS_FOLDER", tmp_path)
    assert cli.main(["data-dictionary"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.md" for t in TASKS)
    for task in TASKS:  # what the command writes is what is committed
        assert (tmp_path / f"{task}.md").read_text() == (DOCS_FOLDER / f"{task}.md").read_text(), task
