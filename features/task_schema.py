"""One schema per task, written once: it validates training frames and builds the endpoint's request model.

Named `task_schema` (not `schema`) because BentoML imports the PyPI package `schema`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["number", "category", "boolean", "text"]

# Duration columns in a registry file declare their unit by suffix; factors convert to the canonical unit.
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
UNIT_FACTORS_TO_DAYS = {"days": 1.0, "months": DAYS_PER_MONTH, "years": DAYS_PER_YEAR}


@dataclass(frozen=True)
class Predictor:
    """A field known at time zero: its clinical meaning, unit and the values it may take."""

    name: str
    kind: Kind
    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    required: bool = True
    example: Any = None
    # -1: risk never rises with the value (xgboost constraint; Cox terms against it left out; in the model card).
    monotone: int = 0
    # Accepted unit suffixes in a registry file for durations, e.g. ("days", "months", "years").
    unit_suffixes: tuple[str, ...] = ()
    # A count such as a calendar year: 2018.5 is refused, in files and requests alike.
    whole_number: bool = False
    # How a number enters the Cox family (features/task_spec.py): "log2", spline knots (a count or the knots), cuts.
    transform: str | None = None
    spline_knots: int | tuple[float, ...] | None = None
    cuts: tuple[float, ...] = ()

    @property
    def stem(self) -> str:
        """The name without its unit suffix (``tki_years`` -> ``tki``)."""
        if self.unit and self.name.endswith(f"_{self.unit}"):
            return self.name[: -len(self.unit) - 1]
        return self.name


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule across fields; ``holds`` returns a boolean mask (True = row is fine, NaN-tolerant)."""

    name: str
    columns: tuple[str, ...]
    holds: Callable[[pd.DataFrame], pd.Series]
    # The same rule on one record (a dict of plain values) -> bool, when the folder registers one: a one-patient
    # request is then checked without building a DataFrame (tests hold both to the same answers).
    holds_record: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass(frozen=True)
