"""Centre and country hold codes: names, long numbers and per-patient values are refused (they would be written
into MLflow artifacts and tags), without echoing them; real registries with many small centres pass."""

import pandas as pd
import pytest

from features.grouping_checks import looks_like_number_identifier, looks_like_person
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from tasks.all_hsct import SCHEMA as ALL_HSCT_SCHEMA
from tasks.all_hsct.generator import generate_all_hsct_cohort
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort

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


def test_a_registry_with_many_small_centres_passes(tmp_path):
    """100 patients from 45 hospitals (most with 1-3 patients, median 2) is a real registry, not identifiers."""
    frame = generate_cml_tfr_cohort(100, seed=2)
    centres = [f"H{i:02d}" for i in range(45)] + [f"H{i % 20:02d}" for i in range(55)]
    path = tmp_path / "small_centres.csv"
    frame.assign(centre=centres).to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert loaded.frame["centre"].nunique() == 45


@pytest.mark.parametrize("value", ["Jean Dupont", "Dupont, Jean", "DUPONT Jean", "María José García",
                                   "jean.dupont@chu.fr"])
def test_person_like_values(value):
    assert looks_like_person(value)


@pytest.mark.parametrize("value", ["FR-01", "DE-02", "Leiden UMC", "Hôpital Saint-Louis", "Karolinska", "UMC LEIDEN",
                                   "Centre 3", "EBMT 1234"])
def test_codes_and_institutions_are_not_persons(value):
    assert not looks_like_person(value)
    assert not looks_like_number_identifier(value)


@pytest.mark.parametrize("value", ["1850101234", "850101-1234", "123 456 789", "19600101", "+33 6 12 34 56 78"])
def test_long_numbers(value):
    assert looks_like_number_identifier(value)
