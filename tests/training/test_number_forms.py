"""Numbers in the form the task spec declares (log2, restricted cubic spline, cuts): the Cox family's columns,
the encoding serving reads, knots shared by a bundle's members, and a grouped-time baseline."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.task_schema import validate_frame
from risk_model.breslow import BreslowBaseline
from risk_model.preprocessing import HARRELL_QUANTILES, PatientEncoding, Preprocessor, number_basis
from tests.sample_tasks import SINGLE, sample_tasks
from training.families import CoxFamily

TASK = sample_tasks()[SINGLE]  # declares a log2 transform (marker_level) and a cut (treatment_years at 5)


def _schema_with_spline_on_age():
    predictors = tuple(replace(p, spline_knots=4) if p.name == "age_years" else p
                       for p in TASK.schema.predictors)
    return replace(TASK.schema, predictors=predictors)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return validate_frame(TASK.generate_cohort(800, 21), TASK.schema)


def test_the_cox_columns_follow_the_declared_forms(cohort):
    columns = Preprocessor(impute=True).fit(cohort, _schema_with_spline_on_age()).columns
    # log2 replaces the marker's value; the treatment step comes beside the linear term; the spline adds two terms.
    assert "marker_level" not in columns and "marker_level@log2" in columns
    assert {"treatment_years", "treatment_years@ge5", "age_years", "age_years@rcs1", "age_years@rcs2"} <= set(columns)
    # xgboost reads the values only: trees need no transform.
    assert "treatment_years@ge5" not in Preprocessor(impute=False).fit(cohort, TASK.schema).columns


def test_knots_sit_at_harrells_quantiles_and_the_spline_is_linear_beyond_them(cohort):
    preprocessor = Preprocessor(impute=True).fit(cohort, _schema_with_spline_on_age())
    knots = preprocessor.knots()["age_years"]
    np.testing.assert_allclose(knots, np.quantile(cohort["age_years"], HARRELL_QUANTILES[4]), atol=1e-6)
    form = {"knots": knots}
    beyond = np.array([knots[-1] + 1, knots[-1] + 2, knots[-1] + 3])
    terms = number_basis(form, beyond)
    np.testing.assert_allclose(np.diff(terms, n=2, axis=0), 0.0, atol=1e-9)  # restricted: linear past the last knot
    np.testing.assert_array_equal(number_basis(form, np.array([knots[0] - 5.0])), 0.0)


def test_the_margin_is_one_product_with_the_encoding_for_frames_and_requests(cohort):
    schema = _schema_with_spline_on_age()
    target = TASK.cause_targets(cohort)["relapse"]
    model = CoxFamily().fit(cohort, schema, target)
    cause = model.cause_model()
    patients = cohort[schema.predictor_names].head(30)
    encoding = PatientEncoding.of(cause.preprocessor.schema_predictors)
    np.testing.assert_allclose(cause.margin(patients), model.predict_margin(patients), atol=1e-10)
    records = patients.astype(object).where(patients.notna(), None).to_dict("records")
    np.testing.assert_allclose(encoding.records(records), encoding.frame(patients), atol=1e-12)


def test_a_replicate_takes_the_point_models_knots_and_another_encoding_is_refused(cohort):
    schema = _schema_with_spline_on_age()
    target = TASK.cause_targets(cohort)["relapse"]
    point = CoxFamily().fit(cohort, schema, target).preprocessor_
    resample = cohort.sample(frac=1.0, replace=True, random_state=3).reset_index(drop=True)
    resample_target = TASK.cause_targets(resample)["relapse"]
    same = CoxFamily(knots=point.knots()).fit(resample, schema, resample_target).preprocessor_
    own = CoxFamily().fit(resample, schema, resample_target).preprocessor_
    assert same.knots() == point.knots() and own.knots() != point.knots()
    encoding = PatientEncoding.of(point.schema_predictors)
    same.linear_map(encoding)
    with pytest.raises(ValueError, match="age_years: the encoding's form"):
        own.linear_map(encoding)


def test_the_grouped_baseline_recovers_the_hazard_of_outcomes_seen_at_visits():
    rng = np.random.default_rng(5)
    margin = rng.normal(0.0, 0.8, 20_000)
    event_time = rng.exponential(10.0 / np.exp(margin))  # H0(t) = t / 10
    censor_time = rng.uniform(0, 30, len(margin))
    seen = np.ceil(np.minimum(event_time, censor_time))  # whole-month visits
    event = (event_time <= censor_time).astype(int)
    months = np.array([1.0, 5.0, 10.0])
    grouped = BreslowBaseline(ties="grouped").fit(margin, seen, event).cumulative_hazard(months)
    breslow = BreslowBaseline().fit(margin, seen, event).cumulative_hazard(months)
    np.testing.assert_allclose(grouped, months / 10.0, rtol=0.05)
    assert np.all(breslow < 0.95 * months / 10.0)  # continuous-time increments fall short at visits


def test_the_cox_family_respects_a_monotone_hint(cohort):
    # Age carries no effect in the generator; declared "risk never rises with age", a linear term that comes out
    # rising is left out, and a spline that rises anywhere over the training ages is too.
    target = TASK.cause_targets(cohort)["relapse"]
    free = CoxFamily().fit(cohort, _schema_with_spline_on_age(), target)
    hinted_schema = replace(_schema_with_spline_on_age(), predictors=tuple(
        replace(p, monotone=-1) if p.name == "age_years" else p
        for p in _schema_with_spline_on_age().predictors))
    hinted = CoxFamily().fit(cohort, hinted_schema, target)
    columns = hinted.preprocessor_.columns
    grid = pd.DataFrame({"age_years": np.linspace(cohort["age_years"].min(),
                                                          cohort["age_years"].max(), 40)})

    def age_effect(model: CoxFamily) -> np.ndarray:
        own = np.array([c.startswith("age_years") and not c.endswith("__missing") for c in columns])
        encoding = PatientEncoding.of(model.preprocessor_.schema_predictors)
        effect = model.preprocessor_.transform_encoded(encoding.frame(grid), encoding)
        return effect[:, own] @ model.coefficients_[own]

    assert np.any(np.diff(age_effect(free)) > 1e-9)  # unconstrained, the noise makes it rise somewhere
    assert np.all(np.diff(age_effect(hinted)) <= 1e-9)
    # The other predictors keep their effects (treatment_years' step at 5 years is still there).
    assert hinted.coefficients_[columns.index("treatment_years@ge5")] < 0
