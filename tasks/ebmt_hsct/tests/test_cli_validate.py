"""`make validate TASK=ebmt_hsct` on the public ebmt3 extract: fetched when absent, usable, with the extract's caveat
and its unit conversion said."""

import pytest

from training import cli


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder (no data/ yet) with its own MLflow store URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_of_the_public_ebmt_extract(workdir, capsys):
    assert cli.main(["validate", "--task", "ebmt_hsct"]) == 0
    out = capsys.readouterr().out
    assert "No clinical conclusions should be drawn from these data" in out
    assert "usable for ebmt_hsct: 2204 patients, 841 events" in out
    assert "rfs_days -> rfs_months" in out
    assert (workdir / "data" / "ebmt_hsct_mstate_ebmt3.csv").exists()


def test_the_readme_example_works_in_a_fresh_clone(workdir, capsys):
    """`make validate TASK=ebmt_hsct DATA=data/ebmt_hsct_mstate_ebmt3.csv` before anything wrote that file."""
    assert not (workdir / "data").exists()
    assert cli.main(["validate", "--task", "ebmt_hsct", "--data", "data/ebmt_hsct_mstate_ebmt3.csv"]) == 0
    out = capsys.readouterr().out
    assert "OK: data/ebmt_hsct_mstate_ebmt3.csv is usable for ebmt_hsct: 2204 patients" in out
    assert (workdir / "data" / "ebmt_hsct_mstate_ebmt3.csv").exists()
