"""The declarative spec of a task (`tasks/<task>/task.toml`), one typed model that checks it, and the schema
built from it.

A task is a folder: `task.toml` says what the task is (time zero, outcome, causes, endpoints, predictors,
wording); Python the data need (a synthetic generator, cross-field rules, derived predictors, outcome checks,
target functions) lives beside it and is registered by the folder's `__init__.py` as `TASK_CODE`, under the names
the spec uses. A spec with problems is refused with every problem at once, each with its path and line.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.survival_target import cause_column_problems, cause_label
from features.task_schema import CrossFieldRule, Predictor, Problem, TaskSchema

SPEC_FILE = "task.toml"
NAME = r"^[a-z][a-z0-9_]*$"


class _Spec(BaseModel):
    # Unknown keys are refused: a misspelt key (`minumum`) must not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Spec):
    """A predictor, grouping column or extra raw outcome column."""

    name: str = Field(pattern=NAME)
    kind: Literal["number", "category", "boolean", "text"]
    description: str = Field(min_length=1)
    unit: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    categories: list[str] = []
    required: bool = True
    example: bool | int | float | str | None = None
    monotone: Literal[-1, 0, 1] = 0
    unit_suffixes: list[str] = []
    whole_number: bool = False
    # The name of a derived-predictor function the folder registers: filled when a file or request lacks it.
    derived_by: str | None = None
    # How a number enters the Cox family (trees need no transform): "log2" (a hazard ratio per doubling); a
    # restricted cubic spline (a knot count, placed at Harrell's quantiles of the training values, or the knots,
    # on the transformed scale); a step at each cut (the value from which the risk changes).
    transform: Literal["log2"] | None = None
    spline_knots: int | list[float] | None = None
    cuts: list[float] = []

    @model_validator(mode="after")
    def _coherent(self) -> ColumnSpec:
        problems = _form_problems(self)
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            problems.append(f"minimum {self.minimum} is above maximum {self.maximum}")
        if self.kind == "category" and not self.categories:
            problems.append("a category needs its categories")
        if self.kind != "category" and self.categories:
            problems.append(f"categories are only for kind 'category', not {self.kind!r}")
        if self.kind != "number" and (self.minimum is not None or self.maximum is not None):
            problems.append("minimum and maximum are only for kind 'number'")
        if self.unit_suffixes and not (self.unit and self.name.endswith(f"_{self.unit}")):
            problems.append("unit_suffixes need a unit that the name ends with (e.g. tki_years, unit years)")
        if self.example is not None and self.categories and self.example not in self.categories:
            problems.append(f"example {self.example!r} is not one of the categories")
        if len(set(self.categories)) != len(self.categories):
            problems.append("a category is listed more than once")
        if self.kind == "boolean" and self.example is not None and not isinstance(self.example, bool):
            problems.append(f"the example of a boolean is true or false, not {self.example!r}")
        if self.kind == "number" and self.example is not None and not _within(self.example, self):
            problems.append(f"example {self.example!r} is not a number within minimum and maximum")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _form_problems(column: ColumnSpec) -> list[str]:
    problems = []
    if column.kind != "number" and (column.transform or column.spline_knots is not None or column.cuts):
        problems.append("transform, spline_knots and cuts are only for kind 'number'")
    if column.transform == "log2" and (column.minimum is None or column.minimum <= 0):
        problems.append("transform 'log2' needs a minimum above 0")
    knots = column.spline_knots
    if isinstance(knots, int) and not 3 <= knots <= 7:
        problems.append(f"spline_knots {knots} must be 3 to 7 knots (or the knots themselves)")
    if isinstance(knots, list) and (len(knots) < 3 or knots != sorted(set(knots))):
        problems.append("spline knots must be at least 3 increasing values")
    if column.cuts and (column.cuts != sorted(set(column.cuts)) or not all(_within(c, column) for c in column.cuts)):
        problems.append("cuts must be increasing values within minimum and maximum")
    return problems


def _within(value: object, column: ColumnSpec) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (column.minimum is None or value >= column.minimum) and (column.maximum is None or value <= column.maximum)


class CauseSpec(_Spec):
    code: int = Field(ge=1)
    name: str = Field(pattern=NAME)
    description: str = Field(min_length=1)
    # With an [outcome] cause_column: the values of that column that mean this cause (text labels or codes).
    labels: list[str | int] = []


class EndpointSpec(_Spec):
    name: str = Field(pattern=NAME)
    kind: Literal["incidence", "survival"]
    description: str = Field(min_length=1)
    plot_title: str = Field(min_length=1)  # plots and explanation headings, e.g. "Relapse incidence"
    answer_phrase: str = Field(min_length=1)  # "the probability of <phrase> by 12 months"
    # A survival endpoint that is one minus an incidence: the same curve, not evaluated on its own.
    complement_of: str | None = None
    # A survival endpoint ended by the first of these causes (all causes when empty), evaluated on its own.
    event_free_of: list[str] = []


class OutcomeSpec(_Spec):
    kind: Literal["single_event", "competing_risks"]
    time_column: str = Field(pattern=NAME)
    event_column: str = Field(pattern=NAME)
    event_description: str = Field(min_length=1)
    # Units a registry file may send the time column in, by suffix (`rfs_days` for `rfs_months`).
    time_unit_suffixes: list[str] = []
    # "cause_codes": the event column holds 0 (censored) or a cause code 1..K; "binary": it holds 0/1 and the
    # folder's code derives the causes from further outcome columns.
    event_coding: Literal["cause_codes", "binary"] = "cause_codes"
    # With "binary": the column that says which cause an event was (each cause lists its labels); an outcome
    # column, never a predictor. Without it, the folder's code derives the causes.
    cause_column: str | None = Field(default=None, pattern=NAME)
    columns: list[ColumnSpec] = []  # raw outcome columns beyond time and event
    check: str | None = None  # a registered row-level check across the outcome columns


class RuleSpec(_Spec):
    code: str = Field(pattern=NAME)  # the registered function (True = row is fine)
    columns: list[str] = Field(min_length=1)
    message: str = Field(min_length=1)


class GroupCondition(_Spec):
    """One condition of a named report group: a predictor within [minimum, below) or among categories."""

    column: str = Field(pattern=NAME)
    minimum: int | float | None = None  # inclusive
    below: int | float | None = None  # exclusive
    categories: list[str] = []

    @model_validator(mode="after")
    def _one_kind(self) -> GroupCondition:
        if bool(self.categories) == (self.minimum is not None or self.below is not None):
            raise ValueError("a condition gives either categories or a range (minimum and/or below)")
        return self

    def holds(self, values: pd.Series) -> pd.Series:
        """True where a value meets the condition (False where it is missing)."""
        if self.categories:
            return values.astype("string").isin(self.categories).fillna(False).astype(bool)
        numbers = pd.to_numeric(values, errors="coerce")
        inside = numbers.notna()
        if self.minimum is not None:
            inside &= numbers >= self.minimum
        if self.below is not None:
            inside &= numbers < self.below
        return inside.fillna(False).astype(bool)


class ReportGroupSpec(_Spec):
    """A named report subgroup defined by conditions on predictors (all must hold), e.g. over-55 B-ALL."""

    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1)
    conditions: list[GroupCondition] = Field(min_length=1)


class ReportSpec(_Spec):
    age_bands: list[int] = []  # lower bounds in years of the age bands subgroup reports use
    subgroups: list[str] = []  # categorical predictors the subgroup report splits by
    groups: list[ReportGroupSpec] = []  # named subgroups beyond the age bands (each reported on its own)


# A nested-model term: a predictor as the model encodes it, or `spline(name)`, a restricted cubic spline of a number
# (its linear part and the non-linear terms), for a quantity whose linear part the earlier steps already hold.
TERM = re.compile(r"^(?:spline\((?P<spline>[a-z][a-z0-9_]*)\)|(?P<plain>[a-z][a-z0-9_]*))$")


RESERVED_COMPARATOR_NAMES = ("model", "cox_ph", "xgboost_cox")


class ComparatorSpec(_Spec):
    """A tool clinicians use today, evaluated beside the model on the same held-out centres (training/comparators.py).

    `groups`: a rule assigning risk groups (the folder registers `function`, frame -> groups); `index`: a
    prognostic index of `predictors`, refitted as a Cox model on the development data. Both are turned into
    probabilities by a Cox model fitted on the development data; the high-intensity class is the rule's
    `high_intensity` groups, or the index's top `high_intensity_share` of development patients (or those with a
    predicted risk at the main horizon of at least `high_intensity_risk`)."""

    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1)
    kind: Literal["groups", "index"]
    function: str | None = None
    groups: list[str] = []  # every group the rule assigns, lowest intensity first (the first is the Cox reference)
    high_intensity: list[str] = []
    predictors: list[str] = []
    high_intensity_share: float | None = Field(default=None, gt=0, lt=1)
    high_intensity_risk: float | None = Field(default=None, gt=0, lt=1)
    # The model's high-intensity class: predicted risk of the explained endpoint by the main horizon of at least
    # this; when absent, the threshold that gives the comparator's own high-intensity share on development data.
    model_threshold: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _coherent(self) -> ComparatorSpec:
        problems = []
        if self.kind == "groups":
            if not self.function:
                problems.append("a 'groups' comparator needs the function that assigns the groups")
            if len(self.groups) < 2 or len(set(self.groups)) != len(self.groups):
                problems.append("a 'groups' comparator lists its groups (at least two, each once)")
            if not self.high_intensity or not set(self.high_intensity) < set(self.groups):
                problems.append("high_intensity must be some, not all, of the groups")
            if self.predictors or self.high_intensity_share is not None or self.high_intensity_risk is not None:
                problems.append("predictors, high_intensity_share and high_intensity_risk are for kind 'index'")
        else:
            if not self.predictors:
                problems.append("an 'index' comparator needs its predictors")
            if (self.high_intensity_share is None) == (self.high_intensity_risk is None):
                problems.append("an 'index' comparator needs exactly one of high_intensity_share and "
                                "high_intensity_risk")
            if self.function or self.groups or self.high_intensity:
                problems.append("function, groups and high_intensity are for kind 'groups'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class NestedModelSpec(_Spec):
    """Cox models of the explained cause adding `steps` of terms one at a time (after `adjust_for`), fitted on the
    development data, per level of `by` and overall (training/nested_models.py)."""

    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1)
    by: str | None = None
    steps: list[list[str]] = Field(min_length=2)
    adjust_for: list[str] = []

    @model_validator(mode="after")
    def _coherent(self) -> NestedModelSpec:
        terms = [*self.adjust_for, *(term for step in self.steps for term in step)]
        problems = []
        if any(not step for step in self.steps):
            problems.append("every step adds at least one term")
        bad = [t for t in terms if not TERM.match(t)]
        if bad:
            problems.append(f"terms are predictor names or spline(name), not {bad}")
        if len(set(terms)) != len(terms):
            problems.append("a term is added more than once (in two steps, or in a step and adjust_for)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def term_columns(self) -> list[tuple[str, bool]]:
        """(predictor, is a spline) of every term of every step and of adjust_for."""
        found = []
        for term in [*self.adjust_for, *(t for step in self.steps for t in step)]:
            match = TERM.match(term)
            if match:
                found.append((match.group("spline") or match.group("plain"), bool(match.group("spline"))))
        return found


class UseSpec(_Spec):
    intended_use: str = Field(min_length=1)
    users_and_limits: str = Field(min_length=1)  # who uses it and what it must not be used for


class TaskSpec(_Spec):
    title: str = Field(min_length=1)
    version: str = "1"
    position: int = 100  # where the task is listed (page, data dictionary), lowest first
    default_cohort_size: int = Field(default=2000, ge=50)
    # Trained by a plain `make train` on the folder's synthetic generator (which it must register).
    trained_by_default: bool = False
    # The predictors of the sibling task folder of this name (the same variables, other outcomes), instead of
    # repeating its [[predictors]]; the loader copies them in before validating.
    predictors_from: str | None = Field(default=None, pattern=NAME)
    time_zero: str = Field(min_length=1)
    use: UseSpec
    outcome: OutcomeSpec
    causes: list[CauseSpec] = Field(min_length=1)
    horizons_months: list[int] = Field(min_length=1)
    main_horizon_months: int
    endpoints: list[EndpointSpec] = Field(min_length=1)
    explained_endpoint: str
    predictors: list[ColumnSpec] = Field(min_length=1)
    grouping: list[ColumnSpec] = []
    rules: list[RuleSpec] = []
    report: ReportSpec = ReportSpec()
    comparators: list[ComparatorSpec] = []
    nested_models: list[NestedModelSpec] = []
    # Categorical or boolean predictors that stratify the baseline hazard: one baseline per combination of their
    # values, in both families (risk_model/strata.py); a Cox model then takes no coefficient for them.
    strata: list[str] = []
    # Settings of the task routes the folder registers, by route (e.g. [routes.stop_timing]); the route checks them.
    routes: dict[str, dict[str, Any]] = {}

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems across fields, each with its path; empty when the spec holds together."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.main_horizon_months not in self.horizons_months:
            found.append((("main_horizon_months",), "must be one of horizons_months"))
        if self.horizons_months != sorted(set(self.horizons_months)) or min(self.horizons_months) <= 0:
            found.append((("horizons_months",), "must be positive, increasing and without repeats"))
        codes = [c.code for c in self.causes]
        if sorted(codes) != list(range(1, len(codes) + 1)):
            found.append((("causes",), f"cause codes must be 1..{len(codes)}, each once; got {codes}"))
        if self.outcome.kind == "single_event" and len(self.causes) != 1:
            found.append((("causes",), "a single-event task has exactly one cause"))
        if self.outcome.kind == "competing_risks" and len(self.causes) < 2:
            found.append((("causes",), "competing risks need at least two causes"))
        found += _repeats("causes", [c.name for c in self.causes])
        found += _repeats("endpoints", [e.name for e in self.endpoints])
        columns = [*self.predictors, *self.grouping, *self.outcome.columns]
        names = [c.name for c in columns] + [self.outcome.time_column, self.outcome.event_column]
        names += [self.outcome.cause_column] if self.outcome.cause_column else []
        found += _repeats("predictors", names)
        found += self._cause_column_problems()
        endpoints = {e.name: e for e in self.endpoints}
        if self.explained_endpoint not in endpoints:
            found.append((("explained_endpoint",), f"{self.explained_endpoint!r} is not an endpoint"))
        elif self.explained_endpoint != self.endpoints[0].name:
            # Bundles explain (and gate promotion on) the first endpoint; the spec must say the same.
            found.append((("explained_endpoint",), "must be the first endpoint listed"))
        causes = {c.name for c in self.causes}
        for i, endpoint in enumerate(self.endpoints):
            target = endpoints.get(endpoint.complement_of or "")
            if endpoint.complement_of and (target is None or target.kind != "incidence"):
                found.append((("endpoints", i, "complement_of"), "must name an incidence endpoint"))
            for cause in endpoint.event_free_of:
                if cause not in causes:
                    found.append((("endpoints", i, "event_free_of"), f"{cause!r} is not a cause"))
        for i, rule in enumerate(self.rules):
            for column in rule.columns:
                if column not in names:
                    found.append((("rules", i, "columns"), f"{column!r} is not a column of the task"))
        categorical = {p.name for p in self.predictors if p.kind == "category"}
        for column in self.report.subgroups:
            if column not in categorical:
                found.append((("report", "subgroups"), f"{column!r} is not a categorical predictor"))
        found += _group_problems(self.report.groups, {p.name: p for p in self.predictors})
        found += _repeats("report.groups", [g.name for g in self.report.groups])
        found += self._comparison_problems()
        found += self._strata_problems()
        return found

    def _strata_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """A stratum is a required categorical or boolean predictor: a request must carry it to pick its baseline (a
        grouping column never reaches the model)."""
        found: list[tuple[tuple[str | int, ...], str]] = _repeats("strata", self.strata)
        predictors = {p.name: p for p in self.predictors}
        grouping = {g.name for g in self.grouping}
        for name in self.strata:
            column = predictors.get(name)
            if column is None:
                why = ("is a grouping column: a request does not carry it, so no baseline could be picked"
                       if name in grouping else "is not a predictor of the task")
                found.append((("strata",), f"{name!r} {why}"))
            elif column.kind not in ("category", "boolean"):
                found.append((("strata",), f"{name!r} is a {column.kind}, not a categorical or boolean predictor"))
            elif not column.required:
                found.append((("strata",), f"{name!r} must be required: a patient without it has no baseline"))
            elif column.derived_by:
                found.append((("strata",), f"{name!r} is derived; stratify by the columns it comes from"))
        return found

    def _cause_column_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """A cause column goes with a 0/1 event column, and every cause names its labels, each label once."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.outcome.cause_column is None:
            return [(("causes", i, "labels"), "labels are for an [outcome] cause_column; add one or remove them")
                    for i, cause in enumerate(self.causes) if cause.labels]
        if self.outcome.event_coding != "binary":
            found.append((("outcome", "cause_column"), "a cause_column goes with event_coding = \"binary\" (the "
                                                       "event column holds 0 = censored, 1 = an event)"))
        seen: dict[str, str] = {}
        for i, cause in enumerate(self.causes):
            if not cause.labels:
                found.append((("causes", i, "labels"), f"which values of {self.outcome.cause_column!r} mean "
                                                       f"{cause.name!r}? list them in labels"))
            for label in map(cause_label, cause.labels):
                if label in seen:
                    found.append((("causes", i, "labels"), f"label {label!r} is also a label of {seen[label]!r}"))
                seen.setdefault(label, cause.name)
        return found

    def cause_labels(self) -> dict[str, int]:
        """The cause column's labels (as `cause_label` reads them) -> cause code."""
        return {cause_label(label): cause.code for cause in self.causes for label in cause.labels}

    def _comparison_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Comparators and nested models name predictors of the task (the grouping columns never predict)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        kinds = {p.name: p.kind for p in self.predictors}
        found += _repeats("comparators", [c.name for c in self.comparators])
        for i, comparator in enumerate(self.comparators):
            if comparator.name in RESERVED_COMPARATOR_NAMES:  # rows the comparison table already has
                found.append((("comparators", i, "name"), f"{comparator.name!r} is reserved for the run's own models"))
        for i, comparator in enumerate(self.comparators):
            for name in comparator.predictors:
                if name not in kinds:
                    found.append((("comparators", i, "predictors"), f"{name!r} is not a predictor of the task"))
        found += _repeats("nested_models", [n.name for n in self.nested_models])
        for i, nested in enumerate(self.nested_models):
            for name, spline in nested.term_columns():
                if name not in kinds:
                    found.append((("nested_models", i, "steps"), f"{name!r} is not a predictor of the task"))
                elif spline and kinds[name] != "number":
                    found.append((("nested_models", i, "steps"), f"spline({name}) needs a number predictor"))
                elif name == nested.by:
                    found.append((("nested_models", i, "steps"), f"{name!r} is the column the models split by"))
            if nested.by is not None and kinds.get(nested.by) not in ("category", "boolean"):
                found.append((("nested_models", i, "by"), f"{nested.by!r} is not a category or boolean predictor"))
        return found


