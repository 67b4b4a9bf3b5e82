"""`make validate` and `make train DATA=...` on cml_tfr's file: one report naming every problem, nothing trained
from a bad file, a good file said to be usable with its unit conversions and its export format."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tasks import TASKS
from tasks.cml_tfr.generator import generate_cml_tfr_cohort
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


# --- registry exports as they come, one report for validate and train -----------------------------------------

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line as `make` runs it, in its own process (a traceback would show on standard error)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlruns/mlflow.db"}
    return subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


EMPTY = b""
EMPTY_SENTENCE = "the file is empty: export it again with a header row of column names and one row per patient"


def assert_one_sentence(command: str, stderr: str, sentence: str) -> None:
    assert "Traceback" not in stderr and "Error" not in stderr
    assert f"NOT USABLE: export.csv cannot be read: {sentence}" in stderr
    expected_lines = 2 if command == "train" else 1  # train adds "nothing was trained."
    assert len(stderr.strip().splitlines()) == expected_lines, stderr


@pytest.mark.parametrize(("content", "sentence"), [
    (EMPTY, EMPTY_SENTENCE),
    (b"age_at_stop_years;sex;tki_years;dmr_years\n",
     "the file has a header row but no patient rows: export it again with one row per patient under the header"),
])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_unreadable_files_get_one_sentence_and_no_traceback(workdir, capsys, command, content, sentence):
    """In this process (an exception would fail the test): the report and its exit code."""
    (workdir / "export.csv").write_bytes(content)
    extra = ["--trials", "1"] if command == "train" else []
    assert cli.main([command, "--task", "cml_tfr", "--data", "export.csv", *extra]) == 2
    assert_one_sentence(command, capsys.readouterr().err, sentence)
    assert not (workdir / "mlruns").exists()


def test_the_command_line_process_says_it_in_one_sentence(workdir):
    """`make train` as a user runs it, in its own process: standard error holds the sentence and nothing else (no
    traceback, no library warning printed on the way); one command, since the report is the same for the others."""
    (workdir / "export.csv").write_bytes(EMPTY)
    done = run_cli("train", "--task", "cml_tfr", "--data", "export.csv", "--trials", "1", cwd=workdir)
    assert done.returncode == 2
    assert_one_sentence("train", done.stderr, EMPTY_SENTENCE)
    assert not (workdir / "mlruns").exists()


def test_a_european_spreadsheet_export_validates_and_the_format_is_said(cohort, workdir, capsys):
    export = cohort.copy()
    export["centre"] = "Créteil-" + export["centre"].str[-2:]
    export = export.rename(columns={"sokal_risk": "Sokal_Risk"})
    export.to_csv(workdir / "registre.csv", sep=";", decimal=",", index=False, encoding="latin-1")
    assert cli.main(["validate", "--task", "cml_tfr", "--data", "registre.csv"]) == 0
    out = capsys.readouterr().out
    assert f"OK: registre.csv is usable for cml_tfr: {len(cohort)} patients" in out
    assert ("  read as: CSV, separator ';' (semicolon, detected), decimal comma (detected), encoding Latin-1 "
            "(ISO-8859-1) (detected)") in out
    assert "  note: column 'Sokal_Risk' read as 'sokal_risk' (case or surrounding spaces differ)" in out
    assert "centre and country hold codes" in out


def test_train_and_validate_print_the_same_report(cohort, workdir, capsys):
    path = four_problem_file(cohort, workdir)
    assert cli.main(["validate", "--task", "cml_tfr", "--data", path]) == 2
    validated = capsys.readouterr().err
    assert cli.main(["train", "--task", "cml_tfr", "--data", path, "--trials", "1"]) == 2
    trained = capsys.readouterr().err
    assert trained == validated + "nothing was trained.\n"


def test_format_options_reach_the_loader_and_the_run(cohort, workdir, capsys):
    from training.config import TrainSettings
    from training.pipeline import load_cohort

    cohort.to_csv(workdir / "pipes.txt", sep="|", decimal=",", index=False, encoding="cp1252")
    assert cli.main(["validate", "--task", "cml_tfr", "--data", "pipes.txt", "--sep", "pipe", "--decimal", ",",
                     "--encoding", "cp1252"]) == 0
    assert "separator '|' (pipe, given), decimal comma (given), encoding cp1252 (given)" in capsys.readouterr().out
    settings = TrainSettings(task="cml_tfr", data_path="pipes.txt", separator="|", decimal=",", encoding="cp1252")
    cohort_read = load_cohort(settings, TASKS["cml_tfr"].schema)
    assert cohort_read.file_format == ("CSV, separator '|' (pipe, given), decimal comma (given), encoding cp1252 "
                                       "(given)")
    np.testing.assert_allclose(cohort_read.frame["tki_years"], cohort["tki_years"])


def test_centre_names_are_refused_before_anything_is_logged(cohort, workdir, capsys):
    names = [f"{first} {last}" for first in ("Anna", "Jean", "Marie", "Paul", "Eva", "Hugo")
             for last in ("Dupont", "Muller", "Rossi", "Garcia", "Novak", "Berg", "Silva", "Moreau", "Weber",
                          "Costa")][:len(cohort)]
    cohort.assign(centre=names).to_csv(workdir / "named.csv", index=False)
    assert cli.main(["train", "--task", "cml_tfr", "--data", "named.csv", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "column 'centre': direct identifier" in err and "person names" in err
    assert not any(name in err for name in names)
    assert not (workdir / "mlruns").exists() and not (workdir / "models").exists()
