"""Test-only sample tasks, task folders like those under tasks/ but never served or trained outside the tests: the
general tests (API contract, hardening, pipeline mechanics) use them, so that no default task's name is tested
outside its own folder. `registered()` puts them into the task registry while a test needs them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from features.tasks import TASKS, Task, load_task

SAMPLE_TASKS_DIR = Path(__file__).resolve().parent
SINGLE = "sample_single"  # one event (relapse) and its complement
COMPETING = "sample_competing"  # relapse and death without relapse compete


@cache
def sample_tasks() -> dict[str, Task]:
    return {name: load_task(SAMPLE_TASKS_DIR / name) for name in (SINGLE, COMPETING)}


def slug(task: str) -> str:
    """The task's part of its routes (/v1/<slug>/...)."""
    return task.replace("_", "-")


@contextmanager
def registered() -> Iterator[dict[str, Task]]:
    """The sample tasks in TASKS (so the app builds their routes and training finds them), removed afterwards."""
    added = {name: task for name, task in sample_tasks().items() if name not in TASKS}
    TASKS.update(added)
    try:
        yield sample_tasks()
    finally:
        for name in added:
            TASKS.pop(name, None)


SINGLE_ROUTE = f"/v1/{slug(SINGLE)}"
COMPETING_ROUTE = f"/v1/{slug(COMPETING)}"
# Typical patients of each (every required predictor given; the competing one's optional predictors too).
SINGLE_PATIENT = {
    "age_years": 58,
    "sex": "female",
    "treatment_years": 7.4,
    "response_years": 4.3,
    "risk_group": "low",
    "prior_therapy": False,
}
COMPETING_PATIENT = {
    "age_years": 45,
    "disease_risk": "standard",
    "intensity": "full",
    "marker_positive": False,
    "sex": "male",
    "donor_type": "matched",
    "low_performance": False,
    "infection_positive": True,
    "diagnosis_to_treatment_years": 0.5,
    "prior_lines": 1,
    "treatment_year": 2018,
    "marker_log10": -5.2,
    "marker_detectable": False,
    "comorbidity": "0",
}
