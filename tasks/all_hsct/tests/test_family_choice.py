"""The family choice refits each family on the tuning folds for the main endpoint alone (training/pipeline.py):
all_hsct's relapse incidence reads the relapse and NRM models only, so the four GRFS causes and the post-relapse
model are left out of those refits. What the choice scores must not change."""

import numpy as np

from features.task_schema import validate_frame
from features.tasks import get_task
from training.pipeline import fit_family


def test_a_refit_for_the_main_endpoint_gives_its_risks_without_the_other_models():
    task = get_task("all_hsct")
    cohort = validate_frame(task.generate_cohort(600, 11), task.schema)
    full = fit_family("cox_ph", task, cohort, {}, 0)
    main = full.main_endpoint
    for_main = fit_family("cox_ph", task, cohort, {}, 0, endpoint=main)
    assert list(for_main.causes) == ["relapse", "nrm"] and for_main.post_relapse_survival is None
    assert len(full.causes) == 6 and full.post_relapse_survival
    months = np.array([12.0, 24.0, 60.0])
    np.testing.assert_array_equal(for_main.endpoint_probabilities(cohort, months, only=main)[main],
                                  full.endpoint_probabilities(cohort, months, only=main)[main])
    # OS reads the post-relapse model too: a refit for it keeps that model
    assert fit_family("cox_ph", task, cohort, {}, 0, endpoint="os").post_relapse_survival
