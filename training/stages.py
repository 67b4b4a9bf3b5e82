"""A training run's named stages and the wall seconds each took. `make train` logs them with the run
(`stage_seconds.json`), and the training benchmark (benchmarks/train_bench.py) watches the same stages of the same
run for CPU and memory, so it never has to replay the pipeline's order itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from risk_model.process_memory import release_freed_memory


class StageWatcher(Protocol):
    """Told when each stage begins and ends (the benchmark samples CPU and memory in between)."""

    def begin(self, name: str) -> None: ...

    def end(self) -> None: ...


@dataclass
class Stages:
    watcher: StageWatcher | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.watcher:
            self.watcher.begin(name)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started
            if self.watcher:
                self.watcher.end()
            release_freed_memory()  # what the stage freed does not stay resident through the next ones


# Stages that two modules open (the pipeline validates before the report when its gates need the result).
VALIDATION_STAGE = "validation (leave one centre out, both families)"
BOOTSTRAP_STAGE = "metric bootstrap"
SUBGROUPS_STAGE = "subgroups"
PLOTS_STAGE = "calibration and decision-curve plots"
