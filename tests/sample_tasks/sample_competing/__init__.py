"""The test-only competing-risk sample task: a small deterministic generator (cause-specific exponential hazards:
relapse rises with high disease risk, a residual marker and reduced intensity; death without relapse rises with
age and full intensity; uniform censoring; eight centres)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.task_spec import TaskCode


def generate(n_patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 75, n_patients).round(1)
    high = rng.random(n_patients) < 0.4
    full = rng.random(n_patients) < 0.6
    marker = rng.random(n_patients) < 0.3
    relapse_rate = 0.012 * np.exp(0.8 * high + 0.9 * marker - 0.4 * full)
    death_rate = 0.006 * np.exp(0.04 * (age - 45) + 0.4 * full)
    times = rng.exponential(1 / np.stack([relapse_rate, death_rate]))
    first = times.min(axis=0)
    censor = rng.uniform(12, 84, n_patients)
    return pd.DataFrame(
        {
            "age_years": age,
            "disease_risk": np.where(high, "high", "standard"),
            "intensity": np.where(full, "full", "reduced"),
            "marker_positive": marker,
            "centre": [f"S{c:02d}" for c in rng.integers(1, 9, n_patients)],
            "months_to_event": np.minimum(first, censor).round(2),
            "event_code": np.where(first <= censor, times.argmin(axis=0) + 1, 0),
        }
    )


TASK_CODE = TaskCode(generate_cohort=generate)
