"""The registry's pyfunc answers what the service answers for the same patient, after MLflow parses the request
with the signature the run logs (as `mlflow models serve` does): an unknown optional flag arrives as missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc.scoring_server import infer_and_parse_data

from features.tasks import example_patients, get_task
from risk_model.bundle import ModelBundle
from risk_model.prediction import predict_patients
from tests.sample_tasks import COMPETING
from training.pyfunc_model import RelapseRiskModel, pyfunc_signature


@pytest.fixture(scope="module")
def bundle(served_models, sample_tasks) -> ModelBundle:
    folder = served_models.models_dir / COMPETING
    return ModelBundle.load(folder / json.loads((folder / "champion.json").read_text())["path"])


def _parsed(bundle: ModelBundle, patient: dict, signature) -> object:
    """The patient as the pyfunc receives it from `/invocations` (a `dataframe_split` body)."""
    columns = bundle.feature_names
    body = {"dataframe_split": {"columns": columns, "data": [[patient.get(c) for c in columns]]}}
    return _enforce_schema(infer_and_parse_data(body, signature.inputs), signature.inputs)


@pytest.mark.parametrize("flag", [None, True, False])
def test_pyfunc_equals_the_service_for_an_optional_flag(bundle: ModelBundle, flag: bool | None) -> None:
    example = example_patients(get_task(COMPETING), 5)[bundle.feature_names]
    flags = [p["name"] for p in bundle.schema["predictors"] if p["kind"] == "boolean" and not p["required"]]
    assert flags, "the sample competing task has an optional flag"
    patient = {
        name: (None if value is None or value != value else value.item() if hasattr(value, "item") else value)
        for name, value in example.iloc[0].to_dict().items()
    }
    patient.update(dict.fromkeys(flags, flag))
    frame = _parsed(bundle, patient, pyfunc_signature(bundle, example))
    received = frame[flags[0]].iloc[0]
    assert (received is None or received != received) if flag is None else bool(received) is flag
    served = RelapseRiskModel.probabilities(bundle, frame)
    [answer] = predict_patients(bundle, [patient], with_contributions=False)
    for name, endpoint in answer.endpoints.items():
        for h in endpoint.horizons:
            if h.probability is not None:
                assert served[f"{name}_{h.months}m"].iloc[0] == pytest.approx(h.probability, abs=1e-12)


def test_a_typed_flag_would_answer_no_for_unknown(bundle: ModelBundle) -> None:
    """Why the flag is untyped: with the boolean type MLflow infers, the null arrives as False."""
    from mlflow.models import infer_signature

    example = example_patients(get_task(COMPETING), 5)[bundle.feature_names]
    flag = next(p["name"] for p in bundle.schema["predictors"] if p["kind"] == "boolean" and not p["required"])
    typed = infer_signature(example.assign(**{flag: [True, False, True, False, True]}))
    patient = {name: None for name in bundle.feature_names}
    assert _parsed(bundle, patient, typed)[flag].iloc[0] is np.False_