def _group_problems(groups: list[ReportGroupSpec], predictors: dict[str, ColumnSpec]
                    ) -> list[tuple[tuple[str | int, ...], str]]:
    """A named group's conditions must name predictors, ranges on numbers and known categories."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, group in enumerate(groups):
        for j, condition in enumerate(group.conditions):
            where = ("report", "groups", i, "conditions", j)
            column = predictors.get(condition.column)
            if column is None:
                found.append(((*where, "column"), f"{condition.column!r} is not a predictor"))
            elif condition.categories and column.kind != "category":
                found.append(((*where, "categories"), f"{condition.column!r} is not a categorical predictor"))
            elif condition.categories and set(condition.categories) - set(column.categories):
                unknown = sorted(set(condition.categories) - set(column.categories))
                found.append(((*where, "categories"), f"not categories of {condition.column!r}: {unknown}"))
            elif not condition.categories and column.kind != "number":
                found.append(((*where, "column"), f"a range needs a number predictor, not {condition.column!r}"))
    return found


def _repeats(where: str, names: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
    counts = Counter(names)
    return [((where,), f"name {name!r} is used more than once") for name, count in counts.items() if count > 1]


# --- the code a folder registers ----------------------------------------------------------------------------

Frame = pd.DataFrame


@dataclass(frozen=True)
class TaskCode:
    """What a task folder registers in its `__init__.py` as `TASK_CODE`; the spec names the entries."""

    rules: Mapping[str, Callable[[Frame], pd.Series]] = field(default_factory=dict)
    derived: Mapping[str, Callable[[Frame], pd.Series]] = field(default_factory=dict)
    # Optional one-record versions of the same rules (record -> bool) and derived predictors (record -> value), by
    # the same names: with one for each, a one-patient request is prepared without pandas (serving/api.py).
    record_rules: Mapping[str, Callable[[Mapping[str, Any]], bool]] = field(default_factory=dict)
    record_derived: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    checks: Mapping[str, Callable[[Frame], list]] = field(default_factory=dict)
    generate_cohort: Callable[..., Frame] | None = None  # (n_patients, seed) -> synthetic cohort
    # (frame, allow_all_censored) -> (months, cause code 0..K) when the causes come from several outcome columns;
    # the cause and endpoint targets then follow from the spec as for an event column holding the codes.
    cause_codes: Callable[[Frame, bool], tuple] | None = None
    # Targets when even that is not enough (e.g. GRFS, whose causes differ from the competing ones).
    cause_targets: Callable[[Frame], dict] | None = None
    endpoint_targets: Callable[[Frame], dict] | None = None
    post_relapse_target: Callable[[Frame], tuple] | None = None
    public_extract: Callable[[str], Any] | None = None  # task name -> PublicExtract
    # Task routes of the service the folder asks for beyond predict/explain (e.g. "stop_timing").
    routes: tuple[str, ...] = ()
    # Rules of today's risk groups the spec's [[comparators]] name: frame -> one group label per row.
    comparators: Mapping[str, Callable[[Frame], pd.Series]] = field(default_factory=dict)


def folder_attribute(module: str) -> Callable[[str], Any]:
    """A task folder's module `__getattr__`: `tasks.<task>.SCHEMA` is the schema the registry built from the
    folder's task.toml (looked up lazily: the registry imports the folder while it builds)."""

    def attribute(name: str) -> Any:
        if name == "SCHEMA":
            from features.tasks import get_task

            return get_task(module.rsplit(".", 1)[-1]).schema
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute


