"""`make validate` and `make train DATA=...` across the tasks: without a task both list every task, a synthetic
task asks for its file, and a task trained on a public extract is never part of the default training. A task's own
file (one report naming every problem, nothing trained from a bad file) is tested in its folder."""

import pytest

from features.tasks import TASKS
from tests.sample_tasks import SINGLE, registered
from training import cli


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory with its own MLflow store URI: whatever a command trains would land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return tmp_path


@pytest.mark.parametrize("command", ["train", "validate"])
def test_data_without_task_is_refused_and_lists_the_tasks(command, workdir, capsys):
    assert cli.main([command, "--data", "registry.csv"]) == 2
    err = capsys.readouterr().err
    assert all(task in err for task in TASKS)


def test_validate_without_data_for_a_synthetic_task_asks_for_it(workdir, capsys):
    with registered():  # a task trained on its generator by default: the sample one
        assert cli.main(["validate", "--task", SINGLE]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_real_data_tasks_only_by_name():
    # A task trained on a public extract is trained when named, never by a plain `make train`, whose tasks train
    # on their synthetic generator.
    with_extract = {name for name, task in TASKS.items() if task.public_extract is not None}
    assert cli.DEFAULT_TASKS and not with_extract & set(cli.DEFAULT_TASKS)


def test_the_plots_choice_reaches_the_run_and_a_wrong_one_is_refused(workdir, monkeypatch, capsys):
    from training.config import TrainSettings
    from training.mlflow_store import StoreLocationError

    seen = []

    def record(settings):
        seen.append(settings.plots)
        raise StoreLocationError("recorded")  # the command stops here, before anything is tuned

    monkeypatch.setattr("training.pipeline.run_training", record)
    with registered():
        assert cli.main(["train", "--task", SINGLE, "--plots", "none"]) == 2
        assert cli.main(["train", "--task", SINGLE]) == 2
    assert seen == ["none", "all"]
    with pytest.raises(SystemExit):
        cli.main(["train", "--plots", "some"])
    assert "invalid choice: 'some'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="plots must be one of all, main, none, not 'some'"):
        TrainSettings(plots="some")
