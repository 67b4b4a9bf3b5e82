"""95 % intervals on all_hsct: coverage of the generator's true cumulative incidences on held-out patients.

The cause-specific Cox models are fitted as training fits them (stratified by the spec's strata, the bootstrap
replicates with the run's default number of refits) on a development cohort of the default size, then the stated
95 % intervals of relapse and NRM incidence are compared with those of the generating model (the GVHD times that
switch both hazards drawn 200 times per patient, Monte Carlo) for 400 fresh patients whose covariates the registry
recorded in full (the masking hid nothing that acts on the outcome), so that the truth given the record is the
generator's truth.
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


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="relapse 0.84-0.87, NRM 0.87-0.90 on the one development cohort (seed 3), with the t multiplier for 30 "
    "refits (1.96 before: 0.83-0.85, 0.86-0.88). Not the Cox family: on the same resamples the benchmark's "
    "simplified fit gives the same spread (ratio 1.002) and the same estimates (0.01 points). Not the unrecorded "
    "GVHD's non-proportional hazards: piecewise-constant effects do not bring the fit closer to the truth at "
    "20,000-40,000 patients. At 4,000 the bootstrap's spread matches that over fresh development cohorts (ratio "
    "0.97-1.09) and the expected coverage over cohorts is 93-94 % (relapse) and 91-92 % (NRM); this cohort's shared "
    "error, with a bias of about half a sampling SD (ridge penalty, MRD 'not applicable' sharing the 'not recorded' "
    "indicator), puts it below. Pooled over three development cohorts (seeds 3, 5, 7, fixed before looking) the "
    "same intervals cover relapse 0.910-0.928, NRM 0.907-0.920, but that test takes about 150 s alone against "
    "the slow tier's 90 s: benchmarks/all_hsct_time_varying.py",
)
def test_all_hsct_intervals_cover_the_true_cumulative_incidences():
    full = get_task("all_hsct")
    # The relapse and NRM incidences need only their own two causes (GRFS is a model of its own).
    competing = replace(
        full,
        cause_targets=lambda frame: {
            name: target for name, target in full.cause_targets(frame).items() if name in ("relapse", "nrm")
        },
    )
    development = validate_frame(full.generate_cohort(full.default_cohort_size, 3), full.schema)
    bundle = fit_family("cox_ph", competing, development, {}, 0)
    bundle.replicates = fit_replicates(bundle, competing, development, tuned={}, seed=0)
    cohort = generate_all_hsct_cohort(3 * N_PATIENTS, seed=4, keep_truth=True)
    recorded_fully = (cohort["mrd_pre_hct"].fillna("none") == cohort["true_mrd_pre_hct"].fillna("none")) & (
        cohort["hct_ci"].fillna("none") == cohort["true_hct_ci"].fillna("none")
    )
    cohort = cohort[recorded_fully].head(N_PATIENTS).reset_index(drop=True)
    patients = validate_frame(cohort, full.schema)[full.schema.predictor_names]
    months = np.array([12.0, 24.0, 60.0])
    truth = true_cumulative_incidences(cohort, months, draws=200, seed=1)
    shares = coverage_lines("all_hsct", bundle, patients, months, truth)
    assert within_band(shares), shares
