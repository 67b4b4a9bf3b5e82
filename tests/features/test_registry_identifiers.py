"""Identifiers are refused by name or by value (dates), never echoed. Here the recognisers themselves; the refusal
of a whole file is tested on a task's file in its folder (tasks/*/tests/test_registry_identifiers.py)."""

import pandas as pd
import pytest

from features.registry_file import date_valued_rows, is_identifier_like

IDENTIFIER_NAMES = ["first_name", "surname", "patient_name", "initials", "date_of_birth", "dob", "birth_year",
                    "nhs_number", "ssn", "national_id", "hospital_number", "hospital_id", "mrn",
                    "medical_record_number", "insurance_number", "passport_no", "address", "postcode", "phone",
                    "email", "transplant_date", "date_of_stop", "last_pcr_dt"]
INNOCUOUS_NAMES = ["favourite_colour", "tki_at_stop", "sokal_risk", "age_class", "disease_subclass", "comment"]


@pytest.mark.parametrize("name", IDENTIFIER_NAMES)
def test_identifier_like_names(name):
    assert is_identifier_like(name)


@pytest.mark.parametrize("name", INNOCUOUS_NAMES)
def test_innocuous_names(name):
    assert not is_identifier_like(name)


def test_date_values_are_recognised_but_classes_and_numbers_are_not():
    values = pd.Series(["2019-03-04", "04.03.2019", "4/3/19", "04-Mar-2019", "2019-03-04T10:22:00", None])
    assert date_valued_rows(values) == [1, 2, 3, 4, 5]
    not_dates = pd.Series(["1995-1998", "20-40", "<=20", "1-2", "12.5", "0.46", "MR4.5", "e14a2"])
    assert date_valued_rows(not_dates) == []
    assert date_valued_rows(pd.Series(pd.to_datetime(["2019-03-04", None]))) == [1]
