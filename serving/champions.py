"""The champion bundles serving answers with, read from `models/<task>/champion.json` (never from MLflow).

Each worker checks the pointers at most once a second (and at once on `POST /admin/reload`) and swaps to a new
champion only after it loads and a smoke prediction on it passes. A version that fails either is logged and
reported, the previous champion keeps serving, and it is not retried until champion.json changes again or a
reload is forced: a broken export never causes a failed request.

The folder a pointer names must lie inside the models folder (a relative path without `..`, which after symlinks
are followed still lies inside it) and hold a bundle of the pointer's task: whoever can write one champion.json
must not be able to make the service load code-bearing files from anywhere else on the machine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from risk_model.bundle import BundleFormatError, ModelBundle
from risk_model.prediction import predict_patient

CHECK_INTERVAL_SECONDS = 1.0
logger = logging.getLogger("serving.champions")


@dataclass
class LoadedChampion:
    bundle: ModelBundle
    pointer: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.bundle.task, "version": self.pointer["version"], "run_id": self.pointer["run_id"],
                "family": self.bundle.family}


def one_blas_thread() -> None:
    """Run numpy's BLAS on one thread in this worker. An answer's products are small (all_hsct's post-relapse
    table: 31 members x 744 event times x 65 months), and OpenBLAS's threads, spin-waiting for a core that requests
    and other processes hold, made that one product take 60-80 ms instead of 0.5 ms on 2 loaded cores; concurrent
    requests are the worker's parallelism. The same sums either way (OpenBLAS splits rows, not the inner sums)."""
    threadpool_limits(limits=1, user_api="blas")


def _smoke_patient(bundle: ModelBundle) -> dict[str, Any]:
    return {p["name"]: p["example"] for p in bundle.schema["predictors"]}


class PointerOutsideModels(ValueError):
    """champion.json names a folder outside the models folder."""


def bundle_folder(models_dir: Path, task: str, path: Any) -> Path:
    """models_dir/task/path, refused when `path` is absolute, climbs with `..`, or resolves (symlinks followed)
    outside models_dir."""
    relative = Path(str(path))
    folder = models_dir / task / relative
    if relative.is_absolute() or ".." in relative.parts or not folder.resolve().is_relative_to(models_dir.resolve()):
        raise PointerOutsideModels(f"champion.json must name a folder inside {models_dir}/{task}/ (a relative path, "
                                   "no '..', no symlink out of the models folder)")
    return folder


def _signature(pointer: dict[str, Any]) -> tuple[str, str]:
    return str(pointer.get("version")), str(pointer.get("exported_at"))


class ChampionRegistry:
    def __init__(self, models_dir: str | Path, tasks: list[str]):
        self.models_dir = Path(models_dir)
        self.tasks = tasks
        self.loaded: dict[str, LoadedChampion] = {}
        self.failed: dict[str, tuple[tuple[str, str], str]] = {}  # task -> (pointer signature, reason)
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> list[dict[str, Any]]:
        """Load any task whose champion.json names a version other than the one serving; never raises.

        Returns one report per task (the shape of `TaskReload`). Without `force` the check runs at most once a
        second, skips versions that already failed, and does not wait for a check another thread is running.
        """
        now = time.monotonic()
        if not force and now - self._checked_at < CHECK_INTERVAL_SECONDS:
            return []
        if not self._lock.acquire(blocking=force):
            return []  # another request is checking: serve the current champion meanwhile
        try:
            self._checked_at = time.monotonic()
            return [self._refresh_task(task, retry_failed=force) for task in self.tasks]
        finally:
            self._lock.release()

    def _refresh_task(self, task: str, retry_failed: bool) -> dict[str, Any]:
        current = self.loaded.get(task)
        serving = current.pointer["version"] if current else None
        pointer_path = self.models_dir / task / "champion.json"
        if not pointer_path.exists():
            return self._report(task, "no_champion", serving, None, "no champion.json: train and promote a model")
        try:
            pointer = json.loads(pointer_path.read_text())
            version = str(pointer["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"champion.json is unreadable ({type(exc).__name__})"
            logger.error("%s: %s; %s", task, reason, f"version {serving} keeps serving" if serving else "not loaded")
            return self._report(task, "failed", serving, None, reason + self._keeps(serving))
        if current and _signature(current.pointer) == _signature(pointer):
            return self._report(task, "unchanged", serving, version, f"version {version} is serving")
        failure = self.failed.get(task)
        if failure and failure[0] == _signature(pointer) and not retry_failed:
            return self._report(task, "failed", serving, version, failure[1] + self._keeps(serving))
        try:
            bundle = ModelBundle.load(bundle_folder(self.models_dir, task, pointer["path"]))
            if bundle.task != task:
                raise ValueError(f"the folder holds a bundle of task {bundle.task}")
            predict_patient(bundle, _smoke_patient(bundle))  # must pass before the swap
        except Exception as exc:  # noqa: BLE001 - any failure of a new export must leave the old one serving
            reason = f"version {version} failed to load or failed its smoke prediction ({type(exc).__name__}: {exc})"
            if isinstance(exc, PointerOutsideModels):
                reason = f"version {version} refused: {exc}"
            elif isinstance(exc, BundleFormatError):  # the bundle's own advice, whole
                reason = f"version {version} cannot be served: {exc}"
            reason = reason[:500]
            self.failed[task] = (_signature(pointer), reason)
            logger.error("%s: %s%s", task, reason, self._keeps(serving))
            return self._report(task, "failed", serving, version, reason + self._keeps(serving))
        self.loaded[task] = LoadedChampion(bundle, pointer)
        self.failed.pop(task, None)
        logger.info("%s: version %s loaded%s", task, version, f" (was {serving})" if serving else "")
        return self._report(task, "loaded", version, version,
                            f"version {version} now serves" + (f" (was {serving})" if serving else ""))

    @staticmethod
    def _keeps(serving: str | None) -> str:
        return f"; version {serving} keeps serving" if serving else "; no version of this task is serving"

    @staticmethod
    def _report(task: str, status: str, serving: str | None, champion: str | None, message: str) -> dict[str, Any]:
        return {"task": task, "status": status, "serving_version": serving, "champion_version": champion,
                "message": message}

    def ready(self) -> bool:
        """Ready when every task that has a champion.json has a model serving (clarifications §6), and one does."""
        self.refresh()
        return bool(self.loaded) and all(task in self.loaded for task in self.tasks
                                         if (self.models_dir / task / "champion.json").exists())

    def get(self, task: str) -> LoadedChampion | None:
        self.refresh()
        return self.loaded.get(task)

    def not_learned(self, task: str) -> list[str]:
        """The predictors the serving model of a task could not learn from: a request may leave them out."""
        loaded = self.get(task)
        return [item["name"] for item in getattr(loaded.bundle, "not_learned", None) or []] if loaded else []
