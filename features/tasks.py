"""The prediction tasks the project knows, discovered as folders `tasks/<task>/task.toml`: schema, default
synthetic cohort, and the survival targets the loader derives from the task's raw outcome columns (design
contract 2). Nothing here names a task: each folder's spec and registered code say everything."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from features.survival_target import cause_column_codes, check_survival_target
from features.task_schema import Predictor, TaskSchema
from features.task_spec import SPEC_FILE, TaskCode, TaskSpec, TaskSpecError, build_schema, load_spec

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


@dataclass(frozen=True)
class EndpointTarget:
    """What an endpoint is judged against: months, event code (0 censored), the code of interest, and
    whether other codes are competing events (then incidences are compared with Aalen-Johansen)."""

    months: np.ndarray
    code: np.ndarray
    event_of_interest: int = 1
    competing: bool = False


# cause name -> (months, 0/1 event of that cause; other causes censor it)
CauseTargets = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PublicExtract:
    """A public registry extract a task trains on when no file is given: `load()` returns it as a registry file
    (the task's columns, units declared by suffix), which then goes through the bring-your-own path."""

    name: str  # e.g. "mstate::ebmt3"
    load: Callable[[], pd.DataFrame]
    file_name: str  # written under data/ (git-ignored), e.g. "ebmt_hsct_mstate_ebmt3.csv"
    adapter: str  # the module that maps the extract's columns to the task's file
    source: str  # where it comes from and who to acknowledge
    caveat: str  # what it may and may not be used for
    mapping: tuple[tuple[str, str, str], ...] = ()  # (extract column, file column, how), for the data dictionary
    # Predictors the extract cannot teach (constant in it): dropped when a task trains on its extract by default.
    drop_predictors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    schema: TaskSchema
    generate_cohort: Callable[..., pd.DataFrame]
    default_cohort_size: int
    outcome: str  # "single_event" or "competing_risks"
    cause_targets: Callable[[pd.DataFrame], CauseTargets]
    endpoint_targets: Callable[[pd.DataFrame], dict[str, EndpointTarget]]
    # months from the first cause (relapse) to death or last contact, 0/1 death, for the patients who had it
    # (competing tasks with an overall-survival endpoint)
    post_relapse_target: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None
    # Real-data tasks: the public extract trained on when no registry file is given (`generate_cohort` then
    # gives synthetic example patients without outcomes, for input examples only).
    public_extract: PublicExtract | None = None
    # The declarative spec the task was built from (wording, intended use, causes, report subgroups).
    spec: TaskSpec | None = None
    # Task routes of the service beyond predict/explain that the folder registers (e.g. "stop_timing").
    routes: tuple[str, ...] = ()
    # The folder's registered comparator rules (the spec's [[comparators]] of kind "groups" name them).
    comparators: Mapping[str, Callable[[pd.DataFrame], pd.Series]] = field(default_factory=dict)


# --- targets that follow from the spec alone: time column + event column holding cause codes 1..K ---------

def _spec_targets(schema: TaskSchema, spec: TaskSpec, code: TaskCode) -> tuple[Callable, Callable]:
    """Cause and endpoint targets from the spec's causes: the event column holds the cause codes (0 = censored),
    or a 0/1 event column beside a cause column whose labels the causes list, or the folder's `cause_codes`
    derives them from its outcome columns."""
    causes = {cause.code: cause.name for cause in spec.causes}
    competing = len(causes) > 1

    def target(frame: pd.DataFrame, allow_all_censored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if code.cause_codes is not None:
            return code.cause_codes(frame, allow_all_censored)
        if spec.outcome.cause_column:
            return cause_column_codes(frame, schema.time_column, schema.event_column, spec.outcome.cause_column,
                                      spec.cause_labels(), allow_all_censored=allow_all_censored)
        return check_survival_target(frame[schema.time_column], frame[schema.event_column],
                                     n_causes=len(causes), allow_all_censored=allow_all_censored)

    def cause_targets(frame: pd.DataFrame) -> CauseTargets:
        months, code = target(frame)
        return {name: (months, (code == number).astype(int)) for number, name in causes.items()}

    def endpoint_targets(frame: pd.DataFrame) -> dict[str, EndpointTarget]:
        # One cause alone keeps today's strict check (a file without any event is refused); competing causes
        # are judged one at a time, so a split without one cause's events is still evaluated.
        months, code = target(frame, allow_all_censored=competing)
        by_name = {name: number for number, name in causes.items()}
        endpoints = {}
        for endpoint in spec.endpoints:
            if endpoint.kind == "incidence" and endpoint.name in by_name:
                endpoints[endpoint.name] = EndpointTarget(months, code, by_name[endpoint.name], competing=competing)
            elif endpoint.kind == "survival" and not endpoint.complement_of:
                ended_by = [by_name[c] for c in endpoint.event_free_of] or list(causes)
                endpoints[endpoint.name] = EndpointTarget(months, np.isin(code, ended_by).astype(int))
        return endpoints

    return cause_targets, endpoint_targets


def _no_generator(task: str) -> Callable[..., pd.DataFrame]:
    def generate(n_patients: int, seed: int) -> pd.DataFrame:
        raise ValueError(f"the task {task!r} has no synthetic generator: give a registry file (DATA=...)")

    return generate


def example_patients(task: Task, n_patients: int, seed: int = 12345) -> pd.DataFrame:
    """Synthetic example patients (never a real row): the task's generator, or, for a task folder without one,
    the spec's example values (a number without one: the middle of its range; a category: its first level)."""
    try:
        return task.generate_cohort(n_patients, seed)
    except ValueError:
        pass

    def example(p: Predictor) -> object:
        if p.example is not None or not p.required:
            return p.example
        if p.kind == "number":
            low, high = p.minimum if p.minimum is not None else 0.0, p.maximum if p.maximum is not None else 1.0
            return (low + high) / 2
        return p.categories[0] if p.kind == "category" else False

    return pd.DataFrame([{p.name: example(p) for p in task.schema.predictors}] * n_patients)


# --- discovery -----------------------------------------------------------------------------------------------

def _send_by_value(module: ModuleType) -> None:
    """Training's worker processes cannot import a folder outside tasks/ by name: its functions (rules,
    comparators, generators) travel to them by value instead, the way closures do."""
    import cloudpickle  # the pickler of joblib's process pool (loky)

    cloudpickle.register_pickle_by_value(module)


def _folder_code(folder: Path) -> TaskCode:
    """The folder's registered code (`TASK_CODE` in its `__init__.py`); nothing when it holds no Python."""
    if not (folder / "__init__.py").is_file():
        return TaskCode()
    if folder.parent == TASKS_DIR:
        module = importlib.import_module(f"tasks.{folder.name}")
    else:  # a task folder elsewhere (e.g. a registry's own): imported under a private name
        name = f"_task_folder_{folder.name}"
        module_spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                             submodule_search_locations=[str(folder)])
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        _send_by_value(module)
    code = getattr(module, "TASK_CODE", None)
    if not isinstance(code, TaskCode):
        raise TypeError(f"{folder}/__init__.py must define TASK_CODE = TaskCode(...)")
    return code


def load_task(folder: Path) -> Task:
    """One task from its folder: the validated spec, the schema built from it, targets and generator."""
    folder = Path(folder)
    spec = load_spec(folder)
    code = _folder_code(folder)
    name = folder.name
    schema = build_schema(name, spec, code, folder / SPEC_FILE)
    cause_targets, endpoint_targets = _spec_targets(schema, spec, code)
    return Task(
        schema, code.generate_cohort or _no_generator(name), default_cohort_size=spec.default_cohort_size,
        outcome=spec.outcome.kind, cause_targets=code.cause_targets or cause_targets,
        endpoint_targets=code.endpoint_targets or endpoint_targets, post_relapse_target=code.post_relapse_target,
        public_extract=code.public_extract(name) if code.public_extract else None, spec=spec, routes=code.routes,
        comparators=dict(code.comparators),
    )


def discover_tasks(root: Path = TASKS_DIR) -> dict[str, Task]:
    """Every task folder under `root` (a folder holding task.toml), in the order their specs give."""
    tasks = [load_task(spec_file.parent) for spec_file in sorted(Path(root).glob(f"*/{SPEC_FILE}"))]
    tasks.sort(key=lambda task: (task.spec.position if task.spec else 0, task.schema.task))
    return {task.schema.task: task for task in tasks}


def tasks_or_exit(root: Path = TASKS_DIR) -> dict[str, Task]:
    """The tasks, or, when a spec has problems, an exit with their list and no traceback: every entry point
    (make train, validate, serve) imports TASKS, and a broken task.toml is the human's to fix, not a crash."""
    try:
        return discover_tasks(root)
    except TaskSpecError as error:
        raise SystemExit(str(error)) from None


TASKS: dict[str, Task] = tasks_or_exit()


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
