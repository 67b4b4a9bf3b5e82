"""The champion bundles serving answers with, read from `models/<task>/champion.json` (never from MLflow).

Each worker checks the pointer at most once a second and swaps to a new champion only after a smoke
prediction on it passes, so a broken export never replaces a working model.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.bundle import ModelBundle
from training.prediction import predict_patient

CHECK_INTERVAL_SECONDS = 1.0


@dataclass
class LoadedChampion:
    bundle: ModelBundle
    pointer: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.bundle.task, "version": self.pointer["version"], "run_id": self.pointer["run_id"],
                "family": self.bundle.family}


def _smoke_patient(bundle: ModelBundle) -> dict[str, Any]:
    return {p["name"]: p["example"] for p in bundle.schema["predictors"]}


class ChampionRegistry:
    def __init__(self, models_dir: str | Path, tasks: list[str]):
        self.models_dir = Path(models_dir)
        self.tasks = tasks
        self.loaded: dict[str, LoadedChampion] = {}
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> None:
        """Load any task whose champion.json names a version other than the one loaded."""
        now = time.monotonic()
        if not force and now - self._checked_at < CHECK_INTERVAL_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            for task in self.tasks:
                pointer_path = self.models_dir / task / "champion.json"
                if not pointer_path.exists():
                    continue
                pointer = json.loads(pointer_path.read_text())
                current = self.loaded.get(task)
                if current and current.pointer["version"] == pointer["version"]:
                    continue
                bundle = ModelBundle.load(self.models_dir / task / pointer["path"])
                predict_patient(bundle, _smoke_patient(bundle))  # raises before the swap if it is broken
                self.loaded[task] = LoadedChampion(bundle, pointer)

    def get(self, task: str) -> LoadedChampion | None:
        self.refresh()
        return self.loaded.get(task)
