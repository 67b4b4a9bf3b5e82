"""The all_frontline risk-group rules (tasks/all_frontline/comparators.py) on hand-made patients, one per branch of
each definition (clinical-evidence F.0)."""

import numpy as np
import pandas as pd

from tasks.all_frontline.comparators import COMPARATORS, aieop_bfm_mrd_group, nci_rome_group, ukall2003_mrd_group

NAN = np.nan


def mrd_frame(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    """(eoi log10, eoc log10, sensitivity log10), NaN = undetectable; the flags follow the values."""
    eoi, eoc, sensitivity = (np.array(column, float) for column in zip(*rows, strict=True))
    return pd.DataFrame(
        {
            "mrd_eoi_log10": eoi,
            "mrd_eoc_log10": eoc,
            "mrd_eoi_detectable": ~np.isnan(eoi),
            "mrd_eoc_detectable": ~np.isnan(eoc),
            "mrd_assay_sensitivity_log10": sensitivity,
        }
    )


def test_nci_rome_standard_is_age_1_to_9_with_wbc_under_50():
    frame = pd.DataFrame(
        {"age_years": [1.0, 9.9, 10.0, 5.0, 0.5, 40.0], "wbc_at_diagnosis": [49.9, 10.0, 10.0, 50.0, 10.0, 5.0]}
    )
    assert nci_rome_group(frame).tolist() == ["standard", "standard", "high", "high", "high", "high"]


def test_ukall2003_groups_each_branch():
    frame = mrd_frame(
        [
            (NAN, NAN, -5),  # undetectable at EOI, sensitive assay: low
            (-4.5, NAN, -5),  # detectable below 1e-4, undetectable at EOC: low
            (-4.5, -5.0, -5),  # below 1e-4 at both: indeterminate
            (-4.0, NAN, -5),  # exactly 1e-4 at EOI: high
            (-2.0, -4.5, -5),  # high at EOI whatever follows
            (NAN, NAN, -3),  # undetectable by an assay that cannot see 1e-4: indeterminate
            (-4.5, -3.5, -5),  # below 1e-4 at EOI, rising at EOC: indeterminate (the rule looks at EOI for high)
        ]
    )
    assert ukall2003_mrd_group(frame).tolist() == [
        "low",
        "low",
        "indeterminate",
        "high",
        "high",
        "indeterminate",
        "indeterminate",
    ]


def test_aieop_bfm_groups_each_branch():
    frame = mrd_frame(
        [
            (NAN, NAN, -4),  # negative at both with a 1e-4 assay: standard
            (-3.0, NAN, -5),  # positive at EOI, negative at EOC: intermediate
            (-2.0, -3.0, -5),  # exactly 1e-3 at EOC: high
            (NAN, -3.5, -5),  # below 1e-3 at EOC: intermediate
            (NAN, NAN, -3),  # negative, but the assay cannot see 1e-4: intermediate
        ]
    )
    assert aieop_bfm_mrd_group(frame).tolist() == ["standard", "intermediate", "high", "intermediate", "intermediate"]


def test_a_missing_flag_falls_back_to_the_recorded_value():
    frame = mrd_frame([(-3.0, NAN, -5), (NAN, NAN, -5)])
    frame["mrd_eoi_detectable"] = pd.Series([None, None], dtype=object)
    assert ukall2003_mrd_group(frame).tolist() == ["high", "low"]


def test_every_rule_returns_one_group_per_row_on_the_frames_index():
    frame = mrd_frame([(NAN, NAN, -5), (-2.0, -2.5, -4)]).assign(age_years=[4.0, 30.0], wbc_at_diagnosis=[5, 80])
    frame.index = [10, 20]
    for rule in COMPARATORS.values():
        groups = rule(frame)
        assert list(groups.index) == [10, 20] and groups.notna().all()
