"""`make score`: a whole file scored offline through the endpoint's prediction path gives the endpoint's answers."""

import math

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.tasks import get_task
from serving import score
from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.sample_tasks import COMPETING, COMPETING_ROUTE, SINGLE, SINGLE_ROUTE, slug

KEY = "score-key-0123456789"


@pytest.fixture(scope="module")
def client(served_models) -> TestClient:
    return TestClient(create_app(ChampionRegistry(served_models.models_dir, [SINGLE, COMPETING]), {"s": KEY}))


def registry_file(task: str, n: int, seed: int) -> pd.DataFrame:
    """A registry-like file: synthetic patients with their outcomes, grouping and a pseudonymous id."""
    frame = get_task(task).generate_cohort(n, seed)
    frame.insert(0, "patient_pseudo_id", [f"P{i:04d}" for i in range(n)])
    return frame


def request_body(row: pd.Series, task: str) -> dict:
    """The same patient as a JSON request: schema fields with a value, derived ones left to the service."""
    schema = get_task(task).schema
    derived = {name for name, _ in schema.derived_predictors}
    body = {}
    for field in (*schema.predictors, *schema.grouping):
        value = row.get(field.name)
        if field.name in derived or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        body[field.name] = {"number": float, "boolean": bool}.get(field.kind, str)(value)
    return body


def assert_row_matches_answer(row: pd.Series, answer: dict) -> None:
    assert row["model_version"] == answer["model"]["version"]
    for name, endpoint in answer["endpoints"].items():
        for h in endpoint["horizons"]:
            for key, suffix in (("probability", ""), ("lower", "_lower"), ("upper", "_upper")):
                value = row[f"{name}_{h['months']}m{suffix}"]
                if h[key] is None:
                    assert value is None or np.isnan(value)
                else:
                    assert value == pytest.approx(h[key], abs=1e-9), (name, h["months"], key)
    assert row["risk_group"] == answer["risk_group"]["label"]
    assert row["warning_codes"] == ";".join(w["code"] for w in answer["warnings"])


def test_scores_equal_the_endpoint_answers(client, served_models, tmp_path, capsys):
    frame = registry_file(SINGLE, 60, seed=11)
    frame.loc[5, "treatment_years"] = 99.0  # out of range
    frame.loc[9, ["response_years", "treatment_years"]] = [9.0, 5.0]  # breaks a cross-field rule
    frame.loc[12, "age_years"] = 93.0  # valid, outside the training range: a warning
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert score.main(["--task", slug(SINGLE), "--data", str(tmp_path / "in.csv"),
                       "--out", str(tmp_path / "out.parquet"), "--models-dir", str(served_models.models_dir),
                       "--chunk-rows", "25", "--explain"]) == 0
    progress = capsys.readouterr().err
    assert "scored 25/60 rows" in progress and "58 of 60 rows scored" in progress
    scores = pd.read_parquet(tmp_path / "out.parquet")
    assert len(scores) == 60 and list(scores["row"]) == list(range(1, 61))
    assert list(scores["patient_pseudo_id"]) == list(frame["patient_pseudo_id"])
    refused = scores[scores["status"] == "refused"]
    assert list(refused.index) == [5, 9]
    assert "treatment_years" in refused.loc[5, "error"] and "99" not in refused.loc[5, "error"]
    assert "outside_training_range" in scores.loc[12, "warning_codes"]
    for index in [0, 1, 12, 30, 59]:
        body = request_body(frame.loc[index], SINGLE)
        answer = client.post(f"{SINGLE_ROUTE}/predict", json=body, headers={"Authorization": f"Bearer {KEY}"}).json()
        assert_row_matches_answer(scores.loc[index], answer)
        for item in answer["contributions"]["items"]:
            assert scores.loc[index, f"pp_{item['feature']}"] == pytest.approx(item["percentage_points"], abs=1e-7)


def test_competing_risk_scores_equal_the_endpoint_answers(client, served_models, tmp_path):
    frame = registry_file(COMPETING, 12, seed=5)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    scores = score.score_file(COMPETING, tmp_path / "in.parquet", tmp_path / "out.csv", served_models.models_dir,
                              progress=lambda _: None)
    assert (scores["status"] == "ok").all()
    written = pd.read_csv(tmp_path / "out.csv")
    assert len(written) == 12
    for index in (0, 7):
        body = request_body(frame.loc[index], COMPETING)
        answer = client.post(f"{COMPETING_ROUTE}/predict", json=body, headers={"Authorization": f"Bearer {KEY}"}).json()
        assert_row_matches_answer(scores.loc[index], answer)


def test_a_file_with_unknown_or_identifying_columns_is_refused(served_models, tmp_path, capsys):
    frame = registry_file(SINGLE, 5, seed=3)
    frame["hospital_number"] = "H123"
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert score.main(["--task", SINGLE, "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.parquet"),
                       "--models-dir", str(served_models.models_dir)]) == 1
    assert "hospital_number" in capsys.readouterr().err and not (tmp_path / "o.parquet").exists()
    assert score.main(["--task", "nope", "--data", "x.csv", "--out", "o.parquet"]) == 2
