"""Bring-your-own registry file: read CSV or Parquet, refuse identifiers, convert declared units, validate.

Every problem (row, column, value, rule) is collected before anything is refused, so a registry fixes its
export in one pass; nothing is trained from a file that fails.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.predictor_variation import constant_predictor_problems, with_optional
from features.task_schema import (
    UNIT_FACTORS_TO_DAYS,
    Problem,
    SchemaValidationError,
    TaskSchema,
    unit_variant,
    validate_frame,
)

PSEUDO_ID_COLUMN = "patient_pseudo_id"
# Column names that identify a person directly, or exact dates where the schema wants durations.
IDENTIFIER_PATTERNS = (
    r"(^|_)(first|last|given|family|sur|full|patient|maiden|fore)?_?name$", r"surname", r"initials",
    r"birth", r"(^|_)dob($|_)", r"(^|_)(nhs|ssn|mrn|nir|bsn|insee|personnummer|pesel|cpr|nhi|chi|ahv)($|_)",
    r"national_?(id|number|no|nr)", r"hospital_?(id|number|no|nr)", r"medical_record", r"record_?(number|no)",
    r"patient_?(id|number|no|nr)$", r"social_?security", r"insurance_?(id|number|no|nr)", r"passport",
    r"codice_?fiscale", r"(^|_)address", r"post_?code", r"zip", r"phone", r"e_?mail",
    r"_date$", r"^date_", r"(^|_)date($|_)", r"(^|_)dt($|_)", r"timestamp",
)
IDENTIFIER_RULE = "direct identifier (name, birth date, hospital/national number or exact date): remove it"
# Values that are calendar dates (2019-03-04, 2019/03/04, 04.03.2019, 4/3/19, 04-Mar-2019, with or without time).
_MONTH_NAMES = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
DATE_VALUE_PATTERN = re.compile(
    r"(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}[- ]" + _MONTH_NAMES
    + r"[- ]\d{2,4})([ t]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?z?)?", re.IGNORECASE)


@dataclass
class LoadedRegistryFile:
    frame: pd.DataFrame
    source: str
    unit_conversions: list[str] = field(default_factory=list)


def is_identifier_like(column: str) -> bool:
    name = column.strip().lower()
    return any(re.search(pattern, name) for pattern in IDENTIFIER_PATTERNS)


def date_valued_rows(values: pd.Series) -> list[int]:
    """1-based rows whose value is a calendar date (a date/datetime type, or text that reads as one)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return [int(i) + 1 for i in np.flatnonzero(values.notna().to_numpy())]

    def is_date(value: object) -> bool:
        if isinstance(value, str):
            return DATE_VALUE_PATTERN.fullmatch(value.strip()) is not None
        return isinstance(value, datetime.date | pd.Timestamp | np.datetime64)

    return [position + 1 for position, value in enumerate(values.to_numpy()) if is_date(value)]


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
    """Rename `<stem>_<unit>` duration columns (predictors and event times) to the schema's unit, converting."""
    converted = frame.copy()
    notes: list[str] = []
    for name, unit, suffixes in schema.duration_columns():
        if name in frame.columns or unit not in UNIT_FACTORS_TO_DAYS:
            continue
        for suffix in suffixes:
            variant = unit_variant(name, unit, suffix)
            if variant in frame.columns:
                factor = UNIT_FACTORS_TO_DAYS[suffix] / UNIT_FACTORS_TO_DAYS[unit]
                values = pd.to_numeric(converted.pop(variant), errors="coerce")
                bad = frame[variant].notna() & values.isna()
                # Keep unparseable text so validation reports it against the original value.
                converted[name] = (values * factor).astype(object).where(~bad, frame[variant])
                notes.append(f"{variant} -> {name} (x {factor:.6g})")
                break
    return converted, notes


def unknown_column_problems(frame: pd.DataFrame, schema: TaskSchema) -> list[Problem]:
    """Columns the schema does not know (identifier-like ones named as such), and any column holding dates.

    Identifier values are never echoed: a problem names the column (and for dates the first row), not the value.
    """
    known = {*schema.predictor_names, *schema.grouping_names, *schema.outcome_columns, PSEUDO_ID_COLUMN}
    problems = []
    for column in frame.columns:
        dated = date_valued_rows(frame[column])
        if column in known:
            if dated:
                problems.append(Problem(None, column, None, f"holds exact dates ({len(dated)} value(s), first in "
                                                            f"row {dated[0]}): send the schema's durations or "
                                                            "categories, never dates"))
            continue
        if is_identifier_like(column):
            rule = IDENTIFIER_RULE
        elif dated:
            rule = (f"direct identifier: its values are exact dates ({len(dated)} value(s), first in row "
                    f"{dated[0]}); send durations from time zero instead, or remove it")
        else:
            rule = "column is not in the schema: remove it or rename it (see the data dictionary)"
        problems.append(Problem(None, column, None, rule))
    return problems


def load_registry_file(path: str | Path, schema: TaskSchema, drop_predictors: Collection[str] = ()
                       ) -> LoadedRegistryFile:
    """Read, convert and validate a registry export; raises SchemaValidationError with every problem.

    `drop_predictors`: predictors the model will not use (they may be absent; others must vary)."""
    raw = read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    converted, notes = convert_units(raw, schema)
    problems = [*unknown_column_problems(converted, schema),
                *constant_predictor_problems(converted, schema, drop_predictors)]
    schema = with_optional(schema, drop_predictors)
    try:
        frame = validate_frame(converted.drop(columns=[PSEUDO_ID_COLUMN], errors="ignore"), schema)
    except SchemaValidationError as error:
        problems.extend(error.problems)
        frame = None
    if problems:
        raise SchemaValidationError(schema.task, problems)
    assert frame is not None
    return LoadedRegistryFile(frame=frame, source=str(Path(path).resolve()), unit_conversions=notes)
