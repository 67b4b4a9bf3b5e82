"""No predictor is derived from follow-up, and grouping fields never reach a model (clarifications section 1)."""

import re

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from risk_model.preprocessing import Preprocessor
from tests.sample_tasks import SINGLE, sample_tasks
from training.families import CoxFamily, XGBoostCoxFamily

# Words that mark a field as measured after time zero (follow-up, the event, death, re-treatment). CNS status is
# the staging of CNS involvement at diagnosis (CNS1-3), not a vital or disease status at follow-up.
FOLLOW_UP_WORDS = r"relapse|follow|last_pcr|last_contact|months_to|time_to|event|death|dead|died|censor|" \
                  r"restart|regain|(?<!cns_)status|outcome|survival|recurrence"
GROUPING = {"centre", "country", "center", "site", "hospital"}

SCHEMAS = [task.schema for task in TASKS.values()]
# The fitting checks need a task's cohort, any task's: the sample single-event task's (it has centre and country).
SAMPLE = sample_tasks()[SINGLE]
SAMPLE_SCHEMA = SAMPLE.schema


# Platelet recovery (ebmt3's `prtime`, `prstat`) happens after the transplant: no task may take it as a predictor.
PLATELET = ("prtime", "prstat")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_no_task_has_a_platelet_recovery_predictor(task):
    names = TASKS[task].schema.predictor_names
    assert not [n for n in names if n in PLATELET or "platelet" in n], names


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return validate_frame(SAMPLE.generate_cohort(400, 17), SAMPLE_SCHEMA)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.task)
def test_outcome_and_grouping_columns_are_not_predictors(schema):
    predictors = set(schema.predictor_names)
    assert not predictors & set(schema.outcome_columns)
    assert not predictors & set(schema.grouping_names)
    assert not predictors & GROUPING
    assert len(predictors) == len(schema.predictor_names)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.task)
def test_no_predictor_is_named_like_a_follow_up_field(schema):
    leaky = [p.name for p in schema.predictors if re.search(FOLLOW_UP_WORDS, p.name)]
    assert not leaky, f"predictors that look derived from follow-up: {leaky}"
    # Durations are measured up to time zero (treatment, response, kinetics), never in event-time months.
    assert not [p.name for p in schema.predictors if p.unit == "months"]


@pytest.mark.parametrize("impute", [True, False])
def test_preprocessor_columns_come_only_from_predictors(cohort, impute):
    preprocessor = Preprocessor(impute=impute).fit(cohort, SAMPLE_SCHEMA)
    assert set(preprocessor.sources) <= set(SAMPLE_SCHEMA.predictor_names)
    forbidden = {*SAMPLE_SCHEMA.outcome_columns, *SAMPLE_SCHEMA.grouping_names}
    for column in preprocessor.columns:
        assert column.split("=")[0].removesuffix("__missing") not in forbidden, column
        assert not re.search(FOLLOW_UP_WORDS, column), column


@pytest.mark.parametrize("impute", [True, False])
def test_matrix_ignores_outcome_and_grouping_values(cohort, impute):
    preprocessor = Preprocessor(impute=impute).fit(cohort, SAMPLE_SCHEMA)
    rng = np.random.default_rng(0)
    scrambled = cohort.assign(**{
        SAMPLE_SCHEMA.time_column: rng.permutation(cohort[SAMPLE_SCHEMA.time_column].to_numpy()),
        SAMPLE_SCHEMA.event_column: 1 - cohort[SAMPLE_SCHEMA.event_column],
        "centre": "XX-99", "country": "XX",
    })
    expected = preprocessor.transform(cohort)
    np.testing.assert_array_equal(preprocessor.transform(scrambled), expected)
    # A request carries only the predictors; the matrix is the same without outcome or grouping columns.
    np.testing.assert_array_equal(preprocessor.transform(cohort[SAMPLE_SCHEMA.predictor_names]), expected)


def test_fitted_families_see_only_predictors(cohort):
    target = SAMPLE.cause_targets(cohort)["relapse"]
    cox = CoxFamily().fit(cohort, SAMPLE_SCHEMA, target)
    boosted = XGBoostCoxFamily(params={"eta": 0.1, "max_depth": 2}, num_boost_round=20).fit(
        cohort, SAMPLE_SCHEMA, target)
    for family in (cox, boosted):
        assert set(family.preprocessor_.sources) <= set(SAMPLE_SCHEMA.predictor_names)
        with_outcome = family.predict_margin(cohort)
        without = family.predict_margin(cohort[SAMPLE_SCHEMA.predictor_names])
        np.testing.assert_array_equal(with_outcome, without)
    assert cox.preprocessor_.columns is not None and len(cox.coefficients_) == len(cox.preprocessor_.columns)
    model = cox.cause_model()
    assert not {"centre", "country", *SAMPLE_SCHEMA.outcome_columns} & set(model.preprocessor.feature_names)
