"""`make validate` and `make train DATA=...`: one report naming every problem, nothing trained from a bad file,
a good file said to be usable; the EBMT tasks are never part of the default training."""

import pandas as pd
import pytest

from features.synthetic_cml_tfr import generate_cml_tfr_cohort
from features.tasks import TASKS
from training import cli


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cml_tfr_cohort(60, seed=21)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory with its own MLflow store URI: whatever a command trains would land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return tmp_path


def four_problem_file(cohort: pd.DataFrame, folder) -> str:
    broken = cohort.astype(object).copy()
    broken.loc[4, "tki_years"] = "seven"  # wrong type
    broken.loc[9, "age_at_stop_years"] = 130  # out of range (18-100 years)
    broken.loc[14, "tki_at_stop"] = "aspirin"  # unknown category
    broken.insert(0, "hospital_number", [f"H{i:06d}" for i in range(len(broken))])  # identifier
    path = folder / "four_problems.csv"
    broken.to_csv(path, index=False)
    return str(path)


def test_good_file_is_usable_with_its_conversions(cohort, workdir, capsys):
    export = cohort.copy()
    export.insert(0, "patient_pseudo_id", [f"p{i}" for i in range(len(export))])
    export["tki_months"] = export.pop("tki_years") * 12
    export.to_csv(workdir / "good.csv", index=False)
    assert cli.main(["validate", "--task", "cml_tfr", "--data", "good.csv"]) == 0
    out = capsys.readouterr().out
    events = int(cohort["relapsed"].sum())
    assert f"OK: good.csv is usable for cml_tfr: {len(cohort)} patients, {events} events" in out
    assert "tki_months -> tki_years (x 0.0833333)" in out
    assert "patient_pseudo_id read and dropped" in out
    assert not (workdir / "mlruns").exists() and not (workdir / "models").exists()


def test_bad_file_gets_one_report_naming_all_four_problems(cohort, workdir, capsys):
    path = four_problem_file(cohort, workdir)
    assert cli.main(["validate", "--task", "cml_tfr", "--data", path]) == 2
    report = capsys.readouterr().err
    assert "4 problem(s) in the cml_tfr file" in report
    assert "row 5, column 'tki_years', value 'seven': must be a number" in report
    assert "row 10, column 'age_at_stop_years', value '130': must be <= 100" in report
    assert "row 15, column 'tki_at_stop', value 'aspirin': unknown category" in report
    assert "column 'hospital_number': direct identifier" in report
    assert "H000001" not in report  # identifier values are never echoed
    assert "NOT USABLE" in report


def test_train_on_the_bad_file_trains_nothing(cohort, workdir, capsys):
    path = four_problem_file(cohort, workdir)
    assert cli.main(["train", "--task", "cml_tfr", "--data", path, "--trials", "1"]) == 2
    report = capsys.readouterr().err
    assert "4 problem(s)" in report and "nothing was trained" in report
    for text in ("'seven'", "'130'", "'aspirin'", "hospital_number"):
        assert text in report
    assert not (workdir / "mlruns").exists() and not (workdir / "models").exists()


@pytest.mark.parametrize("command", ["train", "validate"])
def test_data_without_task_is_refused_and_lists_the_tasks(command, workdir, capsys):
    assert cli.main([command, "--data", "registry.csv"]) == 2
    err = capsys.readouterr().err
    assert all(task in err for task in TASKS)


def test_validate_without_data_for_a_synthetic_task_asks_for_it(workdir, capsys):
    assert cli.main(["validate", "--task", "cml_tfr"]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_validate_of_the_public_ebmt_extract(workdir, capsys):
    assert cli.main(["validate", "--task", "ebmt_hsct"]) == 0
    out = capsys.readouterr().out
    assert "No clinical conclusions should be drawn from these data" in out
    assert "usable for ebmt_hsct: 2204 patients, 841 events" in out
    assert "rfs_days -> rfs_months" in out
    assert (workdir / "data" / "ebmt_hsct_mstate_ebmt3.csv").exists()


def test_real_data_tasks_only_by_name():
    assert cli.DEFAULT_TASKS == ("cml_tfr", "all_hsct")
    assert TASKS["ebmt_hsct"].public_extract is not None and TASKS["cml_tfr"].public_extract is None
