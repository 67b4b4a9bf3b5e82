"""The promotion gate from its one configuration: a run forced to fail a gate leaves the champion, its
champion.json and what serving loads untouched; `promote` and `rollback` move the alias by hand with the same
export; the model card travels in the bundle."""

import json
import shutil
from dataclasses import replace

import mlflow
import pytest
from mlflow import MlflowClient

from risk_model.bundle import BUNDLE_FILE, ModelBundle
from serving.champions import ChampionRegistry
from tests.sample_tasks import SINGLE, sample_tasks
from tests.stores import quick_settings, small_gates, small_settings
from training import registry_cli
from training.pipeline import run_training
from training.promotion import GATES_FILE, HISTORY_TAG, PromotionGates, load_gates

TASK = SINGLE  # promotion is mechanics of any task: the single-event sample task (tests/sample_tasks/)


@pytest.fixture(scope="module", autouse=True)
def _sample_tasks_registered(sample_tasks) -> None:
    """Training, promotion and serving find the sample task in the task registry."""


def test_gates_live_in_one_configuration():
    gates = load_gates()
    assert gates == PromotionGates(source=str(GATES_FILE))  # the file holds the clarified defaults
    assert gates.thresholds[0] == pytest.approx(0.05) and gates.thresholds[-1] == pytest.approx(0.60)
    params = gates.as_params()
    assert params["gate_config_slope_bounds"] == "[0.8, 1.25]" and params["gate_config_bootstrap_draws"] == 200


@pytest.fixture(scope="module")
def client(trained_store) -> MlflowClient:
    mlflow.set_tracking_uri(trained_store.tracking_uri)
    return MlflowClient(trained_store.tracking_uri)


@pytest.fixture(scope="module")
def failed_run(trained_store, client, tmp_path_factory):
    """A second training whose gate configuration asks for a calibration slope between 5 and 6. Afterwards the
    session's store is put back as it was (version deleted, challenger alias and champion.json restored), so
    the other tests see the same registry whatever the order. One tuning trial and two interval refits: what is
    checked here is the gate and the registry, not the tuning or the intervals of this version."""
    assert trained_store.summary.promoted, "the session's first run is the champion"
    pointer = trained_store.models_dir / TASK / "champion.json"
    before = {"pointer": pointer.read_text(), "alias": str(client.get_model_version_by_alias(TASK, "champion").version),
              "challenger": str(client.get_model_version_by_alias(TASK, "challenger").version)}
    strict = tmp_path_factory.mktemp("gates") / "strict_gates.toml"
    strict.write_text(GATES_FILE.read_text().replace("calibration_slope = [0.8, 1.25]",
                                                     "calibration_slope = [5.0, 6.0]"))
    settings = quick_settings(trained_store.root, n_trials=1, n_replicates=2)
    summary = run_training(settings, gates=small_gates(strict))
    yield summary, before
    client.delete_model_version(TASK, summary.version)
    client.set_registered_model_alias(TASK, "challenger", before["challenger"])
    shutil.rmtree(trained_store.models_dir / TASK / summary.version, ignore_errors=True)
    pointer.write_text(before["pointer"])


@pytest.mark.slow
def test_a_failed_gate_leaves_the_champion_serving(trained_store, client, failed_run):
    summary, before = failed_run
    assert not summary.promoted and "cal_slope" in summary.reason
    # The registry: the champion alias did not move; the new version is the challenger, tagged as such.
    assert str(client.get_model_version_by_alias(TASK, "champion").version) == before["alias"]
    assert str(client.get_model_version_by_alias(TASK, "challenger").version) == summary.version
    version = client.get_model_version(TASK, summary.version)
    assert version.tags["registry_alias"] == "challenger" and version.tags["promotion_decision"] == "not_promoted"
    assert version.tags["data_digest"] and version.tags["git_commit"]
    # The run records every gate's value, the configuration and the decision.
    run = client.get_run(summary.run_id)
    assert run.data.tags["promotion_decision"] == "not_promoted" and run.data.tags["registry_alias"] == "challenger"
    assert run.data.params["gate_config_slope_bounds"] == "[5.0, 6.0]"
    assert run.data.metrics["gate_cal_slope_ok"] == 0.0 and "gate_cal_slope_12m" in run.data.metrics
    assert "gate_uno_c_lower95" in run.data.metrics and "gate_net_benefit_ok" in run.data.metrics
    # Each evidence gate with its interval and band: the slope's cross-validated interval lies below 5.
    assert run.data.metrics["gate_cal_slope_12m_upper95"] < 5.0 == run.data.metrics["gate_cal_slope_12m_band_low"]
    assert "95 % CI" in run.data.tags["gate_cal_slope_12m"] and "FAIL" in run.data.tags["gate_cal_slope_12m"]
    # models/: champion.json is byte for byte what it was, and serving loads the old champion.
    pointer = trained_store.models_dir / TASK / "champion.json"
    assert pointer.read_text() == before["pointer"]
    assert not (trained_store.models_dir / TASK / summary.version).exists()
    served = ChampionRegistry(trained_store.models_dir, [TASK]).get(TASK)
    assert served.pointer["version"] == before["alias"] and served.bundle.lineage["version"] == before["alias"]


