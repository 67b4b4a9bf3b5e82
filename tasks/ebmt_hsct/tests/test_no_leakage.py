"""Platelet recovery (`prtime`, `prstat` in ebmt3) happens after the transplant: it never enters the features
(clarifications section 1). With it, a validated C jumps from about 0.55 to about 0.75; the guard below shows
the gap is real, so a leaking predictor would be caught."""

import numpy as np
import pandas as pd
import pytest

from features.ebmt_registry import ebmt3_registry_file
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from features.tasks import TASKS
from risk_model.preprocessing import Preprocessor
from training.evaluate import harrell_c
from training.families import CoxFamily

PLATELET = ("prtime", "prstat")


@pytest.fixture(scope="module")
def rfs(rfs_loaded) -> pd.DataFrame:
    return rfs_loaded.frame


def test_adapter_drops_platelet_recovery(ebmt3, rfs):
    assert not set(PLATELET) & set(ebmt3_registry_file(ebmt3).columns)
    assert not set(PLATELET) & set(rfs.columns)


def test_a_file_carrying_platelet_recovery_is_refused(ebmt3, tmp_path):
    file = ebmt3_registry_file(ebmt3).assign(prtime=ebmt3["prtime"], prstat=ebmt3["prstat"])
    path = tmp_path / "with_platelets.csv"
    file.to_csv(path, index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, TASKS["ebmt_hsct"].schema, TASKS["ebmt_hsct"].public_extract.drop_predictors)
    assert {p.column for p in raised.value.problems} == set(PLATELET)


def test_model_matrix_holds_only_baseline_predictors(rfs):
    schema = TASKS["ebmt_hsct"].schema
    for impute in (True, False):
        preprocessor = Preprocessor(impute=impute).fit(rfs, schema)
        assert set(preprocessor.sources) <= set(schema.predictor_names)


def test_validated_c_stays_low_without_platelet_recovery_and_jumps_with_it(ebmt3, rfs):
    schema = TASKS["ebmt_hsct"].schema
    rows = np.random.default_rng(1).permutation(len(rfs))
    train, test = rows[:1650], rows[1650:]
    time, event = rfs["rfs_months"].to_numpy(), rfs["rfs_event"].to_numpy().astype(int)
    model = CoxFamily().fit(rfs.iloc[train], schema, (time[train], event[train]))
    honest = harrell_c(time[test], event[test], model.predict_margin(rfs.iloc[test]))
    assert 0.48 < honest < 0.62

    from lifelines import CoxPHFitter

    leaky = pd.DataFrame({"prstat": ebmt3["prstat"], "prtime": ebmt3["prtime"] / 30.4375,
                          "time": time, "event": event})
    fitted = CoxPHFitter(penalizer=0.01).fit(leaky.iloc[train], "time", "event")
    leaked = harrell_c(time[test], event[test], fitted.predict_log_partial_hazard(leaky.iloc[test]).to_numpy())
    assert leaked > honest + 0.1
