"""The `cml_tfr` task: molecular relapse after stopping a tyrosine-kinase inhibitor (clinical-evidence A.4).

Time zero is the day the TKI is stopped; the event is loss of major molecular response (BCR-ABL1 IS > 0.1 %);
patients still in MMR are censored at their last PCR. Event times in months.
"""

from __future__ import annotations

import pandas as pd

from features.task_schema import CrossFieldRule, Predictor, TaskSchema

DURATION_SUFFIXES = ("years", "months", "days")


def _dmr_within_tki(frame: pd.DataFrame) -> pd.Series:
    """Deep response is reached on TKI, so it cannot last longer than the TKI itself."""
    dmr, tki = frame["dmr_years"], frame["tki_years"]
    return dmr.isna() | tki.isna() | (dmr <= tki + 1e-9)


def _tki_within_age(frame: pd.DataFrame) -> pd.Series:
    """TKI therapy started after birth: it cannot have lasted longer than the patient has lived."""
    tki = pd.to_numeric(frame["tki_years"], errors="coerce")
    age = pd.to_numeric(frame["age_at_stop_years"], errors="coerce")
    return ~(tki > age + 1e-9)


CML_TFR_SCHEMA = TaskSchema(
    task="cml_tfr",
    title="CML treatment-free remission after stopping a TKI",
    time_zero="the day the tyrosine-kinase inhibitor is stopped",
    event_description="molecular relapse: loss of major molecular response (BCR-ABL1 IS > 0.1 %)",
    time_column="months_to_relapse_or_last_pcr",
    event_column="relapsed",
    horizons_months=(6, 12, 24, 36, 60),
    main_horizon_months=12,
    endpoint_names={"relapse": "incidence", "relapse_free": "survival"},
    endpoint_descriptions={
        "relapse": "probability of molecular relapse (loss of MMR) by t months after the stop",
        "relapse_free": "probability of still being in treatment-free remission at t months (1 minus the above)",
    },
    predictors=(
        Predictor("age_at_stop_years", "number", "Age on the day the TKI was stopped", unit="years",
                  minimum=18, maximum=100, example=58.0),
        Predictor("sex", "category", "Sex recorded at diagnosis", categories=("female", "male"),
                  example="female"),
        Predictor("tki_years", "number", "Total duration of TKI therapy before the stop", unit="years",
                  minimum=0.5, maximum=40, example=7.4, monotone=-1, unit_suffixes=DURATION_SUFFIXES),
        Predictor("dmr_years", "number", "Duration of deep molecular response (MR4 or deeper) before the stop",
                  unit="years", minimum=0.0, maximum=40, example=4.3, monotone=-1,
                  unit_suffixes=DURATION_SUFFIXES),
        Predictor("depth_at_stop", "category",
                  "Depth of response at the stop: MR4 only (BCR-ABL1 <= 0.01 %) or MR4.5 and deeper "
                  "(<= 0.0032 %, including undetectable)", categories=("MR4", "MR4.5"), example="MR4.5"),
        Predictor("sokal_risk", "category", "Sokal risk group at diagnosis",
                  categories=("low", "intermediate", "high"), example="low"),
        Predictor("transcript_type", "category", "BCR-ABL1 transcript type",
                  categories=("e14a2", "e13a2"), example="e14a2"),
        Predictor("prior_interferon", "boolean", "Interferon-alpha before or with the TKI", example=False),
        Predictor("tki_at_stop", "category", "TKI taken at the time of the stop",
                  categories=("imatinib", "nilotinib", "dasatinib", "bosutinib", "ponatinib"),
                  example="imatinib"),
        Predictor("prior_resistance", "boolean", "Resistance or suboptimal response to an earlier TKI",
                  example=False),
        Predictor("more_than_one_tki_line", "boolean", "More than one line of TKI therapy", example=False),
        Predictor("bcr_abl1_halving_time_days", "number",
                  "BCR-ABL1 halving time in the first 3 months of TKI therapy (optional)", unit="days",
                  minimum=1, maximum=365, required=False, example=None, unit_suffixes=("days",)),
        Predictor("nk_cell_level", "category",
                  "CD56dim NK-cell level at the stop relative to the cohort median (optional)",
                  categories=("below_median", "above_median"), required=False, example=None),
    ),
    grouping=(
        Predictor("centre", "text", "Treating centre code (grouping and reporting only, never a predictor)",
                  required=False, example=None),
        Predictor("country", "text", "Country code, ISO 3166 alpha-2 (grouping and reporting only)",
                  required=False, example=None),
    ),
    cross_field_rules=(
        CrossFieldRule("deep response duration cannot exceed TKI duration (dmr_years <= tki_years)",
                       ("dmr_years", "tki_years"), _dmr_within_tki),
        CrossFieldRule("TKI duration cannot be longer than the patient's age (tki_years <= age_at_stop_years)",
                       ("tki_years", "age_at_stop_years"), _tki_within_age),
    ),
)
