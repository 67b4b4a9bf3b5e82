"""Centre and country of all_hsct's file hold codes: names, long numbers and per-patient values are refused (they
would be written into MLflow artifacts and tags), without echoing them."""

import pandas as pd
import pytest

from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from tasks.all_hsct import SCHEMA as ALL_HSCT_SCHEMA
from tasks.all_hsct.generator import generate_all_hsct_cohort

FIRST = ["Anna", "Jean", "Marie", "Lukas", "Sofia", "Pierre", "Elena", "Jan", "Laura", "Paul", "Ines", "Tomas",
         "Clara", "Hugo", "Eva", "Mateo", "Nora", "Felix", "Lea", "Oskar"]
LAST = ["Dupont", "Muller", "Rossi", "Janssen", "Garcia", "Novak", "Berg", "Martin", "Kowalski", "Silva",
        "Moreau", "Schmidt", "Bianchi", "Visser", "Lopez", "Horvat", "Lind", "Petit", "Weber", "Costa"]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_all_hsct_cohort(400, seed=5)


def refusal(frame: pd.DataFrame, tmp_path, schema=ALL_HSCT_SCHEMA) -> SchemaValidationError:
    path = tmp_path / "registry.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, schema)
    return raised.value


def test_a_centre_column_of_400_person_names_is_refused_and_not_echoed(cohort, tmp_path):
    names = [f"{first} {last}" for first in FIRST for last in LAST][:len(cohort)]
    error = refusal(cohort.assign(centre=names), tmp_path)
    centre = [p for p in error.problems if p.column == "centre"]
    rules = " ".join(p.rule for p in centre)
    assert "400 value(s) look like person names" in rules and "first in row 1" in rules
    assert "400 distinct values among 400 patients" in rules
    assert all(p.row is None and p.value is None for p in centre)
    assert {p.column for p in error.problems} == {"centre"}  # nothing else is wrong with the file
    message = str(error)
    assert not any(name in message for name in names)


def test_national_number_like_country_values_are_refused(cohort, tmp_path):
    numbers = [f"{850101 + i:06d}-{1000 + i}" for i in range(len(cohort))]  # personnummer/CPR-like
    error = refusal(cohort.assign(country=numbers), tmp_path)
    rules = " ".join(p.rule for p in error.problems if p.column == "country")
    assert "are long numbers" in rules and "not ISO 3166" not in rules
    assert "850101-1000" not in str(error)


def test_country_must_be_a_two_letter_code_and_small_letters_are_read_in_capitals(cohort, tmp_path):
    lower = cohort.assign(country=cohort["country"].str.lower())
    path = tmp_path / "lower.csv"
    lower.to_csv(path, index=False)
    loaded = load_registry_file(path, ALL_HSCT_SCHEMA)
    assert list(loaded.frame["country"]) == list(cohort["country"])
    assert any("read in capitals" in note for note in loaded.notes)
    named = cohort.astype(object).copy()
    named.loc[3, "country"] = "Germany"
    error = refusal(named, tmp_path)
    [problem] = error.problems
    assert "not ISO 3166 alpha-2" in problem.rule and "first in row 4" in problem.rule


def test_per_patient_codes_are_refused_by_their_count(cohort, tmp_path):
    codes = [f"C{i % 300:03d}" for i in range(len(cohort))]  # 300 codes for 400 patients: no name, no number
    error = refusal(cohort.assign(centre=codes), tmp_path)
    [problem] = error.problems
    assert problem.column == "centre" and "300 distinct values among 400 patients" in problem.rule
