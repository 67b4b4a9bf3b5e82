"""Centre and country hold codes: the recognisers of person names and long numbers among their values (they would be
written into MLflow artifacts and tags). The refusal of a whole file, and a real registry's many small centres
passing, are tested on the tasks' files in their folders (tasks/*/tests/test_grouping_checks.py)."""

import pytest

from features.grouping_checks import looks_like_number_identifier, looks_like_person


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
