"""The competing-risk bundle of ebmt_hsct_death_cause (the public ebmt2 extract) names its causes after the data
and computes only the endpoints its schema declares."""

import numpy as np
import pytest

from features.registry_file import load_registry_file
from features.tasks import TASKS
from training.cli import public_extract_file
from training.evaluate import evaluate_bundle, observed_risk
from training.pipeline import fit_family


@pytest.fixture(scope="module")
def death_cause():
    task = TASKS["ebmt_hsct_death_cause"]
    frame = load_registry_file(public_extract_file("ebmt_hsct_death_cause", _scratch()), task.schema).frame
    rows = np.random.default_rng(0).permutation(len(frame))
    development, held_out = (
        frame.iloc[rows[:4000]].reset_index(drop=True),
        frame.iloc[rows[4000:5500]].reset_index(drop=True),
    )
    return task, development, held_out, fit_family("cox_ph", task, development, {}, seed=0)


def _scratch():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="ebmt2_"))


def test_competing_bundle_answers_the_declared_endpoints(death_cause):
    task, development, _, bundle = death_cause
    assert list(bundle.causes) == ["death_from_relapse", "death_from_other_causes"]
    assert bundle.main_endpoint == "death_from_relapse"
    months = np.array([12.0, 24.0, 36.0, 60.0])
    predicted = bundle.endpoint_probabilities(development.iloc[:200], months)
    assert set(predicted) == {"death_from_relapse", "death_from_other_causes", "os"}
    # Both causes are deaths: overall survival is exactly 1 minus both incidences.
    np.testing.assert_allclose(
        predicted["os"], 1 - predicted["death_from_relapse"] - predicted["death_from_other_causes"], atol=1e-12
    )
    targets = task.endpoint_targets(development)
    for name in ("death_from_relapse", "death_from_other_causes"):
        target = targets[name]
        mean = bundle.endpoint_probabilities(development, np.array([24.0]), only=name)[name][:, 0].mean()
        assert mean == pytest.approx(
            observed_risk(target.months, target.code, target.event_of_interest, 24), abs=0.01
        ), name


def test_competing_bundle_is_evaluated_per_endpoint(death_cause):
    task, _, held_out, bundle = death_cause
    metrics = evaluate_bundle(bundle, held_out, task.endpoint_targets(held_out)).metrics
    for name in ("uno_c", "auc_24m", "death_from_other_causes_uno_c", "os_uno_c", "os_ibs"):
        assert np.isfinite(metrics[name]), name
    assert 0.55 < metrics["uno_c"] < 0.75
