"""A trained working folder that is copied or moved reads and writes its own MLflow artifacts: MLflow records
absolute artifact locations, which `training.mlflow_store` points back into the folder before each run and
promotion. A database copied without its artifacts is refused with what to copy."""

import hashlib
import os
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.sample_tasks import SINGLE, SINGLE_PATIENT, SINGLE_ROUTE
from tests.stores import small_settings
from training import registry_cli
from training.mlflow_store import StoreLocationError, relocate_store
from training.run_note import task_experiment

pytestmark = pytest.mark.slow  # copies the session's trained store, then moves it

KEY = "test-key-0123456789"


def uri(folder: Path) -> str:
    """The folder's store (`make` names it relatively, sqlite:///mlruns/mlflow.db; MLflow caches a store per URI
    within a process, so here each folder gets its own absolute URI)."""
    return f"sqlite:///{folder}/mlruns/mlflow.db"


@pytest.fixture(scope="module", autouse=True)
def _sample_tasks_registered(sample_tasks) -> None:
    """Promotion and the app find the single-event sample task in the task registry."""


@pytest.fixture(scope="module")
def trained(trained_store, tmp_path_factory):
    """A trained working folder of its own: a copy of the session's store, pointed at itself as a copied store is
    before its first run (so it records absolute locations into its own folder, as a folder trained there does)."""
    base = tmp_path_factory.mktemp("folders")
    original = base / "original"
    shutil.copytree(trained_store.root, original)
    assert relocate_store(uri(original))  # the copy pointed into the session's store until now
    return base, original, trained_store.summary


def recorded_values(folder: Path) -> list[str]:
    """Every text value of the store's database."""
    connection = sqlite3.connect(folder / "mlruns" / "mlflow.db")
    try:
        values = []
        for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                values += [str(v) for (v,) in connection.execute(f'SELECT "{column[1]}" FROM "{table}"') if v]
        return values
    finally:
        connection.close()


def store_locations(folder: Path, other: Path) -> list[str]:
    """The recorded values that point into another folder's store."""
    return [v for v in recorded_values(folder) if str(other / "mlruns") in v]


def digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def promote_here(folder: Path, version: str, monkeypatch) -> int:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri(folder))
    mlflow.set_tracking_uri(uri(folder))
    return registry_cli.main(["promote", "--task", SINGLE, "--version", version])


def test_a_copied_folder_leaves_the_original_alone(trained, monkeypatch):
    base, original, summary = trained
    before = digest(original)
    assert store_locations(original, original)  # MLflow recorded absolute locations in the original
    copy = base / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(copy / "models")  # the export must come from the copy's own registry
    assert promote_here(copy, summary.version, monkeypatch) == 0
    assert (copy / "models" / SINGLE / "champion.json").exists()
    assert store_locations(copy, original) == []
    assert digest(original) == before  # nothing of the original was read into or written by the copy's work


def test_a_moved_folder_promotes_serves_and_writes_from_its_new_place(trained, monkeypatch):
    base, original, summary = trained
    moved = base / "moved"
    os.rename(original, moved)
    shutil.rmtree(moved / "models")
    assert promote_here(moved, summary.version, monkeypatch) == 0
    assert store_locations(moved, original) == []
    exported = [p for p in (moved / "models").rglob("*") if p.is_file()]
    assert exported and not [p for p in exported if str(original).encode() in p.read_bytes()]

    client = TestClient(create_app(ChampionRegistry(moved / "models", [SINGLE]), {"local": KEY}))
    response = client.post(f"{SINGLE_ROUTE}/predict", json=SINGLE_PATIENT, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == summary.version

    # What a new `make train` writes lands in the new place.
    experiment = task_experiment(mlflow, replace(small_settings(moved), tracking_uri=uri(moved)))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("probe", "probe.txt")
    assert run.info.artifact_uri.startswith((moved / "mlruns" / "artifacts").as_uri())
    assert (moved / "mlruns" / "artifacts" / SINGLE / run.info.run_id / "artifacts" / "probe.txt").exists()
    assert not original.exists()  # nothing recreated, read or written there


def test_a_database_without_its_artifacts_is_refused_and_left_unchanged(trained, tmp_path, monkeypatch):
    base, _, summary = trained
    source = base / "moved" if (base / "moved").exists() else base / "original"
    (tmp_path / "mlruns").mkdir()
    shutil.copy(source / "mlruns" / "mlflow.db", tmp_path / "mlruns" / "mlflow.db")
    before = digest(tmp_path)
    with pytest.raises(StoreLocationError, match="Copy or move the whole mlruns/ folder"):
        relocate_store(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert digest(tmp_path) == before
    assert promote_here(tmp_path, summary.version, monkeypatch) == 1
    assert not (tmp_path / "models").exists()
