"""Start, probe, measure and stop the three servers `make bench` compares, all on loopback ports.

- `service`: this project's BentoML service (`bentoml serve serving.service:RelapseRiskService`, as `make serve`
  starts it) over a temporary MODELS_DIR holding only the benchmarked task's champion, with a temporary API key
  file, audit log and audit secret.
- `bare`: `python -m benchmarks.bare_fastapi_app` (uvicorn, one process) over the same champion bundle.
- `mlflow`: `mlflow models serve -m models:/<task>@champion --env-manager local -w 1` from the project's
  environment (`.venv/bin` first on PATH, so that it finds uvicorn), over the registry in MLFLOW_TRACKING_URI.

Each server runs in its own process group and is stopped by it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO}/mlruns/mlflow.db")
    env.update(extra)
    return env


@dataclass
class Server:
    """A server process (group) and how to talk to it."""

    name: str
    process: subprocess.Popen
    host: str
    port: int
    log: Path
    started_at: float  # time.perf_counter() just before the process was started
    headers: dict[str, str] = field(default_factory=dict)
    cold_start_s: float | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, path: str, body: object = None, timeout: float = 30) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request; (0, reason) when the connection fails."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method="POST" if data is not None else "GET",
                                         headers={"Content-Type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            text, status = error.read(), error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            return 0, str(exc)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode(errors="replace")

    def wait_until(self, good: Callable[[Server], bool], timeout: float = 180.0) -> float:
        """Poll until `good(self)`; returns (and records) seconds from process start to that first good answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if good(self):
                self.cold_start_s = time.perf_counter() - self.started_at
                return self.cold_start_s
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} gave no good answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def memory(self) -> dict[str, float]:
        """Resident memory of the server's process tree: total RSS, largest process (a worker) and count."""
        rss = process_tree_rss(self.process.pid)
        return {"total_mib": sum(rss.values()) / MIB, "largest_mib": max(rss.values(), default=0) / MIB,
                "processes": len(rss)}

    def stop(self) -> None:
        stop_group(self.process)


def process_tree_rss(pid: int) -> dict[int, int]:
    """pid -> RSS bytes for a process and all its descendants (psutil, or /proc when it is missing)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the project's environment
        return _proc_tree_rss(pid)
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    result = {}
    for process in processes:
        try:
            result[process.pid] = process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return result


def _proc_tree_rss(pid: int) -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    result = {}
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    result[member] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return result


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True: its process group (SIGTERM, then SIGKILL), then any
    descendant that lives on outside the group (BentoML's workers lead process groups of their own)."""
    descendants = _descendants(process.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # a member that outlived the group's leader
        os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(Exception):
            if child.is_running():
                child.kill()


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone: nothing more to clean
        return []


def _launch(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int,
            headers: dict[str, str] | None = None) -> Server:
    log = workdir / f"{name}.log"
    handle = log.open("w")
    started_at = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                               start_new_session=True)
    handle.close()  # the child keeps its own descriptor
    return Server(name, process, "127.0.0.1", port, log, started_at, headers or {})


def task_models_dir(models_dir: Path, task: str, workdir: Path) -> Path:
    """A MODELS_DIR holding only `task`'s champion (champion.json and the version folder it names)."""
    pointer = json.loads((models_dir / task / "champion.json").read_text())
    target = workdir / "models"
    shutil.copytree(models_dir / task / str(pointer["path"]), target / task / str(pointer["path"]))
    shutil.copy2(models_dir / task / "champion.json", target / task / "champion.json")
    return target


def start_service(models_dir: Path, workdir: Path, port: int | None = None, key_lines: tuple[str, ...] = (),
                  service: str = "serving.service:RelapseRiskService", **env_extra: str) -> Server:
    """`bentoml serve serving.service:RelapseRiskService` on loopback with temporary key, audit and secret files.

    `key_lines` adds `key_id:key[:roles]` lines to the key file; `env_extra` sets variables such as METRICS_ACCESS;
    `service` is another import path of the service (the tests' one with their sample tasks registered).
    """
    port = port or free_port()
    key = secrets.token_urlsafe(24)
    keys = workdir / "secrets" / "api_keys"
    keys.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("".join(f"{line}\n" for line in (f"bench:{key}", *key_lines)))
    # Its own BENTOML_HOME: BentoML keeps the Prometheus multiprocess files in $BENTOML_HOME/prometheus_multiproc_dir
    # and empties that folder at every start, so servers sharing one would wipe and mix each other's metrics.
    env = server_env(MODELS_DIR=str(models_dir), API_KEYS_FILE=str(keys),
                     AUDIT_LOG_FILE=str(workdir / "logs" / "audit.jsonl"),
                     AUDIT_SECRET_FILE=str(workdir / "secrets" / "audit_secret"),
                     BENTOML_HOME=str(workdir / "bentoml_home"), **env_extra)
    command = [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1", "--port", str(port)]
    return _launch("service", command, env, workdir, port, {"Authorization": f"Bearer {key}"})


def start_bare(models_dir: Path, task: str, workdir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    command = [sys.executable, "-m", "benchmarks.bare_fastapi_app", "--task", task, "--models-dir",
               str(models_dir), "--host", "127.0.0.1", "--port", str(port)]
    return _launch("bare", command, server_env(), workdir, port)


def start_mlflow(task: str, workdir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{task}@champion", "--env-manager",
               "local", "-w", "1", "-h", "127.0.0.1", "-p", str(port)]
    return _launch("mlflow", command, server_env(), workdir, port)