class TaskSchema:
    task: str
    title: str
    predictors: tuple[Predictor, ...]
    grouping: tuple[Predictor, ...]
    time_column: str
    event_column: str
    event_description: str
    time_zero: str
    horizons_months: tuple[int, ...]
    main_horizon_months: int
    cross_field_rules: tuple[CrossFieldRule, ...] = ()
    version: str = "1"
    endpoint_names: dict[str, str] = field(default_factory=dict)
    # Raw outcome columns beyond (time_column, event_column), e.g. death and GVHD times for all_hsct.
    extra_outcome_columns: tuple[Predictor, ...] = ()
    # Row-level checks across the raw outcome columns (e.g. death before relapse).
    outcome_check: Callable[[pd.DataFrame], list[Problem]] | None = None
    # Predictors computed from others (e.g. MRD log reduction): filled when a file or request leaves them out.
    derived_predictors: tuple[tuple[str, Callable[[pd.DataFrame], pd.Series]], ...] = ()
    # One-record versions of derived predictors (record -> value, None when unknown), by name, when registered.
    derived_records: dict[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    # Accepted unit suffixes of the time column in a registry file (its name ends in `_months`), e.g. a file may
    # send `rfs_days` for `rfs_months`; the loader converts and the run records it.
    time_unit_suffixes: tuple[str, ...] = ()
    # What each endpoint means, for the data dictionary (endpoint name -> sentence).
    endpoint_descriptions: dict[str, str] = field(default_factory=dict)
    # Codes the event column may hold besides 0 (censored): 1 for an event flag, K for K competing causes.
    event_codes: int = 1
    # The wording every surface uses, from the spec: endpoint -> (plot title, answer phrase), and the intended use
    # and users and limits (who uses it, what it must not be used for). Carried by the bundle (to_json).
    endpoint_wording: dict[str, tuple[str, str]] = field(default_factory=dict)
    use: tuple[str, str] | None = None
    # Categorical or boolean predictors whose every combination gets its own baseline hazard (risk_model/strata.py).
    strata: tuple[str, ...] = ()

    def add_derived(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with every derived predictor it lacks computed by its one function."""
        missing = [(name, derive) for name, derive in self.derived_predictors if name not in frame.columns]
        if not missing:
            return frame
        frame = frame.copy()
        for name, derive in missing:
            frame[name] = derive(frame).to_numpy()
        return frame

    @property
    def prepares_records(self) -> bool:
        """Every cross-field rule and derived predictor has a one-record version (`prepare_record` can answer)."""
        return (all(rule.holds_record is not None for rule in self.cross_field_rules)
                and all(name in self.derived_records for name, _ in self.derived_predictors))

    def prepare_record(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[CrossFieldRule]]:
        """One record with the derived predictors it lacks (a number as float, a category as its text, None when
        unknown) and the rules it breaks, as `add_derived` and `holds` give them for a one-row frame."""
        values = dict(record)
        for name, _ in self.derived_predictors:
            if name not in record:
                values[name] = self.derived_records[name](values)
        return values, [rule for rule in self.cross_field_rules if not rule.holds_record(values)]

    def duration_columns(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(column, canonical unit, accepted unit suffixes) of every column a file may send in another unit."""
        columns = [(p.name, p.unit, p.unit_suffixes) for p in (*self.predictors, *self.extra_outcome_columns)
                   if p.unit_suffixes and p.unit]
        if self.time_unit_suffixes:
            columns.append((self.time_column, "months", self.time_unit_suffixes))
        return columns

    @property
    def main_endpoint(self) -> str:
        """The first endpoint declared (`relapse` for the three default tasks): headline metrics, family choice."""
        return next(iter(self.endpoint_names))

    @property
    def predictor_names(self) -> list[str]:
        return [p.name for p in self.predictors]

    @property
    def grouping_names(self) -> list[str]:
        return [g.name for g in self.grouping]

    @property
    def outcome_columns(self) -> list[str]:
        return [self.time_column, self.event_column, *(c.name for c in self.extra_outcome_columns)]

    def predictor(self, name: str) -> Predictor:
        for p in (*self.predictors, *self.grouping, *self.extra_outcome_columns):
            if p.name == name:
                return p
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """A plain description of the schema for bundles and the data dictionary."""
        return {
            "task": self.task,
            "version": self.version,
            "time_zero": self.time_zero,
            "event": self.event_description,
            "horizons_months": list(self.horizons_months),
            "endpoints": dict(self.endpoint_names),
            "predictors": [_predictor_json(p) for p in self.predictors],
            "grouping": [_predictor_json(g) for g in self.grouping],
            "title": self.title,
            "endpoint_wording": {name: {"title": title, "phrase": phrase}
                                 for name, (title, phrase) in self.endpoint_wording.items()},
            "use": {"intended_use": self.use[0], "users_and_limits": self.use[1]} if self.use else None,
            "strata": list(self.strata),
        }


def _predictor_json(p: Predictor) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "label": short_label(p.description),
        "description": p.description,
        "unit": p.unit,
        "minimum": p.minimum,
        "maximum": p.maximum,
        "categories": list(p.categories),
        "required": p.required,
        "example": p.example,
    }


def short_label(description: str) -> str:
    """A form label from a predictor's description: its first clause ("Sokal risk group at diagnosis";
    "BCR-ABL1 halving time in the first 3 months of TKI therapy" without its "(optional)")."""
    text = description.strip().removesuffix(".")
    for stop, shortest in ((": ", 4), (" (", 12), ("; ", 12)):
        at = text.find(stop)
        if at >= shortest:
            text = text[:at]
    return text


def unit_variant(name: str, unit: str, suffix: str) -> str:
    """The column name of `name` (which ends in `_<unit>`) sent in another unit: `tki_years` -> `tki_months`."""
    if not name.endswith(f"_{unit}"):
        raise ValueError(f"{name!r} does not end in its unit {unit!r}")
    return f"{name[: -len(unit) - 1]}_{suffix}"


# --- validation of a frame -----------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so reports print 17.45 rather than np.float64(17.45)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def shown(value: Any) -> str:
    """How a value appears in a report: text quoted, numbers plain, a row's values as name=value pairs."""
    value = plain(value)
    if isinstance(value, dict):
        return "values " + ", ".join(f"{key}={item!r}" for key, item in value.items())
    return f"value {value!r}"


@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be used: where it is and which rule it breaks."""

    row: int | None  # 1-based data row in the file (header excluded); None for a whole column
    column: str
    value: Any
    rule: str

    def __str__(self) -> str:
        if self.row is None and self.value is None:  # a whole column (missing, unknown, identifier)
            return f"column {self.column!r}: {self.rule}"
        where = f"row {self.row}" if self.row is not None else "all rows"
        return f"{where}, column {self.column!r}, {shown(self.value)}: {self.rule}"


class SchemaValidationError(ValueError):
    """Raised with every problem found in a frame, so a registry fixes its export in one pass."""

    def __init__(self, task: str, problems: list[Problem]):
        self.task = task
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{len(problems)} problem(s) in the {task} file; nothing was trained:\n{lines}{more}")


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _as_boolean(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a boolean column; returns values (float 1/0/NaN) and a mask of unparseable entries."""
    text = column.astype("string").str.strip().str.lower()
    parsed = pd.Series(np.nan, index=column.index, dtype=float)
    parsed[text.isin(_TRUE)] = 1.0
    parsed[text.isin(_FALSE)] = 0.0
    bad = column.notna() & parsed.isna()
    return parsed, bad


def _check_predictor(frame: pd.DataFrame, p: Predictor, problems: list[Problem], notes: list[str]) -> pd.Series:
    raw = frame[p.name]
    missing = raw.isna() | raw.astype("string").str.strip().eq("")
    if p.kind == "number":
        values = pd.to_numeric(raw.where(~missing), errors="coerce")
        bad_type = ~missing & values.isna()
        _report(problems, raw, bad_type, p.name, "must be a number")
        if p.minimum is not None:
            _report(problems, raw, values < p.minimum, p.name, f"must be >= {p.minimum} {p.unit or ''}".strip())
        if p.maximum is not None:
            _report(problems, raw, values > p.maximum, p.name, f"must be <= {p.maximum} {p.unit or ''}".strip())
        if p.whole_number:
            _report(problems, raw, values % 1 != 0, p.name,
                    "must be a whole number" + (f" ({p.unit})" if p.unit else ""))
        cleaned: pd.Series = values.astype(float)
    elif p.kind == "boolean":
        cleaned, bad_type = _as_boolean(raw.where(~missing))
        _report(problems, raw, bad_type, p.name, "must be true/false (or 1/0, yes/no)")
    elif p.kind == "text":
        cleaned = raw.where(~missing).astype("string").str.strip().astype(object)
    else:
        cleaned = _match_categories(raw, missing, p, problems, notes)
    if p.required:
        _report(problems, raw, missing, p.name, "required value is missing")
    return cleaned


def _match_categories(raw: pd.Series, missing: pd.Series, p: Predictor, problems: list[Problem],
                      notes: list[str]) -> pd.Series:
    """Labels as the schema spells them: a label differing only in case or surrounding spaces is matched and
    noted; an unknown one is a problem, with the closest allowed label when one is near (a typing slip)."""
    text = raw.where(~missing).astype("string").str.strip()
    by_folded = {c.casefold(): c for c in p.categories}
    canonical = text.where(text.isin(p.categories), text.str.casefold().map(by_folded))
    unknown = (~missing & canonical.isna()).fillna(False)
    for position in np.flatnonzero(unknown.to_numpy()):
        value = raw.iloc[position]
        problems.append(Problem(int(position) + 1, p.name, value, unknown_category_rule(str(value), p.categories)))
    relabelled = (~missing & ~unknown & (raw.astype("string") != canonical)).fillna(False).to_numpy()
    if relabelled.any():
        pairs = pd.DataFrame({"sent": raw[relabelled].astype(str), "read": canonical[relabelled].astype(str)})
        for (sent, read), count in pairs.value_counts(sort=False).items():
            notes.append(f"{p.name}: {sent!r} read as {read!r} in {count} row(s) (case or surrounding spaces differ)")
    return canonical.astype("string").astype(object)


def closest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.75) -> str | None:
    """The allowed spelling nearest to a near miss (`imatinb` -> `imatinib`), compared without case."""
    folded = {choice.casefold(): choice for choice in choices}
    match = difflib.get_close_matches(word.strip().casefold(), list(folded), n=1, cutoff=cutoff)
    return folded[match[0]] if match else None


