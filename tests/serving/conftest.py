"""The real BentoML server process, shared by the end-to-end modules: started once on a free loopback port over a
copy of the session's champions (so reload tests can move the champion), with its own API key, audit file
and audit secret in a temporary folder, and stopped by its process group at the end of the session."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.servers import stop_group
from tests.sample_tasks import SINGLE, slug

REPO = Path(__file__).resolve().parents[2]
LIVE_KEY = "live-key-QWERTYUIOPASDFGH"
# The service with the sample tasks registered (the served champions are theirs).
SAMPLE_SERVICE = "tests.sample_tasks.service:RelapseRiskService"


@dataclass
class LiveServer:
    base: str
    log: Path
    audit: Path
    audit_secret: Path
    models_dir: Path
    key: str = LIVE_KEY

    def call(self, path: str, body: object = None, key: str | None = LIVE_KEY, method: str | None = None,
             timeout: float = 30) -> tuple[int, dict, dict]:
        """(status, JSON body, headers) of one request."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data,
                                         method=method or ("POST" if body is not None else "GET"))
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
                return response.status, json.loads(text) if text.strip() else {}, dict(response.headers)
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                content = json.loads(text)
            except ValueError:
                content = {"text": text.decode(errors="replace")}
            return error.code, content, dict(error.headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(source: Path, root: Path, task: str, service: str = SAMPLE_SERVICE) -> Iterator[LiveServer]:
    """The real server (`service`) over a copy of `source` (a models/ folder), ready when `task`'s model answers;
    stopped by its process group at the end."""
    models_dir = root / "models"
    shutil.copytree(source, models_dir)
    keys = root / "secrets" / "api_keys"
    keys.parent.mkdir()
    keys.write_text(f"ci:{LIVE_KEY}:predict,admin\n")  # admin: the reload tests reload
    server = LiveServer(base="", log=root / "server.log", audit=root / "logs" / "audit.jsonl",
                        audit_secret=root / "secrets" / "audit_secret", models_dir=models_dir)
    port = free_port()
    env = {**os.environ, "MODELS_DIR": str(models_dir), "API_KEYS_FILE": str(keys),
           "AUDIT_LOG_FILE": str(server.audit), "AUDIT_SECRET_FILE": str(server.audit_secret),
           "PYTHONPATH": str(REPO), "BENTOML_DO_NOT_TRACK": "True",
           # BentoML empties $BENTOML_HOME/prometheus_multiproc_dir at every start: another server must not wipe ours
           "BENTOML_HOME": str(root / "bentoml_home")}
    log = server.log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1",
         "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server.base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, server.log.read_text()
            try:
                if server.call(f"/v1/{slug(task)}/model")[0] == 200 and server.call("/readyz", key=None)[0] == 200:
                    break
            except (OSError, ValueError):  # refused, reset or timed out while it starts (URLError is an OSError)
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"server did not become ready:\n{server.log.read_text()}")
        yield server
    finally:
        stop_group(process)
        log.close()


@pytest.fixture(scope="module", autouse=True)
def _sample_tasks_registered(sample_tasks) -> None:
    """Every serving module's apps serve the sample tasks (conftest.py at the root `sample_tasks`)."""


@pytest.fixture(scope="session")
def live_server(served_models, tmp_path_factory) -> Iterator[LiveServer]:
    """The real server over the champions built in seconds (conftest.py `served_models`)."""
    yield from serve(served_models.models_dir, tmp_path_factory.mktemp("live"), SINGLE)
