"""The explanation background of a 2,000-patient frontline cohort (seed 42, centres held out as training holds
them out): no swap between background rows can mend a row that breaks the lineage / genetic-subgroup rule, both
columns are required, and the background must still be built, keep every rule and the cohort's shares."""

import pandas as pd
import pytest

from features.task_schema import validate_frame
from features.tasks import TASKS
from tests.training.test_background import largest_share_gap
from training.explain import _holds, cohort_background
from training.splits import hold_out_centres

pytestmark = pytest.mark.slow  # clusters and repairs a 1,500-patient background (about 10 s)

TASK = TASKS["all_frontline"]


def test_a_rule_no_swap_can_mend_still_gives_a_background_that_keeps_it():
    frame = validate_frame(TASK.generate_cohort(2000, 42), TASK.schema)
    split = hold_out_centres(frame, TASK.schema.event_column, 0.25, 42)
    development = frame.iloc[split.development].reset_index(drop=True)
    background = cohort_background(development, TASK.schema, seed=42)
    rows = pd.DataFrame(background.rows)
    assert _holds(rows, list(TASK.schema.cross_field_rules)).all()
    gap, where = largest_share_gap(development, background.rows, background.weights, TASK.schema)
    print(f"largest category share gap all_frontline: {100 * gap:.2f} points ({where})")
    assert gap <= 0.01, where