def unknown_category_rule(label: str, categories: tuple[str, ...]) -> str:
    near = closest(label, categories)
    hint = f"did you mean {near!r}? " if near else ""
    return f"unknown category; {hint}allowed: {', '.join(categories)}"


def _report(problems: list[Problem], raw: pd.Series, mask: pd.Series, column: str, rule: str) -> None:
    for position in np.flatnonzero(mask.fillna(False).to_numpy()):
        value = raw.iloc[position]
        problems.append(Problem(int(position) + 1, column, None if pd.isna(value) else plain(value), rule))


def validate_frame(
    frame: pd.DataFrame,
    schema: TaskSchema,
    *,
    require_outcome: bool = True,
    allowed_extra: tuple[str, ...] = (),
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Check every row and column against the schema; return a typed frame or raise with every problem.

    The frame keeps only schema columns (predictors, grouping, outcome), so nothing else travels further.
    `notes` (when given) receives what was read leniently, e.g. a category label in another case.
    """
    notes = [] if notes is None else notes
    problems: list[Problem] = []
    frame = schema.add_derived(frame)
    expected = [*schema.predictor_names, *schema.grouping_names]
    if require_outcome:
        expected += schema.outcome_columns
    for name in expected:
        if name not in frame.columns:
            required = name in schema.outcome_columns or schema.predictor(name).required
            if required:
                problems.append(Problem(None, name, None, "required column is missing"))
    clean = pd.DataFrame(index=frame.index)
    for p in (*schema.predictors, *schema.grouping):
        if p.name in frame.columns:
            clean[p.name] = _check_predictor(frame, p, problems, notes)
        else:
            clean[p.name] = None if p.kind in ("category", "text") else np.nan
    if require_outcome:
        for extra in schema.extra_outcome_columns:
            if extra.name in frame.columns:
                clean[extra.name] = _check_predictor(frame, extra, problems, notes)
    if require_outcome and all(c in frame.columns for c in schema.outcome_columns[:2]):
        from features.survival_target import outcome_problems

        time, event, outcome_issues = outcome_problems(frame[schema.time_column], frame[schema.event_column],
                                                       schema.time_column, schema.event_column,
                                                       n_causes=schema.event_codes)
        problems.extend(outcome_issues)
        clean[schema.time_column] = time
        clean[schema.event_column] = event
        if schema.outcome_check is not None:
            problems.extend(schema.outcome_check(frame))
    for rule in schema.cross_field_rules:
        if all(c in clean.columns for c in rule.columns):
            fails = ~rule.holds(clean)
            for position in np.flatnonzero(fails.to_numpy()):
                values = {c: plain(clean[c].iloc[position]) for c in rule.columns}
                problems.append(Problem(int(position) + 1, ",".join(rule.columns), values, rule.name))
    if problems:
        problems.sort(key=lambda p: (p.row or 0, p.column))
        raise SchemaValidationError(schema.task, problems)
    return clean.reset_index(drop=True)
