"""A registry's own task, written as a folder with only a task.toml (three competing causes) and a CSV, no Python:
it validates, trains, registers, is promoted, serves, explains and appears on the page, with no file of the
repository changed (the folder lives in a temporary directory)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.tasks import TASKS, load_task
from tests.features.test_task_spec import GOOD_SPEC
from tests.stores import quick_settings, small_gates, tracking_store

pytestmark = pytest.mark.slow  # trains, registers and serves a task through the pipeline

KEY = "three-causes-key"
N_PATIENTS = 900


def three_cause_registry(n: int, seed: int = 11) -> pd.DataFrame:
    """Cause-specific exponential hazards that depend on age and risk group, uniform censoring, four centres."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n).round(1)
    high = rng.random(n) < 0.4
    rates = np.stack([0.020 * np.exp(0.9 * high), 0.008 * np.exp(0.03 * (age - 50)), 0.005 + 0 * age])
    times = rng.exponential(1 / rates)
    first = times.min(axis=0)
    censor = rng.uniform(6, 60, n)
    return pd.DataFrame({
        "age_years": age, "risk_group": np.where(high, "high", "low"),
        "centre": rng.choice(["C01", "C02", "C03", "C04", "C05", "C06"], n),
        "months_to_event": np.minimum(first, censor).round(2),
        "event_code": np.where(first <= censor, times.argmin(axis=0) + 1, 0),
    })


@pytest.fixture(scope="module")
def trained_three_causes(tmp_path_factory):
    root = tmp_path_factory.mktemp("three_causes")
    folder = root / "tasks" / "three_causes"
    folder.mkdir(parents=True)
    (folder / "task.toml").write_text(GOOD_SPEC)
    data = root / "three_causes.csv"
    three_cause_registry(N_PATIENTS).to_csv(data, index=False)
    patch = pytest.MonkeyPatch()
    patch.setitem(TASKS, "three_causes", load_task(folder))
    from training.pipeline import run_training

    settings = replace(quick_settings(root), task="three_causes", data_path=str(data), n_patients=None,
                       n_replicates=2, n_trials=1)
    tracking_store(root)
    summary = run_training(settings, gates=small_gates())
    if not summary.promoted:  # the gates judge a small file; a human may still promote it, as here
        from training.promotion import promote_version

        promote_version("three_causes", summary.version, settings.models_dir, settings.tracking_uri)
    yield root, settings, summary
    patch.undo()


def test_it_trains_registers_and_reports_every_endpoint(trained_three_causes):
    root, settings, summary = trained_three_causes
    assert summary.version is not None
    assert (settings.models_dir / "three_causes" / "champion.json").exists()
    metric_names = set(summary.metrics["cox_ph"])  # the main endpoint's plain, the others' prefixed
    assert "uno_c" in metric_names
    assert {f"{name}_uno_c" for name in ("death_in_remission", "graft_failure", "event_free")} <= metric_names


@pytest.fixture(scope="module")
def client(trained_three_causes):
    from serving.api import create_app
    from serving.champions import ChampionRegistry

    root, settings, summary = trained_three_causes
    champions = ChampionRegistry(settings.models_dir, list(TASKS))
    champions.refresh(force=True)
    return TestClient(create_app(champions, {"test": KEY}))


def test_it_serves_every_declared_endpoint_coherently(client):
    headers = {"Authorization": f"Bearer {KEY}"}
    response = client.post("/v1/three-causes/predict", json={"age_years": 70, "risk_group": "high"}, headers=headers)
    assert response.status_code == 200, response.text
    endpoints = response.json()["endpoints"]
    assert set(endpoints) == {"relapse", "death_in_remission", "graft_failure", "event_free"}
    for index in range(2):  # 12 and 24 months: the three incidences and event-free survival add up to 1
        total = sum(endpoints[name]["horizons"][index]["probability"]
                    for name in ("relapse", "death_in_remission", "graft_failure", "event_free"))
        assert total == pytest.approx(1.0, abs=1e-9)
    explained = client.post("/v1/three-causes/explain", headers=headers,
                            json={"age_years": 70, "risk_group": "high",
                                  "explain": {"endpoint": "graft_failure", "horizon_months": 12}})
    assert explained.status_code == 200, explained.text
    answer = explained.json()
    assert answer["endpoint"] == "graft_failure"
    # Its words are its spec's, carried by its bundle: in the answer and in what the page reads.
    assert answer["explained"] == "probability of graft failure by 12 months"
    labels = client.get("/v1/three-causes/model", headers=headers).json()["labels"]
    assert labels["endpoints"]["graft_failure"] == {"kind": "incidence", "title": "Graft failure",
                                                    "phrase": "graft failure"}
    assert sum(i["percentage_points"] for i in answer["items"]) == pytest.approx(
        100 * (answer["probability"] - answer["base_value"]), abs=1e-6)


def test_it_appears_in_the_api_document_the_page_reads(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/three-causes/predict", "/v1/three-causes/explain", "/v1/three-causes/model"} <= set(paths)
    assert Path(__file__).exists()
