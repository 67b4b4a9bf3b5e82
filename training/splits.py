"""Splits that never put one centre on both sides: held-out centres for reporting, grouped folds for tuning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedKFold, train_test_split

MIN_CENTRES_FOR_GROUPED_SPLIT = 3


@dataclass(frozen=True)
class HoldOutSplit:
    development: np.ndarray  # row positions used for tuning and fitting
    held_out: np.ndarray  # row positions used only to report performance
    design: str  # said on the run


def _centres(frame: pd.DataFrame) -> pd.Series | None:
    if "centre" not in frame.columns or frame["centre"].isna().any():
        return None
    return frame["centre"].astype(str)


def hold_out_centres(frame: pd.DataFrame, event_column: str, fraction: float = 0.25, seed: int = 0
                     ) -> HoldOutSplit:
    """Whole centres (about `fraction` of patients) are held out; without centres, a stratified patient split."""
    centres = _centres(frame)
    if centres is None or centres.nunique() < MIN_CENTRES_FOR_GROUPED_SPLIT:
        dev, test = train_test_split(np.arange(len(frame)), test_size=fraction, random_state=seed,
                                     stratify=frame[event_column])
        return HoldOutSplit(np.sort(dev), np.sort(test), "patient-level stratified hold-out (fewer than 3 centres)")
    rng = np.random.default_rng(seed)
    sizes = centres.value_counts()
    chosen: list[str] = []
    for centre in rng.permutation(sorted(sizes.index)):
        if sizes[chosen].sum() >= fraction * len(frame):
            break
        # Never hold out so much that fewer than 3 centres remain for grouped tuning folds.
        if len(sizes) - len(chosen) - 1 >= MIN_CENTRES_FOR_GROUPED_SPLIT:
            chosen.append(str(centre))
    held = centres.isin(chosen).to_numpy()
    design = f"held-out centres {', '.join(sorted(chosen))} ({held.sum()} patients); centres never split"
    return HoldOutSplit(np.flatnonzero(~held), np.flatnonzero(held), design)


def tuning_folds(frame: pd.DataFrame, event_column: str, n_folds: int, seed: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds grouped by centre where there are enough centres, else stratified on the event."""
    centres = _centres(frame)
    if centres is not None and centres.nunique() >= MIN_CENTRES_FOR_GROUPED_SPLIT:
        splitter = GroupKFold(n_splits=min(n_folds, centres.nunique()), shuffle=True, random_state=seed)
        return list(splitter.split(frame, groups=centres))
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(frame, frame[event_column]))
