"""`make bench-train` watches the stages of `make train`'s own run; this small run checks that every stage the
pipeline names is measured (a figure, not a timing: nothing here checks speed)."""

import pytest

from benchmarks.train_bench import run_stages
from tests.sample_tasks import SINGLE
from training.pipeline import FAMILIES
from training.stages import BOOTSTRAP_STAGE, PLOTS_STAGE, VALIDATION_STAGE

pytestmark = pytest.mark.slow  # every training stage, on a small cohort


def test_every_stage_runs_and_is_measured(tmp_path, sample_tasks):
    # The fewest folds, and plots at the main horizon only: every stage still runs, once.
    rows, family = run_stages(SINGLE, 400, trials=1, replicates=2, draws=5, seed=0, scratch=tmp_path,
                              say=lambda _: None, n_folds=2, plots="main")
    names = [row["stage"] for row in rows]
    assert family in FAMILIES
    assert names[0].startswith("cohort") and names[-1] == "model card and registration"
    assert {"tuning, per trial", "tuning (all causes)", "interval refits (2)", VALIDATION_STAGE, BOOTSTRAP_STAGE,
            PLOTS_STAGE} <= set(names)
    assert len(names) == len(set(names)), names  # each stage once, none nested in another
    assert all(row["seconds"] >= 0 and row["peak_rss_mb"] > 0 for row in rows), rows
