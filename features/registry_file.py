"""Bring-your-own registry file: read CSV (separator, decimal mark and encoding detected: `file_format.py`) or
Parquet, match names written in another case, refuse identifiers (in grouping values too: `grouping_checks.py`),
convert declared units, validate.

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

from features.file_format import FileFormat, apply_decimal_mark, read_registry_table
from features.grouping_checks import grouping_problems
from features.predictor_variation import constant_predictor_problems, with_optional
from features.task_schema import (
    UNIT_FACTORS_TO_DAYS,
    Problem,
    SchemaValidationError,
    TaskSchema,
    closest,
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
    file_format: FileFormat | None = None
    # What was read leniently and is said so: column names or labels in another case, with surrounding spaces.
    notes: list[str] = field(default_factory=list)
    had_pseudo_id: bool = False


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


def read_table(path: str | Path, *, separator: str | None = None, decimal: str | None = None,
               encoding: str | None = None) -> pd.DataFrame:
    """The file as text columns (numbers with a decimal comma rewritten with a point); see `read_registry_table`."""
    frame, file_format = read_registry_table(path, separator=separator, decimal=decimal, encoding=encoding)
    frame, _ = apply_decimal_mark(frame, file_format.decimal)
    return frame


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


def known_columns(schema: TaskSchema) -> list[str]:
    """Every column name a file may carry: schema fields, outcome columns, unit variants, the pseudo id."""
    names = [*schema.predictor_names, *schema.grouping_names, *schema.outcome_columns, PSEUDO_ID_COLUMN]
    for name, unit, suffixes in schema.duration_columns():
        names += [unit_variant(name, unit, suffix) for suffix in suffixes if suffix != unit]
    return list(dict.fromkeys(names))


def match_column_names(frame: pd.DataFrame, schema: TaskSchema) -> tuple[pd.DataFrame, list[str], list[Problem]]:
    """Header names that differ from the schema's only in case or surrounding spaces take the schema's name (and
    are noted); two columns that would take the same name are a problem."""
    by_folded = {name.casefold(): name for name in known_columns(schema)}
    renamed, notes, problems = [], [], []
    for column in frame.columns:
        sent = str(column)
        name = by_folded.get(sent.strip().casefold(), sent.strip())
        if name != sent:
            notes.append(f"column {sent!r} read as {name!r} (case or surrounding spaces differ)")
        if name in renamed:
            problems.append(Problem(None, name, None, "two columns read as this one (they differ only in case or "
                                                      "spaces): keep one"))
        renamed.append(name)
    frame = frame.copy()
    frame.columns = renamed
    return frame.loc[:, ~frame.columns.duplicated()], notes, problems


def unknown_column_problems(frame: pd.DataFrame, schema: TaskSchema) -> list[Problem]:
    """Columns the schema does not know (identifier-like ones named as such, near misses with a "did you mean"),
    and any column holding dates.

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
            near = closest(column, [name for name in known_columns(schema) if name not in frame.columns], 0.8)
            action = f"did you mean {near!r}? rename it, or remove it" if near else "remove it or rename it"
            rule = f"column is not in the schema: {action} (see the data dictionary)"
        problems.append(Problem(None, column, None, rule))
    return problems


def dotted_number_problems(dotted: dict[str, list[int]], frame: pd.DataFrame, schema: TaskSchema) -> list[Problem]:
    """In a decimal-comma file, a number written with a dot is ambiguous (1.500: 1500 or 1.5?): ask for it plainly.
    Only schema columns are named with their values (the others are refused by name anyway)."""
    known = set(known_columns(schema)) - {PSEUDO_ID_COLUMN, *schema.grouping_names}
    return [Problem(row + 1, column, frame[column].iloc[row],
                    "the file writes decimals with a comma, but this number has a dot (a thousands separator?): "
                    "write it without grouping, with a decimal comma (e.g. 1500 or 1,5)")
            for column, rows in dotted.items() if column in known for row in rows]


def load_registry_file(path: str | Path, schema: TaskSchema, drop_predictors: Collection[str] = (), *,
                       separator: str | None = None, decimal: str | None = None, encoding: str | None = None
                       ) -> LoadedRegistryFile:
    """Read (format detected unless given), match, convert and validate a registry export; raises
    SchemaValidationError with every problem, or `features.file_format.RegistryFileError` (one sentence) when the
    file cannot be read at all. `drop_predictors`: predictors the model will not use (they may be absent; others
    must vary)."""
    raw, file_format = read_registry_table(path, separator=separator, decimal=decimal, encoding=encoding)
    raw, notes, problems = match_column_names(raw, schema)
    raw, dotted = apply_decimal_mark(raw, file_format.decimal)
    problems += dotted_number_problems(dotted, raw, schema)
    converted, conversions = convert_units(raw, schema)
    problems += unknown_column_problems(converted, schema)
    problems += constant_predictor_problems(converted, schema, drop_predictors)
    schema = with_optional(schema, drop_predictors)
    converted, grouping_issues, grouping_notes = grouping_problems(converted, schema)
    problems += grouping_issues
    notes += grouping_notes
    try:
        frame = validate_frame(converted.drop(columns=[PSEUDO_ID_COLUMN], errors="ignore"), schema, notes=notes)
    except SchemaValidationError as error:
        problems.extend(error.problems)
        frame = None
    if problems:
        raise SchemaValidationError(schema.task, problems)
    assert frame is not None
    return LoadedRegistryFile(frame=frame, source=str(Path(path).resolve()), unit_conversions=conversions,
                              file_format=file_format, notes=notes, had_pseudo_id=PSEUDO_ID_COLUMN in raw.columns)
