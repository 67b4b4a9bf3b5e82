"""A registry without a disease column fills `disease_subclass = AML` for everyone to fit the `ebmt_hsct` schema.
Validation refuses the file while the made-up predictor is in it; dropped, the model trains without it, its card
and every answer say it could not learn from it, and AML and CML patients then honestly get the same risk."""

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from features.ebmt_registry import ebmt3_registry_file, read_mstate_extract
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from serving.api import create_app
from serving.champions import ChampionRegistry
from serving.score import score_file
from tests.stores import small_gates, tracking_store
from training import cli
from training.config import TrainSettings
from training.pipeline import run_training
from training.promotion import promote_version, read_champion

pytestmark = pytest.mark.slow  # trains ebmt_hsct models through the pipeline

TASK = "ebmt_hsct"
KEY = "test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
# ebmt3 holds transplants of 1995-1998 only: its transplant period is constant too.
DROPS = ("disease_subclass", "transplant_year_class")
PATIENT = {"age_class": "20-40", "donor_recipient_gender_mismatch": False, "t_cell_depletion": False,
           "transplant_year_class": "1995-1998"}


@pytest.fixture(scope="module")
def made_up_file(tmp_path_factory):
    """The public ebmt3 extract as a registry that records no disease: AML for everyone."""
    root = tmp_path_factory.mktemp("constant")
    file = ebmt3_registry_file(read_mstate_extract("ebmt3")).assign(disease_subclass="AML")
    path = root / "no_disease_column.csv"
    file.to_csv(path, index=False)
    return root, path


@pytest.fixture(scope="module")
def trained(made_up_file):
    root, path = made_up_file
    settings = TrainSettings(task=TASK, data_path=str(path), seed=7, n_trials=1, n_folds=3, n_replicates=2,
                             tracking_uri=tracking_store(root), models_dir=root / "models",
                             data_dir=root / "data", quiet=True, drop_predictors=DROPS,
                             plots="none")  # no test reads a figure
    summary = run_training(settings, gates=small_gates())  # nor an interval's width: 50 draws, not 200
    if not summary.promoted:  # the gate is not what this test is about: serve the version by hand
        promote_version(TASK, summary.version, settings.models_dir, settings.tracking_uri)
    pointer = read_champion(settings.models_dir, TASK)
    bundle = ModelBundle.load(settings.models_dir / TASK / pointer["path"])
    return settings, summary, bundle


def test_validation_reports_the_constant_predictor_with_its_share_and_how_to_drop_it(made_up_file):
    _, path = made_up_file
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, TASKS[TASK].schema)
    by_column = {p.column: p for p in raised.value.problems}
    assert set(by_column) == set(DROPS)
    rule = by_column["disease_subclass"].rule
    assert "the same value (AML) for all 2204 patients" in rule
    assert "--drop-predictor disease_subclass" in rule and "DROP=disease_subclass" in rule


