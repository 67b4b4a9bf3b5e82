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


# --- internal-external validation folds ------------------------------------------------------------------

MIN_CLUSTER_PATIENTS = 50  # a centre smaller than this (or with fewer events) is "small"
MIN_CLUSTER_EVENTS = 10
MAX_SHARE_SMALL_CENTRES = 0.25  # more small centres than this: leave one country out instead
REPEATS_WITHOUT_CENTRES = 2


@dataclass(frozen=True)
class ValidationFold:
    name: str  # the left-out centre or country, or "repeat 1 fold 3"
    train: np.ndarray  # row positions the models are refitted on
    test: np.ndarray  # row positions they are judged on
    repeat: int = 0


@dataclass(frozen=True)
class ValidationDesign:
    kind: str  # "leave-one-centre-out", "leave-one-country-out" or "repeated stratified k-fold"
    unit: str | None  # "centre", "country" or None (patients)
    folds: list[ValidationFold]
    description: str  # said on the run and in the model card

    @property
    def by_cluster(self) -> bool:
        return self.unit is not None


def _small_clusters(groups: pd.Series, events: pd.Series) -> list[str]:
    table = pd.DataFrame({"group": groups.to_numpy(), "event": events.to_numpy() > 0}).groupby("group")["event"]
    sizes, counts = table.size(), table.sum()
    return sorted(str(g) for g in sizes.index if sizes[g] < MIN_CLUSTER_PATIENTS or counts[g] < MIN_CLUSTER_EVENTS)


def internal_external_folds(frame: pd.DataFrame, event_column: str, seed: int = 0, n_folds: int = 5
                            ) -> ValidationDesign:
    """Leave one centre out when there are 3 or more centres; leave one country out when more than a quarter of
    the centres are small (< 50 patients or < 10 events) and there are 3 or more countries; otherwise repeated
    stratified K-fold on patients (2 x 5 folds), which the run states."""
    centres = _centres(frame)
    events = frame[event_column]
    if centres is not None and centres.nunique() >= MIN_CENTRES_FOR_GROUPED_SPLIT:
        small = _small_clusters(centres, events)
        countries = frame["country"].astype(str) if "country" in frame and frame["country"].notna().all() else None
        if (len(small) > MAX_SHARE_SMALL_CENTRES * centres.nunique() and countries is not None
                and countries.nunique() >= MIN_CENTRES_FOR_GROUPED_SPLIT):
            groups, unit = countries, "country"
            reason = (f"{len(small)} of {centres.nunique()} centres are small (< {MIN_CLUSTER_PATIENTS} patients or "
                      f"< {MIN_CLUSTER_EVENTS} events: {', '.join(small)})")
        else:
            groups, unit, reason = centres, "centre", ""
        names = sorted(groups.unique())
        folds = [ValidationFold(str(name), np.flatnonzero((groups != name).to_numpy()),
                                np.flatnonzero((groups == name).to_numpy())) for name in names]
        kind = f"leave-one-{unit}-out"
        plural = {"centre": "centres", "country": "countries"}[unit]
        description = f"internal-external validation, {kind} over {len(folds)} {plural}" + (
            f" ({reason})" if reason else "")
        return ValidationDesign(kind, unit, folds, description)
    folds = []
    for repeat in range(REPEATS_WITHOUT_CENTRES):
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + repeat)
        for number, (train, test) in enumerate(splitter.split(frame, events), start=1):
            folds.append(ValidationFold(f"repeat {repeat + 1} fold {number}", train, test, repeat))
    description = (f"repeated stratified {n_folds}-fold cross-validation ({REPEATS_WITHOUT_CENTRES} repeats) on "
                   "patients: fewer than 3 centres, so no internal-external validation across centres")
    return ValidationDesign("repeated stratified k-fold", None, folds, description)
