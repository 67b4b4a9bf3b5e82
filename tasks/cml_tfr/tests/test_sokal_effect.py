"""cml_tfr's Cox model learns its generator's Sokal effect: the risk and the Sokal contribution rise from low to
high Sokal risk (n = 600, fixed seed, as in the families' general test)."""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort
from training.families import CoxFamily
from training.pipeline import complete_bundle

SEED = 13


@pytest.fixture(scope="module")
def cox_bundle() -> ModelBundle:
    development = validate_frame(generate_cml_tfr_cohort(600, seed=SEED), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, TASKS["cml_tfr"].cause_targets(development)["relapse"])
    bundle = ModelBundle(task="cml_tfr", family="cox_ph", outcome="single_event",
                         causes={"relapse": fitted.cause_model()}, horizons_months=list(CML_TFR_SCHEMA.horizons_months),
                         main_horizon_months=CML_TFR_SCHEMA.main_horizon_months, schema=CML_TFR_SCHEMA.to_json())
    return complete_bundle(bundle, development, CML_TFR_SCHEMA, SEED)


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    frame = validate_frame(generate_cml_tfr_cohort(40, seed=SEED + 1), CML_TFR_SCHEMA)
    return frame[CML_TFR_SCHEMA.predictor_names]


def test_risk_rises_with_sokal_risk(cox_bundle, patients):
    # Generator: Sokal high HR 2.0 vs low (clarifications section 3), so the Cox model must rank high above low.
    bundle = cox_bundle
    one = patients.iloc[[0, 1, 2]].copy()
    low, high = one.assign(sokal_risk="low"), one.assign(sokal_risk="high")
    months = np.array([6.0, 12.0, 24.0])
    assert np.all(bundle.event_probability(high, months) > bundle.event_probability(low, months))
    values, _ = bundle.contributions(high, 12)
    values_low, _ = bundle.contributions(low, 12)
    sokal = CML_TFR_SCHEMA.predictor_names.index("sokal_risk")
    assert np.all(values[:, sokal] > values_low[:, sokal])
