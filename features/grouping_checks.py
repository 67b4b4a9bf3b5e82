"""Grouping columns (centre, country) hold codes, never identifiers: their values are written into MLflow
artifacts and tags (per-centre metrics, subgroup tables), so a name or a national number sent there would be
published with the run. They get the identifier checks of the rest of the file, by value:

- person names ("Jean Dupont", "Dupont, Jean", "DUPONT Jean") and e-mail addresses;
- long numbers: 7 or more digits in one value (national, insurance, hospital or phone numbers; compact dates);
- exact dates (checked for every known column by the loader);
- too many distinct values: at least 10 distinct values and more than one per two patients is what a per-patient
  value looks like. A registry with many small centres passes (100 patients in 45 centres is 0.45 per
  patient); a column where most values occur once does not. Small centres can be grouped into one code.
- country: an ISO 3166 alpha-2 code (two letters, any case; read in capitals).

No value is echoed in a report: a problem names the column, how many values and the first row.
"""

from __future__ import annotations

import re

import pandas as pd

from features.task_schema import Problem, TaskSchema

LONG_NUMBER_DIGITS = 7
MIN_DISTINCT_FOR_RATIO = 10
MAX_DISTINCT_PER_PATIENT = 0.5
MAX_CODE_LENGTH = 64  # the request field's limit
COUNTRY_COLUMN = "country"
COUNTRY_CODE = re.compile(r"[A-Za-z]{2}")
EMAIL = re.compile(r"\S+@\S+\.\w+")
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
# Words of institution names ("Hôpital Saint-Louis", "Leiden UMC"), so a centre written as a name is not taken
# for a person; such a value is still better sent as a code.
INSTITUTION_WORDS = {
    "hospital", "hôpital", "hopital", "hospitalier", "ospedale", "hospices", "spital", "krankenhaus", "klinik",
    "klinikum", "uniklinik", "universitätsklinikum", "clinic", "clinique", "clinica", "clínica", "policlinico",
    "university", "universität", "université", "universidad", "universita", "università", "centre", "center",
    "centro", "zentrum", "medical", "institute", "institut", "instituto", "umc", "chu", "chru", "ghu", "aphp",
}


def looks_like_person(value: str) -> bool:
    """Two to four words of letters, each capitalised (Dupont) or in capitals (DUPONT), one of them capitalised,
    an optional comma after the first ("Dupont, Jean"); an e-mail address counts too."""
    if EMAIL.fullmatch(value):
        return True
    words = value.replace(",", " , ", 1).split()
    if "," in words and words.index(",") != 1:
        return False
    words = [word for word in words if word != ","]
    if not 2 <= len(words) <= 4 or any(word.lower() in INSTITUTION_WORDS for word in words):
        return False
    if not all(_WORD.fullmatch(word) for word in words):
        return False
    capitalised = [word[0].isupper() and word[1:].islower() for word in words]
    capitals = [word.isupper() and len(word) > 1 for word in words]
    return all(a or b for a, b in zip(capitalised, capitals, strict=True)) and any(capitalised)


def looks_like_number_identifier(value: str) -> bool:
    return sum(character.isdigit() for character in value) >= LONG_NUMBER_DIGITS


def grouping_problems(frame: pd.DataFrame, schema: TaskSchema) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """(frame with country codes in capitals, problems, notes) for the grouping columns present."""
    problems: list[Problem] = []
    notes: list[str] = []
    frame = frame.reset_index(drop=True)
    for name in schema.grouping_names:
        if name not in frame.columns:
            continue
        text = frame[name].astype("string").str.strip()
        present = text.notna() & text.ne("")
        values = text[present]
        problems += _identifier_problems(name, values)
        problems += _distinct_problems(name, values)
        if name == COUNTRY_COLUMN:
            frame, country_problems, country_notes = _country_codes(frame, values)
            problems += country_problems
            notes += country_notes
    return frame, problems, notes


def _first_rows(values: pd.Series, mask: pd.Series) -> tuple[int, int]:
    """(how many, first 1-based row) of the values where mask holds (the frame's index is its row position)."""
    hits = values.index[mask.to_numpy(bool)]
    return len(hits), int(hits[0]) + 1


def _identifier_problems(name: str, values: pd.Series) -> list[Problem]:
    problems = []
    checks = (
        (looks_like_person, "look like person names or e-mail addresses"),
        (looks_like_number_identifier, f"are long numbers ({LONG_NUMBER_DIGITS} or more digits, like national, "
                                       "insurance, hospital or phone numbers)"),
        (lambda value: len(value) > MAX_CODE_LENGTH, f"are longer than {MAX_CODE_LENGTH} characters"),
    )
    for check, what in checks:
        mask = values.map(check).astype(bool)
        if mask.any():
            count, first = _first_rows(values, mask)
            problems.append(Problem(None, name, None, (
                f"direct identifier: {count} value(s) {what}, first in row {first}; a grouping column takes a "
                "centre or country code, never a person's data: replace the values by codes (values not shown)")))
    return problems


def _distinct_problems(name: str, values: pd.Series) -> list[Problem]:
    distinct, patients = values.nunique(), len(values)
    if distinct < MIN_DISTINCT_FOR_RATIO or distinct <= MAX_DISTINCT_PER_PATIENT * patients:
        return []
    return [Problem(None, name, None, (
        f"{distinct} distinct values among {patients} patients (more than one per two patients): that is what names "
        "or patient numbers look like, not centre or country codes; if these really are centres, group the "
        "small ones under one code (e.g. per country) or leave the column empty (values not shown)"))]


def _country_codes(frame: pd.DataFrame, values: pd.Series) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    codes = values.str.fullmatch(COUNTRY_CODE).astype(bool)
    problems, notes = [], []
    # Long numbers and names are refused above; the rest that is not two letters gets the format rule.
    other = ~codes & ~values.map(looks_like_number_identifier).astype(bool) & ~values.map(looks_like_person)
    if other.any():
        count, first = _first_rows(values, other)
        problems.append(Problem(None, COUNTRY_COLUMN, None, (
            f"{count} value(s) are not ISO 3166 alpha-2 country codes (two letters, e.g. DE, FR), first in row "
            f"{first} (values not shown)")))
    lower = codes & values.ne(values.str.upper())
    if lower.any():
        frame = frame.copy()
        frame.loc[values.index[lower.to_numpy(bool)], COUNTRY_COLUMN] = values[lower].str.upper()
        notes.append(f"{COUNTRY_COLUMN}: {int(lower.sum())} code(s) in small letters read in capitals (e.g. "
                     f"{values[lower].iloc[0]!r} as {values[lower].iloc[0].upper()!r})")
    return frame, problems, notes
