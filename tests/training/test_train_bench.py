"""`make bench-train` walks the pipeline's own stage functions in `run_training`'s order; this small run keeps it
from drifting when a stage's signature changes (a figure, not a timing: nothing here checks speed)."""

import pytest

from benchmarks.train_bench import run_stages
from tests.sample_tasks import SINGLE

pytestmark = pytest.mark.slow  # every training stage, on a small cohort


def test_every_stage_runs_and_is_measured(tmp_path, sample_tasks):
    rows, family = run_stages(SINGLE, 400, trials=1, replicates=2, draws=5, seed=0, scratch=tmp_path,
                              say=lambda _: None, family="cox_ph")
    names = [row["stage"] for row in rows]
    assert family == "cox_ph"
    assert any(name.startswith("tuning") for name in names) and "model card and registration" in names
    assert all(row["seconds"] >= 0 and row["peak_rss_mb"] > 0 for row in rows), rows
