"""all_frontline served in process through the common contract: three coherent endpoints from the landmark, the
derived NCI/Rome group and MRD log reduction computed by the service, undetectable MRD sent as such, the MRD
rules refused in the one error shape, and the `small_subgroup` warning for a patient in a report subgroup with
few development patients (the bundle records the development counts)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.task_schema import validate_frame
from features.tasks import get_task
from risk_model.report_groups import SMALL_SUBGROUP_PATIENTS, members
from serving.api import create_app
from serving.champions import ChampionRegistry
from tests.served_models import SEED, build_champion
from training.splits import hold_out_centres

TASK = "all_frontline"
KEY = "test-key-all-frontline"
HEADERS = {"Authorization": f"Bearer {KEY}"}
# A quarter of the default cohort: the contract, the derived predictors and the MRD direction need no more (at
# seeds 42, 7 and 11: 60-month relapse 0.45-0.47 for OLDER against 0.02-0.04 for CHILD, every report subgroup with
# 41 or more development patients), and the champion builds in a quarter of the time.
COHORT_SIZE = 1000
# A 6-year-old with B-ALL, ETV6::RUNX1, MRD 10^-4.2 at the end of induction and undetectable (PCR 10^-5) at the
# end of consolidation: the level is left out, never sent as 0.
CHILD = {
    "age_years": 6,
    "sex": "male",
    "wbc_at_diagnosis": 8.5,
    "lineage": "B",
    "cns_status": "CNS1",
    "genetic_subgroup": "etv6_runx1",
    "ikzf1_deletion": False,
    "mrd_eoi_log10": -4.2,
    "mrd_eoi_detectable": True,
    "mrd_eoc_detectable": False,
    "mrd_assay_sensitivity_log10": -5,
    "mrd_method": "pcr",
}
# A 67-year-old with Ph-negative B-ALL whose MRD stays detectable.
OLDER = {
    **CHILD,
    "age_years": 67,
    "wbc_at_diagnosis": 30,
    "genetic_subgroup": "b_other",
    "mrd_eoi_log10": -2.5,
    "mrd_eoc_log10": -3.4,
    "mrd_eoc_detectable": True,
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontline")
    build_champion(TASK, "cox_ph", root / "models", root / "bundles", COHORT_SIZE, held_out_metrics=False)  # no /model
    return root / "models"


@pytest.fixture(scope="module")
def client(models_dir) -> TestClient:
    return TestClient(create_app(ChampionRegistry(models_dir, [TASK]), {"local": KEY}))


def predict(client, patient):
    response = client.post("/v1/all-frontline/predict", json=patient, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def at(body, endpoint, months):
    return next(h["probability"] for h in body["endpoints"][endpoint]["horizons"] if h["months"] == months)


def test_three_endpoints_from_the_landmark_add_up(client):
    body = predict(client, CHILD)
    assert set(body["endpoints"]) == {"relapse", "death_in_remission", "efs"}
    assert [h["months"] for h in body["endpoints"]["efs"]["horizons"]] == [12, 36, 60]
    curves = {name: np.array(e["curve"]["probability"]) for name, e in body["endpoints"].items()}
    np.testing.assert_allclose(curves["relapse"] + curves["death_in_remission"] + curves["efs"], 1.0, atol=1e-9)
    assert body["contributions"]["endpoint"] == "relapse" and body["contributions"]["horizon_months"] == 60


def test_the_service_derives_the_nci_group_and_the_log_reduction(client):
    items = {i["feature"]: i["value"] for i in predict(client, CHILD)["contributions"]["items"]}
    assert items["nci_risk_group"] == "standard"
    assert items["mrd_log_reduction"] == pytest.approx(-4.2 - (-5))  # the sensitivity stands in for undetectable
    older = {i["feature"]: i["value"] for i in predict(client, OLDER)["contributions"]["items"]}
    assert older["nci_risk_group"] == "high" and older["mrd_log_reduction"] == pytest.approx(0.9)


def test_persisting_mrd_in_an_older_adult_raises_relapse(client):
    assert at(predict(client, OLDER), "relapse", 60) > at(predict(client, CHILD), "relapse", 60)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mrd_eoc_log10": 0.0}, "mrd_eoc_log10"),  # undetectable sent as a level (0): refused
        ({"mrd_eoi_log10": -5.5}, "mrd_eoi_log10"),  # below the assay's sensitivity
        ({"genetic_subgroup": "t_etp"}, "genetic_subgroup"),  # a T-lineage subgroup for B-ALL
        ({"lineage": "T", "genetic_subgroup": "t_etp", "ikzf1_deletion": True}, "ikzf1_deletion"),
    ],
)
def test_the_cross_field_rules_are_refused_in_the_error_shape(client, change, field):
    response = client.post("/v1/all-frontline/predict", json={**CHILD, **change}, headers=HEADERS)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"code", "message", "fields"}
    assert any(f["location"] == f"body.{field}" for f in body["fields"]), body


def test_the_bundle_records_development_counts_of_each_report_subgroup(models_dir):
    bundle = json.loads(next(models_dir.glob(f"{TASK}/**/bundle.json")).read_text())
    groups = {g["name"]: g for g in bundle["report_groups"]}
    assert {"age < 18", "age 18-24", "age 25-54", "age >= 55", "over_55_b_all"} == set(groups)
    task = get_task(TASK)
    frame = validate_frame(task.generate_cohort(COHORT_SIZE, SEED), task.schema)
    development = frame.iloc[hold_out_centres(frame, task.schema.event_column, seed=SEED).development]
    for group in groups.values():
        assert group["n_development"] == members(group, development).sum() > 0


def test_a_patient_in_a_small_report_subgroup_is_warned(models_dir, tmp_path):
    small = tmp_path / "models"
    shutil.copytree(models_dir, small)
    path = next(small.glob(f"{TASK}/**/bundle.json"))
    bundle = json.loads(path.read_text())
    for group in bundle["report_groups"]:  # as if the development data had held few older adults with B-ALL
        if group["name"] == "over_55_b_all":
            group["n_development"] = SMALL_SUBGROUP_PATIENTS - 60
        else:
            group["n_development"] = max(group["n_development"], SMALL_SUBGROUP_PATIENTS)
    path.write_text(json.dumps(bundle))
    client = TestClient(create_app(ChampionRegistry(small, [TASK]), {"local": KEY}))
    warned = [w for w in predict(client, OLDER)["warnings"] if w["code"] == "small_subgroup"]
    assert (
        len(warned) == 1
        and "only 40 patients in this patient's subgroup (adults aged 55 or over with B-ALL" in warned[0]["message"]
    )
    assert not [w for w in predict(client, CHILD)["warnings"] if w["code"] == "small_subgroup"]
    t_lineage = {**OLDER, "lineage": "T", "genetic_subgroup": "t_non_etp"}  # over 55 but not B-ALL
    assert not [w for w in predict(client, t_lineage)["warnings"] if w["code"] == "small_subgroup"]