# --- errors with paths and lines ----------------------------------------------------------------------------

class TaskSpecError(ValueError):
    """Every problem of one spec file, each as `line N, path: reason`, so it is fixed in one pass."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {path}; the task was not loaded:\n{listed}")


def dotted(location: tuple[str | int, ...]) -> str:
    """`("predictors", 3, "minimum")` -> `predictors[3].minimum`."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")


def line_of(text: str, location: tuple[str | int, ...]) -> int | None:
    """The 1-based line a path points at, found by scanning the TOML text (tomllib keeps no positions):
    the key's line when present, else the line of the table that should hold it."""
    lines = text.splitlines()
    headers = [(i, m.group(1) == "[[", m.group(2).replace(" ", "")) for i, line in enumerate(lines)
               if (m := _HEADER.match(line))]

    def region_from(start: int) -> tuple[int, int]:
        after = [i for i, _, _ in headers if i > start]
        return start, after[0] if after else len(lines)

    region = (0, headers[0][0] if headers else len(lines))
    prefix: list[str] = []
    best: int | None = None
    position = 0
    while position < len(location):
        part = str(location[position])
        name = ".".join([*prefix, part])
        arrays = [i for i, is_array, h in headers if is_array and h == name]
        tables = [i for i, is_array, h in headers if not is_array and h == name]
        following = location[position + 1] if position + 1 < len(location) else None
        if arrays and isinstance(following, int) and following < len(arrays):
            best, region = arrays[following], region_from(arrays[following])
            prefix, position = [*prefix, part], position + 2
            continue
        if arrays or tables:
            best = (arrays or tables)[0]
            region = region_from(best)
            prefix, position = [*prefix, part], position + 1
            continue
        key = re.compile(rf"^\s*{re.escape(part)}\s*=")
        found = next((i for i in range(*region) if key.match(lines[i])), None)
        if found is not None:
            best = found
        break  # a key's line (or its table's when the key is missing) is as close as a human needs
    return None if best is None else best + 1