def test_a_nearly_constant_predictor_is_reported_too(made_up_file, tmp_path):
    _, path = made_up_file
    frame = pd.read_csv(path, dtype=str)
    frame.loc[:14, "disease_subclass"] = "CML"  # 15 of 2204 (0.7 %): 99.3 % still AML
    nearly = tmp_path / "nearly.csv"
    frame.to_csv(nearly, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(nearly, TASKS[TASK].schema, drop_predictors=("transplant_year_class",))
    [problem] = raised.value.problems
    assert problem.column == "disease_subclass" and "(AML) for 99.3 % of the 2204 patients" in problem.rule
    frame.loc[:30, "disease_subclass"] = "CML"  # 31 of 2204 (1.4 %): varies enough
    frame.to_csv(nearly, index=False)
    assert len(load_registry_file(nearly, TASKS[TASK].schema, ("transplant_year_class",)).frame) == 2204


def test_training_refuses_the_file_until_the_predictor_is_dropped(made_up_file, monkeypatch, capsys):
    root, path = made_up_file
    monkeypatch.chdir(root)
    assert cli.main(["train", "--task", TASK, "--data", str(path), "--trials", "1"]) == 2
    report = capsys.readouterr().err
    assert "disease_subclass" in report and "nothing was trained" in report and "Traceback" not in report
    assert not (root / "models").exists()
    assert cli.main(["validate", "--task", TASK, "--data", str(path), "--drop-predictor", "disease_subclass",
                     "--drop-predictor", "transplant_year_class"]) == 0
    assert "dropped, so not learned from: disease_subclass, transplant_year_class" in capsys.readouterr().out


def test_a_dropped_required_predictor_may_be_absent_from_the_file(made_up_file, tmp_path):
    _, path = made_up_file
    without = tmp_path / "without.csv"
    pd.read_csv(path, dtype=str).drop(columns=["disease_subclass"]).to_csv(without, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(without, TASKS[TASK].schema, ("transplant_year_class",))
    assert "required column is missing" in str(raised.value)
    assert len(load_registry_file(without, TASKS[TASK].schema, DROPS).frame) == 2204


def test_the_model_does_not_use_the_dropped_predictors(trained):
    _, _, bundle = trained
    assert not set(DROPS) & set(bundle.feature_names)
    for cause in bundle.causes.values():
        assert not set(DROPS) & set(cause.preprocessor.sources)
    assert [item["name"] for item in bundle.not_learned] == list(DROPS)
    assert "the same value (AML) for all" in bundle.not_learned[0]["reason"]


def test_the_model_card_says_what_it_could_not_learn_from(trained):
    settings, summary, bundle = trained
    card = bundle.model_card["markdown"]
    section = card.split("### Predictors the model could not learn from", 1)[1].split("## Missing data", 1)[0]
    assert "| `disease_subclass` | the same value (AML) for all" in section
    assert "| `transplant_year_class` |" in section
    # The predictor table lists only what the model learned from (not disease_subclass with "0 %" missing).
    table = card.split("## Predictors", 1)[1].split("###", 1)[0]
    assert "`disease_subclass`" not in table and "`age_class`" in table
    tags = MlflowClient(settings.tracking_uri).get_run(summary.run_id).data.tags
    assert tags["not_learned_predictors"] == "disease_subclass,transplant_year_class"


def test_every_answer_says_so_and_the_dropped_field_has_no_effect(trained):
    settings, _, _ = trained
    client = TestClient(create_app(ChampionRegistry(settings.models_dir, [TASK]), {"local": KEY}))
    answers = {}
    for disease in ("AML", "CML"):
        response = client.post("/v1/ebmt-hsct/predict", json={**PATIENT, "disease_subclass": disease},
                               headers=HEADERS)
        assert response.status_code == 200, response.text
        answers[disease] = response.json()
    # Left out: still accepted, since this model does not need it.
    response = client.post("/v1/ebmt-hsct/predict", json=PATIENT, headers=HEADERS)
    assert response.status_code == 200, response.text
    answers["absent"] = response.json()
    for body in answers.values():
        assert body["endpoints"] == answers["AML"]["endpoints"]
        flagged = {w["field"]: w["message"] for w in body["warnings"] if w["code"] == "not_learned"}
        assert set(flagged) == set(DROPS)
        assert "has no effect" in flagged["disease_subclass"]
        assert not {item["feature"] for item in body["contributions"]["items"]} & set(DROPS)
    explained = client.post("/v1/ebmt-hsct/explain", json=PATIENT, headers=HEADERS).json()
    assert {w["field"] for w in explained["warnings"] if w["code"] == "not_learned"} == set(DROPS)
    # A predictor the model did learn from stays required.
    missing_age = client.post("/v1/ebmt-hsct/predict", json={k: v for k, v in PATIENT.items() if k != "age_class"},
                              headers=HEADERS)
    assert missing_age.status_code == 422
    assert missing_age.json()["fields"] == [{"location": "body.age_class", "reason": "Field required"}]
    info = client.get("/v1/ebmt-hsct/model", headers=HEADERS).json()
    assert info["lineage"]["not_learned_predictors"] == list(DROPS)
    assert "not_learned" in info["warning_codes"]


def test_offline_scoring_accepts_a_file_without_the_dropped_predictor(trained, tmp_path):
    settings, _, _ = trained
    path = tmp_path / "patients.csv"
    pd.DataFrame([PATIENT, {**PATIENT, "age_class": ">40"}]).to_csv(path, index=False)
    result = score_file(TASK, path, tmp_path / "scored.csv", settings.models_dir, progress=lambda _: None)
    assert list(result["status"]) == ["ok", "ok"]
    assert all("not_learned" in codes for codes in result["warning_codes"])
