"""Bring-your-own registry file: read CSV or Parquet, refuse identifiers, convert declared units, validate.

Every problem (row, column, value, rule) is collected before anything is refused, so a registry fixes its
export in one pass; nothing is trained from a file that fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.task_schema import (
    UNIT_FACTORS_TO_DAYS,
    Problem,
    SchemaValidationError,
    TaskSchema,
    validate_frame,
)

PSEUDO_ID_COLUMN = "patient_pseudo_id"
# Column names that identify a person directly, or exact dates where the schema wants durations.
IDENTIFIER_PATTERNS = (
    r"(^|_)(first|last|given|family|sur|full|patient)?_?name$", r"surname", r"initials",
    r"birth", r"(^|_)dob($|_)", r"(^|_)(nhs|ssn|mrn|nir|bsn|insee|personnummer)($|_)",
    r"national_?(id|number)", r"hospital_?(id|number|no)", r"medical_record", r"patient_?(id|number)$",
    r"(^|_)address", r"post_?code", r"zip", r"phone", r"e_?mail", r"_date$", r"^date_", r"(^|_)date($|_)",
)


@dataclass
class LoadedRegistryFile:
    frame: pd.DataFrame
    source: str
    unit_conversions: list[str] = field(default_factory=list)


def is_identifier_like(column: str) -> bool:
    name = column.strip().lower()
    return any(re.search(pattern, name) for pattern in IDENTIFIER_PATTERNS)


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"registry file not found: {path}")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    raise ValueError(f"unsupported file type {path.suffix!r}: use .csv or .parquet")


def convert_units(frame: pd.DataFrame, schema: TaskSchema) -> tuple[pd.DataFrame, list[str]]:
    """Rename `<stem>_<unit>` duration columns to the schema's unit, converting the values."""
    converted = frame.copy()
    notes: list[str] = []
    for p in schema.predictors:
        if not p.unit_suffixes or p.name in frame.columns or p.unit not in UNIT_FACTORS_TO_DAYS:
            continue
        for suffix in p.unit_suffixes:
            variant = f"{p.stem}_{suffix}"
            if variant in frame.columns:
                factor = UNIT_FACTORS_TO_DAYS[suffix] / UNIT_FACTORS_TO_DAYS[p.unit]
                values = pd.to_numeric(converted.pop(variant), errors="coerce")
                bad = frame[variant].notna() & values.isna()
                # Keep unparseable text so validation reports it against the original value.
                converted[p.name] = (values * factor).astype(object).where(~bad, frame[variant])
                notes.append(f"{variant} -> {p.name} (x {factor:.6g})")
                break
    return converted, notes


def unknown_column_problems(frame: pd.DataFrame, schema: TaskSchema) -> list[Problem]:
    known = {*schema.predictor_names, *schema.grouping_names, *schema.outcome_columns, PSEUDO_ID_COLUMN}
    problems = []
    for column in frame.columns:
        if column in known:
            continue
        if is_identifier_like(column):
            rule = "direct identifier (name, birth date, hospital/national number or exact date): remove it"
        else:
            rule = "column is not in the schema: remove it or rename it (see the data dictionary)"
        problems.append(Problem(None, column, None, rule))
    return problems


def load_registry_file(path: str | Path, schema: TaskSchema) -> LoadedRegistryFile:
    """Read, convert and validate a registry export; raises SchemaValidationError with every problem."""
    raw = read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    converted, notes = convert_units(raw, schema)
    problems = unknown_column_problems(converted, schema)
    try:
        frame = validate_frame(converted.drop(columns=[PSEUDO_ID_COLUMN], errors="ignore"), schema)
    except SchemaValidationError as error:
        problems.extend(error.problems)
        frame = None
    if problems:
        raise SchemaValidationError(schema.task, problems)
    assert frame is not None
    return LoadedRegistryFile(frame=frame, source=str(Path(path).resolve()), unit_conversions=notes)