def _located(text: str, location: tuple[str | int, ...], reason: str) -> str:
    line = line_of(text, location)
    return f"{'line ' + str(line) + ', ' if line else ''}{dotted(location)}: {reason}"


def _reason(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (misspelt?)"
    if error["type"] == "missing":
        return "required key is missing"
    return message


_UNION_MEMBERS = {"int", "float", "bool", "str", "none"}


def _validation_problems(text: str, error: ValidationError) -> list[str]:
    """One problem per path: a value refused by every member of a union (`int | float`) is one problem."""
    by_location: dict[tuple[str | int, ...], list[dict[str, Any]]] = {}
    for e in error.errors():
        location = tuple(e["loc"])
        while location and location[-1] in _UNION_MEMBERS:
            location = location[:-1]
        by_location.setdefault(location, []).append(e)
    problems = []
    for location, errors in by_location.items():
        if len(errors) == 1:
            reason = _reason(errors[0])
        else:
            kinds = [str(e["loc"][-1]) for e in errors]
            reason = f"must be {' or '.join(kinds)}, not {errors[0].get('input')!r}"
        problems.append(_located(text, location, reason))
    return problems


def _spec_data(folder: Path, resolving: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The TOML data and text of a task folder's spec, with `predictors_from` resolved: the predictors of the
    sibling task folder it names (which may itself take them from another)."""
    path = folder / SPEC_FILE
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TaskSpecError(path, [f"not valid TOML: {error}"]) from None
    source = data.get("predictors_from")
    if not isinstance(source, str) or not re.match(NAME, source):
        return data, text  # absent, or refused by the model with its line
    where = ("predictors_from",)
    if "predictors" in data:
        problem = "give either predictors_from or [[predictors]], not both"
    elif not (folder.parent / source / SPEC_FILE).is_file():
        problem = f"no task {source!r} beside this one: {folder.parent / source} holds no {SPEC_FILE}"
    elif source in (*resolving, folder.name):
        problem = f"{' -> '.join((*resolving, folder.name, source))}: the predictors are taken in a circle"
    else:
        other, _ = _spec_data(folder.parent / source, (*resolving, folder.name))
        return {**data, "predictors": other.get("predictors", [])}, text
    raise TaskSpecError(path, [_located(text, where, problem)])


def load_spec(folder: Path) -> TaskSpec:
    """The validated spec of a task folder, or TaskSpecError with every problem, its path and line."""
    path = folder / SPEC_FILE
    data, text = _spec_data(folder)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as error:
        raise TaskSpecError(path, _validation_problems(text, error)) from None
    problems = [_located(text, location, reason) for location, reason in spec.problems()]
    if problems:
        raise TaskSpecError(path, problems)
    return spec


# --- the schema built from the spec and the folder's code ---------------------------------------------------

def _predictor(column: ColumnSpec) -> Predictor:
    return Predictor(
        column.name, column.kind, column.description, unit=column.unit, minimum=column.minimum,
        maximum=column.maximum, categories=tuple(column.categories), required=column.required,
        example=column.example, monotone=column.monotone, unit_suffixes=tuple(column.unit_suffixes),
        whole_number=column.whole_number, transform=column.transform,
        spline_knots=tuple(column.spline_knots) if isinstance(column.spline_knots, list) else column.spline_knots,
        cuts=tuple(column.cuts),
    )


def _registered(text: str, location: tuple[str | int, ...], name: str, table: Mapping[str, Any],
                what: str, problems: list[str]) -> Any:
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        problems.append(_located(text, location, f"no {what} {name!r} is registered by the folder's TASK_CODE "
                                                 f"(registered: {known})"))
    return table.get(name)


def _cause_column(spec: TaskSpec) -> Predictor:
    """The cause column as an outcome column (text: its labels are checked against the causes, without values)."""
    causes = "; ".join(f"{c.name}: {', '.join(map(str, c.labels))}" for c in spec.causes)
    return Predictor(str(spec.outcome.cause_column), "text", f"Cause of the event ({causes}); empty when censored",
                     required=False)


def _with_cause_check(spec: TaskSpec, check: Callable[[Frame], list] | None) -> Callable[[Frame], list[Problem]]:
    """The cause column's row checks, then the folder's own outcome check (if any)."""
    column, event, labels = str(spec.outcome.cause_column), spec.outcome.event_column, spec.cause_labels()
    names = {c.code: c.name for c in spec.causes}

    def checked(frame: Frame) -> list[Problem]:
        return [*cause_column_problems(frame, event, column, labels, names), *(check(frame) if check else [])]

    return checked


def build_schema(task: str, spec: TaskSpec, code: TaskCode, path: Path) -> TaskSchema:
    """The TaskSchema the rest of the project uses, from the spec and the folder's registered code."""
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []
    rules = []
    for i, rule in enumerate(spec.rules):
        holds = _registered(text, ("rules", i, "code"), rule.code, code.rules, "rule", problems)
        rules.append(CrossFieldRule(rule.message, tuple(rule.columns), holds, code.record_rules.get(rule.code)))
    derived, derived_records = [], {}
    for i, column in enumerate(spec.predictors):
        if column.derived_by:
            derive = _registered(text, ("predictors", i, "derived_by"), column.derived_by, code.derived,
                                 "derived predictor", problems)
            derived.append((column.name, derive))
            if column.derived_by in code.record_derived:
                derived_records[column.name] = code.record_derived[column.derived_by]
    if (code.cause_targets is None) != (code.endpoint_targets is None):
        problems.append(f"{path.parent}/__init__.py: TASK_CODE registers cause_targets and endpoint_targets together")
    if (spec.outcome.event_coding == "binary" and len(spec.causes) > 1 and code.cause_codes is None
            and code.cause_targets is None and spec.outcome.cause_column is None):
        problems.append(_located(text, ("outcome", "event_coding"), "'binary' with several causes needs a "
                                 "cause_column, or the folder's TASK_CODE to derive the cause codes (cause_codes)"))
    if spec.outcome.cause_column and (code.cause_codes or code.cause_targets):
        problems.append(_located(text, ("outcome", "cause_column"), "the causes come either from the cause_column "
                                 "or from the folder's TASK_CODE (cause_codes, cause_targets), not both"))
    if spec.trained_by_default and code.generate_cohort is None:
        problems.append(_located(text, ("trained_by_default",), "needs a synthetic generator registered by the "
                                                                "folder's TASK_CODE (generate_cohort)"))
    for i, comparator in enumerate(spec.comparators):
        if comparator.function:
            _registered(text, ("comparators", i, "function"), comparator.function, code.comparators, "comparator",
                        problems)
    for route in spec.routes:
        if route not in code.routes:
            known = ", ".join(code.routes) or "none"
            # One dotted part: it is the header of its own table, `[routes.<route>]`, which line_of then finds.
            problems.append(_located(text, (f"routes.{route}",), f"no route {route!r} is registered by the "
                                                                 f"folder's TASK_CODE (registered: {known})"))
    check = None
    if spec.outcome.check:
        check = _registered(text, ("outcome", "check"), spec.outcome.check, code.checks, "outcome check", problems)
    if problems:
        raise TaskSpecError(path, problems)
    extra_outcome = tuple(_predictor(c) for c in spec.outcome.columns)
    if spec.outcome.cause_column:
        extra_outcome += (_cause_column(spec),)
        check = _with_cause_check(spec, check)
    return TaskSchema(
        task=task, title=spec.title, version=spec.version,
        predictors=tuple(_predictor(p) for p in spec.predictors),
        grouping=tuple(_predictor(g) for g in spec.grouping),
        time_column=spec.outcome.time_column, event_column=spec.outcome.event_column,
        event_description=spec.outcome.event_description, time_zero=spec.time_zero,
        horizons_months=tuple(spec.horizons_months), main_horizon_months=spec.main_horizon_months,
        cross_field_rules=tuple(rules),
        endpoint_names={e.name: e.kind for e in spec.endpoints},
        endpoint_descriptions={e.name: e.description for e in spec.endpoints},
        endpoint_wording={e.name: (e.plot_title, e.answer_phrase) for e in spec.endpoints},
        use=(spec.use.intended_use, spec.use.users_and_limits),
        extra_outcome_columns=extra_outcome,
        outcome_check=check, derived_predictors=tuple(derived), derived_records=derived_records,
        time_unit_suffixes=tuple(spec.outcome.time_unit_suffixes),
        event_codes=len(spec.causes) if spec.outcome.event_coding == "cause_codes" else 1,
        strata=tuple(spec.strata),
    )
