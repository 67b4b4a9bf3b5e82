"""`make bento`: the real bentofile.yaml builds a Bento (into a temporary BENTOML_HOME) holding the serving code
without training/ and only the current champions, and `bentoml serve <tag>`, run outside the repository, answers a
prediction with the probabilities of the in-process prediction path."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from benchmarks.bento_ignore import write_bentoignore
from benchmarks.servers import stop_group

REPO = Path(__file__).resolve().parents[2]
KEY = "bento-key-ZXCVBNMASDFGHJKL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uv() -> str:
    found = shutil.which("uv") or (str(REPO / ".tools" / "bin" / "uv") if (REPO / ".tools/bin/uv").exists() else None)
    assert found, "uv is needed to export the requirements (make install puts it in .tools/bin)"
    return found


def _call(base: str, path: str, body: object = None, key: str | None = KEY) -> tuple[int, object]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        text, status = error.read(), error.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


def _probabilities(answer: dict) -> dict[tuple[str, int], float | None]:
    return {(name, h["months"]): h["probability"] for name, endpoint in answer["endpoints"].items()
            for h in endpoint["horizons"]}


def repository_task() -> str:
    """A task folder of the repository (what a Bento ships: the test-only sample tasks stay out of it), trained by
    default, whichever comes first."""
    from features.tasks import TASKS

    return next(name for name, task in TASKS.items()
                if (REPO / "tasks" / name / "task.toml").is_file() and task.spec and task.spec.trained_by_default)


@pytest.mark.slow
def test_bento_builds_and_serves_the_champion(tmp_path):
    from features.tasks import get_task
    from risk_model.bundle import ModelBundle
    from risk_model.prediction import predict_patients
    from serving.api import prepare_patients
    from serving.request_models import patient_request_model
    from tests.served_models import build_champion

    # The build context: the repository's packages and bentofile, a repository task's champion with an extra
    # version folder that no champion.json names, and the requirements exported from uv.lock.
    context = tmp_path / "context"
    context.mkdir()
    for package in ("serving", "features", "tasks", "risk_model", "training"):
        shutil.copytree(REPO / package, context / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "bentofile.yaml", context / "bentofile.yaml")
    (context / "tests").mkdir()
    (context / "tests" / "test_leak.py").write_text("")
    assert list(context.glob("tasks/*/tests/test_*.py"))  # the task folders' own tests, which must stay out
    (context / "secrets").mkdir()
    (context / "secrets" / "api_keys").write_text("leak:never-packed\n")
    task = repository_task()
    served = tmp_path / "served"
    build_champion(task, "cox_ph", served / "models", served / "bundles")
    models = context / "models"
    shutil.copytree(served / "models", models)
    (models / task / "not-a-champion").mkdir()
    (models / task / "not-a-champion" / "bundle.json").write_text("{}")
    assert f"{task}/" in " ".join(write_bentoignore(models))
    subprocess.run([_uv(), "export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project", "--quiet",
                    "--format", "requirements-txt", "-o", str(context / "requirements-bento.txt")],
                   cwd=REPO, check=True, timeout=120)

    home = tmp_path / "bentoml"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MODELS_DIR")}
    env.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), str(REPO / ".tools" / "bin"), env["PATH"]]))
    built = subprocess.run([sys.executable, "-m", "bentoml", "build", str(context), "-o", "tag"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = next(line.split("__tag__:", 1)[1].strip() for line in built.stdout.splitlines() if "__tag__:" in line)
    name, version = tag.split(":")
    source = home / "bentos" / name / version / "src"
    packed = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    champion = json.loads((models / task / "champion.json").read_text())
    folder = {f"tasks/{task}/{p.name}" for p in (REPO / "tasks" / task).iterdir() if p.suffix in (".toml", ".py")}
    assert {f"models/{task}/champion.json", f"models/{task}/{champion['path']}/bundle.json",
            "serving/service.py", "risk_model/prediction.py", "features/tasks.py", *folder} <= packed
    assert not [p for p in packed if p.startswith(("training/", "tests/", "secrets/", "mlruns/", "data/", "logs/",
                                                   f"models/{task}/not-a-champion")) or "/tests/" in p], sorted(packed)
    requirements = (home / "bentos" / name / version / "env" / "python" / "requirements.txt").read_text()
    assert "xgboost-cpu==" in requirements and "\n-e " not in requirements

    # Served from the Bento store, outside the repository, with its own key, audit file and secret.
    keys = tmp_path / "api_keys"
    keys.write_text(f"ci:{KEY}\n")
    env.update(API_KEYS_FILE=str(keys), AUDIT_LOG_FILE=str(tmp_path / "audit.jsonl"),
               AUDIT_SECRET_FILE=str(tmp_path / "audit_secret"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port",
                                str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    schema = get_task(task).schema
    patient = patient_request_model(schema).model_json_schema()["examples"][0]
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if _call(base, "/readyz", key=None)[0] == 200:
                    break
            except OSError:  # refused, reset, or no answer yet from a server still starting (URLError, timeouts)
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        route = f"/v1/{task.replace('_', '-')}/predict"
        assert _call(base, route, patient, key=None)[0] == 401
        status, answer = _call(base, route, patient)
    finally:
        stop_group(process)
        log.close()
    assert status == 200, answer
    bundle = ModelBundle.load(models / task / str(champion["path"]))
    [(predictors, problems)] = prepare_patients(schema, [patient])
    assert not problems
    [expected] = predict_patients(bundle, [predictors])
    expected = expected.model_dump()
    assert answer["model"]["version"] == champion["version"]
    served, reference = _probabilities(answer), _probabilities(expected)
    assert served.keys() == reference.keys()
    for key, value in reference.items():
        assert served[key] == (None if value is None else pytest.approx(value, rel=1e-12, abs=1e-15)), key
