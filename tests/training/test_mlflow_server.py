"""What a researcher sees: a real `mlflow server` (one worker, loopback) over the store the session trained,
queried through MLflow's REST API with plain HTTP. Runs, metric names, tags and artifacts must be there."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.sample_tasks import SINGLE
from tests.stores import N_TRIALS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_store, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("mlflow_server") / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as the Makefile starts its servers
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               trained_store.tracking_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its worker: our own process group only
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def get(base: str, endpoint: str, **query: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as a:
        return json.loads(a.read())


def post(base: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def as_dict(items: list[dict]) -> dict:
    return {item["key"]: item["value"] for item in items}


def listing(base: str, run_id: str, path: str = "") -> set[str]:
    answer = get(base, "artifacts/list", run_id=run_id, **({"path": path} if path else {}))
    return {f["path"] for f in answer.get("files", [])}


def test_runs_metrics_tags_and_artifacts_through_the_rest_api(server, trained_store):
    summary = trained_store.summary
    experiment = get(server, "experiments/get-by-name", experiment_name=SINGLE)["experiment"]
    parents = post(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                           "filter": "tags.role = 'pipeline'", "max_results": 50})["runs"]
    parent = next(r for r in parents if r["info"]["run_id"] == summary.run_id)
    tags, metrics = as_dict(parent["data"]["tags"]), as_dict(parent["data"]["metrics"])
    params = as_dict(parent["data"]["params"])
    # A readable name, lineage, the design statements and the registry status.
    assert tags["mlflow.runName"].startswith(f"{SINGLE} ") and "seed 42" in tags["mlflow.runName"]
    assert len(tags["data_digest"]) == 16 and tags["git_commit"]
    assert tags["registry_alias"] in ("champion", "former_champion", "challenger")
    assert tags["promotion_decision"] == "promoted" and tags["registered_family"] in ("cox_ph", "xgboost_cox")
    assert "leave-one-centre-out over 8 centres" in tags["validation_design"]  # the sample generator's eight
    assert "slightly optimistic" in tags["validation_note"]
    assert f"{trained_store.gates.bootstrap_draws} draws" in tags["bootstrap_design"]
    assert "gate_config_slope_bounds" in params
    # Headline metrics with intervals, pooled internal-external estimates, calibration beyond O/E.
    for name in ("uno_c", "uno_c_lower95", "uno_c_upper95", "harrell_c", "ibs", "auc_12m", "brier_12m",
                 "cal_slope_12m", "cal_oe_12m", "cal_intercept_12m", "ici_12m", "e50_12m", "ici_12m_lower95",
                 "pooled_uno_c", "pooled_uno_c_lower95", "pooled_uno_c_pi_lower95", "pooled_uno_c_i2",
                 "pooled_cal_oe_12m", "pooled_cal_slope_12m", "validation_seconds", "gate_uno_c_lower95"):
        assert name in metrics, name
    assert metrics["uno_c_lower95"] < metrics["uno_c"] < metrics["uno_c_upper95"]

    children = post(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                            "filter": f"tags.mlflow.parentRunId = '{summary.run_id}'",
                                            "max_results": 200})["runs"]
    roles = {}
    for child in children:
        child_tags = as_dict(child["data"]["tags"])
        assert child_tags["git_commit"] == tags["git_commit"] and child_tags["data_digest"] == tags["data_digest"]
        roles.setdefault(child_tags["role"], []).append(child)
    assert len(roles["tuning_trial"]) == N_TRIALS and len(roles["baseline"]) == 1 and len(roles["candidate"]) == 1
    families = {as_dict(r["data"]["tags"])["family"]: as_dict(r["data"]["metrics"])
                for r in roles["baseline"] + roles["candidate"]}
    held_out = {name: {k for k in m if not k.startswith("pooled_") and "95" not in k} for name, m in families.items()}
    assert held_out["cox_ph"] == held_out["xgboost_cox"]  # the same names for both families
    assert all("pooled_uno_c" in m and "pooled_cal_slope_12m" in m for m in families.values())
    assert {as_dict(r["data"]["tags"])["registered"] for r in roles["baseline"] + roles["candidate"]} == {
        "true", "false"}

    run_id = summary.run_id
    assert {"model_card.md", "model_card.html", "promotion.json", "plots", "validation", "subgroups",
            "decision_curves"} <= listing(server, run_id)
    assert {"plots/calibration", "plots/decision_curves", "plots/forest", "plots/calibration_12m.png"} <= listing(
        server, run_id, "plots")
    assert {"plots/forest/forest_relapse_uno_c.png", "plots/forest/forest_relapse_cal_oe.png",
            "plots/forest/forest_relapse_cal_slope.png"} <= listing(server, run_id, "plots/forest")
    assert {"subgroups/subgroups.csv", "subgroups/subgroups.md"} <= listing(server, run_id, "subgroups")
    assert {"validation/per_cluster_metrics.csv", "validation/pooled_metrics.csv"} <= listing(
        server, run_id, "validation")
    query = urllib.parse.urlencode({"run_uuid": run_id, "path": "model_card.md"})
    with urllib.request.urlopen(f"{server}/get-artifact?{query}", timeout=30) as answer:
        card = answer.read().decode()
    assert "TRIPOD+AI" in card and tags["data_digest"] in card

    champion = get(server, "registered-models/alias", name=SINGLE, alias="champion")["model_version"]
    assert as_dict(champion["tags"])["registry_alias"] == "champion"
    challenger = get(server, "registered-models/alias", name=SINGLE, alias="challenger")["model_version"]
    assert as_dict(challenger["tags"])["promotion_decision"] in ("promoted", "not_promoted")
