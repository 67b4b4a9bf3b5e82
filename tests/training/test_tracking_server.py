"""`make tracking-server` on a real PostgreSQL (tests/postgres.py): two client processes, as on two hosts, log
through MLFLOW_TRACKING_URI=http://... into one experiment, their artifacts proxied into the server's artifact
root, their runs in the PostgreSQL database."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.postgres import free_port, running_postgres

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    yield from running_postgres()


ROOT = Path(__file__).resolve().parents[2]
CLIENT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import mlflow

    from training.config import TrainSettings
    from training.run_note import task_experiment

    uri, name, folder = sys.argv[1:]
    mlflow.set_tracking_uri(uri)
    experiment = task_experiment(mlflow, TrainSettings(tracking_uri=uri))  # the trainer's own choice of experiment
    with mlflow.start_run(experiment_id=experiment, run_name=name):
        mlflow.set_tag("client", name)
        mlflow.log_metric("cv_harrell_c", 0.7)
        note = Path(folder) / f"{name}.txt"
        note.write_text(f"logged by {name}")
        mlflow.log_artifact(str(note), "notes")
""")


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracking")
    store, artifacts, port = postgres.create_database("mlflow"), folder / "artifacts", free_port()
    log = folder / "server.log"
    command = [
        "make",
        "--no-print-directory",
        "tracking-server",
        f"TRACKING_STORE={store}",
        f"ARTIFACTS={artifacts}",
        f"TRACKING_PORT={port}",
        "TRACKING_WORKERS=1",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tracking server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, store, artifacts
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make, mlflow and its workers: our own process group only
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_runs_from_two_processes_land_in_one_experiment_on_one_server(tracking_server, tmp_path):
    import mlflow
    import sqlalchemy

    from training.config import TrainSettings

    base, store, artifacts = tracking_server
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": base}
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, base, name, str(tmp_path)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("host_a", "host_b")
    ]
    # A limit for a hang, not a speed check: each client imports mlflow, slow on a loaded machine.
    outputs = [c.communicate(timeout=300)[0] for c in clients]
    assert [c.returncode for c in clients] == [0, 0], outputs

    client = mlflow.MlflowClient(tracking_uri=base)
    task = TrainSettings().task
    experiments = [e for e in client.search_experiments() if e.name == task]
    assert len(experiments) == 1
    assert experiments[0].artifact_location.startswith("mlflow-artifacts:"), experiments[0].artifact_location
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.data.tags["client"] for r in runs) == ["host_a", "host_b"]
    for run in runs:
        name = run.data.tags["client"]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == [f"notes/{name}.txt"]
        assert (
            artifacts / experiments[0].experiment_id / run.info.run_id / "artifacts" / "notes" / f"{name}.txt"
        ).read_text() == f"logged by {name}"
    # The runs live in PostgreSQL, not in a file store on either client.
    engine = sqlalchemy.create_engine(store)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("select count(*) from runs")).scalar() == 2
    engine.dispose()
