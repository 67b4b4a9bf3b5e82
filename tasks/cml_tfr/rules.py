"""Cross-field rules of the `cml_tfr` task (molecular relapse after stopping a TKI, clinical-evidence A.4);
`task.toml` beside this file names them (True = the row is fine; a missing value never fails a rule)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from features.mrd_rules import absent, record_number


def dmr_within_tki(frame: pd.DataFrame) -> pd.Series:
    """Deep response is reached on TKI, so it cannot last longer than the TKI itself."""
    dmr, tki = frame["dmr_years"], frame["tki_years"]
    return dmr.isna() | tki.isna() | (dmr <= tki + 1e-9)


def tki_within_age(frame: pd.DataFrame) -> pd.Series:
    """TKI therapy started after birth: it cannot have lasted longer than the patient has lived."""
    tki = pd.to_numeric(frame["tki_years"], errors="coerce")
    age = pd.to_numeric(frame["age_at_stop_years"], errors="coerce")
    return ~(tki > age + 1e-9)


def dmr_within_tki_record(record: Mapping[str, Any]) -> bool:
    """`dmr_within_tki` on one record (a one-patient request)."""
    dmr, tki = record.get("dmr_years"), record.get("tki_years")
    return absent(dmr) or absent(tki) or bool(dmr <= tki + 1e-9)


def tki_within_age_record(record: Mapping[str, Any]) -> bool:
    """`tki_within_age` on one record."""
    return not (record_number(record, "tki_years") > record_number(record, "age_at_stop_years") + 1e-9)
