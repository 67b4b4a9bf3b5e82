"""ebmt_hsct's event time (relapse-free survival, in months) is read from a column in days or years by its unit
suffix, converted and recorded."""

import numpy as np

from features.ebmt_registry import example_patients
from features.registry_file import load_registry_file
from features.task_schema import DAYS_PER_YEAR
from tasks.ebmt_hsct import SCHEMA as EBMT_HSCT_SCHEMA


def test_event_time_in_days_or_years_is_converted_and_recorded(tmp_path):
    file = example_patients(40, 1, EBMT_HSCT_SCHEMA.predictors)
    rng = np.random.default_rng(1)
    days = rng.uniform(10, 2000, 40)
    for suffix, values in (("days", days), ("years", days / DAYS_PER_YEAR)):
        export = file.assign(**{f"rfs_{suffix}": values, "rfs_event": rng.integers(0, 2, 40)})
        path = tmp_path / f"rfs_{suffix}.csv"
        export.to_csv(path, index=False)
        loaded = load_registry_file(path, EBMT_HSCT_SCHEMA)
        np.testing.assert_allclose(loaded.frame["rfs_months"], days / (DAYS_PER_YEAR / 12), rtol=1e-9)
        assert len(loaded.unit_conversions) == 1 and loaded.unit_conversions[0].startswith(f"rfs_{suffix} -> ")
