"""Stop timing moves the way the data-generating model says: later stops after longer deep response are safer."""

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from risk_model.stop_timing import STATEMENT, projected_patient, stop_timing
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort, true_relapse_free_probability
from training.families import CoxFamily
from training.pipeline import complete_bundle

# Two years of deep response on four years of TKI: the generator gives HR 0.92 per year of deep response and HR
# 1.8 while TKI duration is under 5 years, so waiting 12 or 24 months must lower the projected risk.
PATIENT = {"age_at_stop_years": 55.0, "sex": "male", "tki_years": 4.0, "dmr_years": 2.0, "depth_at_stop": "MR4",
           "sokal_risk": "intermediate", "transcript_type": "e14a2", "prior_interferon": False,
           "tki_at_stop": "imatinib", "prior_resistance": False, "more_than_one_tki_line": False,
           "bcr_abl1_halving_time_days": 14.3, "nk_cell_level": "below_median"}


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    development = validate_frame(generate_cml_tfr_cohort(3000, seed=21), CML_TFR_SCHEMA)
    fitted = CoxFamily().fit(development, CML_TFR_SCHEMA, TASKS["cml_tfr"].cause_targets(development)["relapse"])
    bundle = ModelBundle(task="cml_tfr", family="cox_ph", outcome="single_event",
                         causes={"relapse": fitted.cause_model()}, horizons_months=[6, 12, 24, 36, 60],
                         main_horizon_months=12, schema=CML_TFR_SCHEMA.to_json())
    return complete_bundle(bundle, development, CML_TFR_SCHEMA, seed=0)


def test_generator_truth_falls_with_later_stops():
    truth = [1 - true_relapse_free_probability(pd.DataFrame([projected_patient(PATIENT, d)]), [24.0])[0, 0]
             for d in (0, 6, 12, 24)]
    assert truth == sorted(truth, reverse=True) and truth[0] - truth[-1] > 0.05


def test_projection_follows_the_generator(bundle):
    answer = stop_timing(bundle, PATIENT)
    risk_24 = [o["relapse_risk"][1]["probability"] for o in answer["options"]]
    assert [o["stop_after_months"] for o in answer["options"]] == [0, 6, 12, 24]
    assert risk_24[-1] < risk_24[0] and np.all(np.diff(risk_24) < 0)
    earliest = answer["recommendation"]["earliest_near_best_stop_after_months"]
    best = answer["recommendation"]["best_risk"]
    chosen = risk_24[[0, 6, 12, 24].index(earliest)]
    assert chosen <= best + 0.02 and all(r > best + 0.02 for r in risk_24[: [0, 6, 12, 24].index(earliest)])
    assert answer["statement"] == STATEMENT and "not a causal estimate" in STATEMENT
    assert answer["options"][2]["projected"]["tki_years"] == pytest.approx(5.0)
