"""ebmt_hsct without its disease subclass: the schemas for a dropped predictor, and what a request may leave out
for a model that did not learn it while the API document still requires it."""

import pytest
from pydantic import ValidationError

from features.predictor_variation import with_optional, without_predictors
from serving.request_models import patient_request_model
from tasks.ebmt_hsct import SCHEMA as EBMT_HSCT_SCHEMA


def test_schemas_for_a_dropped_predictor():
    relaxed = with_optional(EBMT_HSCT_SCHEMA, ["disease_subclass"])
    assert not relaxed.predictor("disease_subclass").required and relaxed.predictor("age_class").required
    assert "disease_subclass" not in without_predictors(EBMT_HSCT_SCHEMA, ["disease_subclass"]).predictor_names
    assert EBMT_HSCT_SCHEMA.predictor("disease_subclass").required  # the task's own schema is untouched


def test_a_request_may_leave_out_what_the_serving_model_did_not_learn_and_the_document_still_requires_it():
    not_learned: list[str] = []
    model = patient_request_model(EBMT_HSCT_SCHEMA, not_learned=lambda: not_learned)
    patient = {"age_class": "20-40", "donor_recipient_gender_mismatch": False, "transplant_year_class": "1995-1998"}
    with pytest.raises(ValidationError) as raised:
        model.model_validate(patient)
    assert [(e["loc"], e["msg"]) for e in raised.value.errors()] == [(("disease_subclass",), "Field required")]
    with pytest.raises(ValidationError) as raised:  # a bad value is still refused, with the missing field
        model.model_validate({**patient, "age_class": "old"})
    assert {e["loc"] for e in raised.value.errors()} == {("age_class",), ("disease_subclass",)}
    not_learned.append("disease_subclass")
    assert model.model_validate(patient).disease_subclass is None
    assert model.model_validate({**patient, "disease_subclass": "CML"}).disease_subclass == "CML"
    with pytest.raises(ValidationError):
        model.model_validate({**patient, "disease_subclass": "MDS"})
    document = model.model_json_schema()
    strict = patient_request_model(EBMT_HSCT_SCHEMA).model_json_schema()
    assert document["required"] == strict["required"] and "disease_subclass" in document["required"]
    assert document["properties"]["disease_subclass"] == strict["properties"]["disease_subclass"]
