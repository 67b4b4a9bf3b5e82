"""95 % intervals on all_hsct: coverage of the generator's true cumulative incidences on held-out patients.

The cause-specific Cox models are fitted as training fits them (stratified by the spec's strata, the bootstrap
replicates with the run's default number of refits) on three development cohorts of the default size, then the
stated 95 % intervals of relapse and NRM incidence are compared with those of the generating model (the GVHD times
that switch both hazards drawn 200 times per patient, Monte Carlo) for 400 fresh patients whose covariates the
registry recorded in full (the masking hid nothing that acts on the outcome), so that the truth given the record is
the generator's truth.

Why three development cohorts: a "95 %" interval covers 95 % of the time over development cohorts and patients
together, and one cohort's error moves all 400 patients alike. At this size the bootstrap's spread matches the
spread over fresh development cohorts (ratio 0.97-1.09) while the model keeps a bias of about half a sampling SD
(the ridge penalty shrinks every replicate alike; MRD "not applicable" with active disease shares the "not
recorded" indicator), so the expected coverage is 91-94 %, and one cohort lands anywhere around it: seed 3 alone
covers relapse 84-87 %, NRM 87-90 %. Pooled over seeds 3, 5 and 7, fixed before 5 and 7 were looked at, the same
intervals covered relapse 91.0-92.8 %, NRM 90.7-92.0 % (benchmarks/all_hsct_time_varying.py has the analysis).
"""

from dataclasses import replace

import numpy as np
import pytest

from features.task_schema import validate_frame
from features.tasks import get_task
from tasks.all_hsct.generator import generate_all_hsct_cohort, true_cumulative_incidences
from tests.interval_coverage import N_PATIENTS, coverage_lines, within_band
from training.pipeline import fit_family
from training.replicates import fit_replicates

DEVELOPMENT_SEEDS = (3, 5, 7)


@pytest.mark.slow
@pytest.mark.starts_first  # 3 x 31 stratified fits of two causes: about 3 minutes on one core
def test_all_hsct_intervals_cover_the_true_cumulative_incidences():
    full = get_task("all_hsct")
    # The relapse and NRM incidences need only their own two causes (GRFS is a model of its own).
    competing = replace(
        full,
        cause_targets=lambda frame: {
            name: target for name, target in full.cause_targets(frame).items() if name in ("relapse", "nrm")
        },
    )
    bundles = []
    for seed in DEVELOPMENT_SEEDS:
        development = validate_frame(full.generate_cohort(full.default_cohort_size, seed), full.schema)
        bundle = fit_family("cox_ph", competing, development, {}, 0)
        bundle.replicates = fit_replicates(bundle, competing, development, tuned={}, seed=0)
        bundles.append(bundle)
    cohort = generate_all_hsct_cohort(3 * N_PATIENTS, seed=4, keep_truth=True)
    recorded_fully = (cohort["mrd_pre_hct"].fillna("none") == cohort["true_mrd_pre_hct"].fillna("none")) & (
        cohort["hct_ci"].fillna("none") == cohort["true_hct_ci"].fillna("none")
    )
    cohort = cohort[recorded_fully].head(N_PATIENTS).reset_index(drop=True)
    patients = validate_frame(cohort, full.schema)[full.schema.predictor_names]
    months = np.array([12.0, 24.0, 60.0])
    truth = true_cumulative_incidences(cohort, months, draws=200, seed=1)
    shares = coverage_lines("all_hsct", bundles, patients, months, truth)
    assert within_band(shares), shares