@pytest.mark.slow
def test_promote_and_rollback_by_hand_with_the_same_export(trained_store, client, failed_run, capsys):
    summary, before = failed_run
    old, new = before["alias"], summary.version
    common = ["--tracking-uri", trained_store.tracking_uri, "--models-dir", str(trained_store.models_dir)]
    pointer_path = trained_store.models_dir / TASK / "champion.json"
    registry = ChampionRegistry(trained_store.models_dir, [TASK])

    assert registry_cli.main([*common, "promote", "--task", TASK, "--version", new]) == 0
    assert "is now the champion" in capsys.readouterr().out
    pointer = json.loads(pointer_path.read_text())
    assert pointer["version"] == new and pointer["run_id"] == summary.run_id and "by hand" in pointer["note"]
    assert str(client.get_model_version_by_alias(TASK, "champion").version) == new
    exported = ModelBundle.load(trained_store.models_dir / TASK / new)
    assert exported.lineage["version"] == new and f"version **{new}**" in exported.model_card["markdown"]
    registry.refresh(force=True)
    assert registry.get(TASK).pointer["version"] == new
    assert client.get_model_version(TASK, old).tags["registry_alias"] == "former_champion"
    assert client.get_registered_model(TASK).tags[HISTORY_TAG].split(",")[-2:] == [old, new]

    assert registry_cli.main([*common, "rollback", "--task", TASK]) == 0
    assert json.loads(pointer_path.read_text())["version"] == old
    assert str(client.get_model_version_by_alias(TASK, "champion").version) == old
    assert client.get_model_version(TASK, old).tags["registry_alias"] == "champion"
    assert client.get_model_version(TASK, new).tags["registry_alias"] == "former_champion"
    registry.refresh(force=True)
    assert registry.get(TASK).pointer["version"] == old
    # Nothing before the first champion: a further rollback refuses and changes nothing.
    assert registry_cli.main([*common, "rollback", "--task", TASK]) == 1
    assert json.loads(pointer_path.read_text())["version"] == old
    assert registry_cli.main([*common, "promote", "--task", TASK, "--version", "999"]) == 1
    capsys.readouterr()
    assert registry_cli.main([*common, "status", "--task", TASK]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["champion"] == old and status["challenger"] == new and status["champion_history"][-1] == old


@pytest.mark.slow
def test_the_model_card_travels_in_the_bundle_and_old_bundles_still_load(trained_store, tmp_path):
    version = json.loads((trained_store.models_dir / TASK / "champion.json").read_text())["path"]
    folder = trained_store.models_dir / TASK / version
    card = ModelBundle.load(folder).model_card
    for section in ("## Intended use and users", "## Outcome", "## Data", "## Predictors", "## Missing data",
                    "## Validation design", "## Performance", "## Calibration", "## Clinical usefulness",
                    "## Subgroups", "## Promotion gate", "## Limitations", "## TRIPOD+AI items covered"):
        assert section in card["markdown"], section
    assert "monotone" in card["markdown"] and "missing-indicator" in card["markdown"]
    assert "slightly optimistic" in card["markdown"] and "bootstrap 95 %" in card["markdown"]
    assert card["html"].startswith("<!DOCTYPE html>") and "<table>" in card["html"]
    old = tmp_path / "old_bundle"
    shutil.copytree(folder, old)
    spec = json.loads((old / BUNDLE_FILE).read_text())
    spec.pop("model_card")
    (old / BUNDLE_FILE).write_text(json.dumps(spec))
    assert ModelBundle.load(old).model_card == {}


def test_a_champion_on_other_data_is_replaced_only_by_a_model_no_worse_than_the_cox_baseline(tmp_path):
    """A champion whose bundle cannot tell which new patients it trained on (here: none to read) is not compared
    head to head; the boosted model must then not be worse than the Cox baseline on the same data."""
    from features.task_schema import validate_frame
    from training.pipeline import _gate, complete_bundle, fit_family
    from training.promotion import GateResult
    from training.splits import hold_out_centres
    from training.tune import TuningResult

    task = sample_tasks()[TASK]
    schema = task.schema
    frame = validate_frame(task.generate_cohort(900, 17), schema)
    split = hold_out_centres(frame, schema.event_column, 0.3, 0)
    development = frame.iloc[split.development].reset_index(drop=True)
    held_out = frame.iloc[split.held_out].reset_index(drop=True)
    tuned = {"relapse": TuningResult({"eta": 0.05, "max_depth": 1}, 100, 0.6, 0)}
    cox, boosted = (complete_bundle(fit_family(f, task, development, tuned, 0), development, schema, 0)
                    for f in ("cox_ph", "xgboost_cox"))
    (tmp_path / TASK).mkdir()
    (tmp_path / TASK / "champion.json").write_text(json.dumps({"version": "7", "path": "7", "data_digest": "other"}))
    settings = replace(small_settings(tmp_path), models_dir=tmp_path)
    targets = task.endpoint_targets(held_out)
    gates = PromotionGates(net_benefit_range=(0.05, 0.95, 0.05))
    for bundle in (cox, boosted):
        passed = GateResult(bundle.family, {"cal_slope_ok": True}, [])
        decision = _gate(bundle, passed, held_out, targets, settings, "new-digest", gates, cox,
                         (frame, split, schema.event_column))
        assert "head-to-head comparison not possible" in decision.reason
        assert "compared with the Cox baseline on the same data only" in decision.reason
        if bundle is boosted:
            assert {"baseline_delta_uno_c", "baseline_delta_uno_c_lower95",
                    "not_worse_than_cox_baseline_ok"} <= set(decision.gates)
        else:
            assert "not_worse_than_cox_baseline_ok" not in decision.gates
