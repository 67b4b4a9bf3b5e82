"""The test-only competing-risk sample task: a small deterministic generator (cause-specific exponential hazards:
relapse rises with high disease risk, a residual marker and reduced intensity; death without relapse rises with
age and full intensity; uniform censoring; eight centres)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.task_spec import TaskCode


def generate(n_patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_patients
    age = rng.uniform(18, 75, n).round(1)
    high = rng.random(n) < 0.4
    full = rng.random(n) < 0.6
    marker = rng.random(n) < 0.3
    marker_log10 = np.where(marker, rng.uniform(-4, -1, n), rng.uniform(-6, -4, n)).round(2)
    relapse_rate = 0.012 * np.exp(0.8 * high + 0.9 * marker - 0.4 * full)
    death_rate = 0.006 * np.exp(0.04 * (age - 45) + 0.4 * full)
    times = rng.exponential(1 / np.stack([relapse_rate, death_rate]))
    first = times.min(axis=0)
    censor = rng.uniform(12, 84, n)
    missing = rng.random((3, n)) < 0.25
    frame = pd.DataFrame(
        {
            "age_years": age,
            "disease_risk": np.where(high, "high", "standard"),
            "intensity": np.where(full, "full", "reduced"),
            "marker_positive": marker,
            "sex": rng.choice(["female", "male"], n),
            "donor_type": rng.choice(["matched", "unrelated", "haploidentical"], n, p=[0.4, 0.4, 0.2]),
            "low_performance": rng.random(n) < 0.2,
            "infection_positive": rng.random(n) < 0.6,
            "diagnosis_to_treatment_years": rng.gamma(2.0, 0.4, n).clip(0, 20).round(2),
            "prior_lines": rng.integers(0, 4, n).astype(float),
            "treatment_year": rng.integers(2005, 2025, n).astype(float),
            "marker_log10": np.where(missing[0], np.nan, marker_log10),
            "marker_detectable": pd.array(np.where(missing[1], None, marker), dtype="boolean"),
            "comorbidity": np.where(missing[2], None, rng.choice(["0", "1-2", "3+"], n)),
            "centre": [f"S{c:02d}" for c in rng.integers(1, 9, n)],
            "months_to_event": np.minimum(first, censor).round(2),
            "event_code": np.where(first <= censor, times.argmin(axis=0) + 1, 0),
        }
    )
    return frame


TASK_CODE = TaskCode(generate_cohort=generate)
