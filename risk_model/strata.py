"""A baseline cumulative hazard per stratum: the spec's `strata` columns (categorical predictors) split the
patients, each stratum gets its own Breslow baseline on the family's margins, and a patient's S(t | x) reads its
stratum's baseline: S(t | x) = exp(-H0_s(t) exp(margin(x))). Proportional hazards then need to hold only within a
stratum (ebmt_hsct_death_cause: disease).

A stratum is one combination of the stratum columns' schema categories (a boolean's are "false", "true": MAC
conditioning with or without TBI), numbered in `itertools.product` order;
the index travels with the margins (key `STRATUM`) so every prediction path (ensemble, contributions) reads it.
Index -1 (a missing or unknown value) and a combination the fit never saw read the pooled baseline (fitted on
every patient's margins): a bootstrap replicate can miss a small stratum; serving refuses a patient whose stratum
the model never saw (`unseen_stratum_problems`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from risk_model.breslow import BreslowBaseline
from risk_model.preprocessing import PatientEncoding

STRATUM = "__stratum__"  # the margins' key holding each patient's stratum index
BOOLEAN_LEVELS = ("false", "true")  # a boolean stratum column's categories, in code order (0, 1)


@dataclass
class StratifiedBaseline:
    columns: list[str]
    categories: list[list[str]]  # each column's schema categories
    pooled: BreslowBaseline = field(default_factory=BreslowBaseline)
    strata: dict[int, BreslowBaseline] = field(default_factory=dict)  # fitted strata by index

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.categories)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def label(self, index: int) -> str:
        codes = np.unravel_index(index, self.shape)
        return " / ".join(f"{c}={cats[k]}" for c, cats, k in zip(self.columns, self.categories, codes, strict=True))

    def fit(
        self, margin: np.ndarray, time: np.ndarray, event: np.ndarray, index: np.ndarray, ties: str
    ) -> StratifiedBaseline:
        """The pooled baseline, then one per stratum present (a stratum without events has H0 = 0)."""
        self.pooled = BreslowBaseline(ties=ties).fit(margin, time, event)
        self.strata = {
            int(s): BreslowBaseline(ties=ties).fit(margin[index == s], time[index == s], event[index == s])
            for s in np.unique(index)
            if s >= 0
        }
        return self

    # --- the interface of BreslowBaseline the bundle reads ---------------------------------------------------
    @property
    def min_at_risk(self) -> int:
        return self.pooled.min_at_risk

    @property
    def event_times_(self) -> np.ndarray:
        return np.unique(np.concatenate([b.event_times_ for b in self.strata.values()]))

    @property
    def last_reliable_month_(self) -> float:
        """The earliest stratum's: beyond it some stratum has fewer than `min_at_risk` patients followed."""
        return min(b.last_reliable_month_ for b in self.strata.values())

    def hazards(self, months: np.ndarray) -> np.ndarray:
        """H0 of every stratum at the months ((strata + 1) x months); the last row is the pooled one (index -1)."""
        pooled = self.pooled.cumulative_hazard(months)
        rows = [self.strata[s].cumulative_hazard(months) if s in self.strata else pooled for s in range(self.size)]
        return np.stack([*rows, pooled])

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "categories": self.categories,
            "pooled": self.pooled.to_json(),
            "strata": [{"index": s, "label": self.label(s), **b.to_json()} for s, b in self.strata.items()],
        }

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> StratifiedBaseline:
        strata = {item["index"]: BreslowBaseline.from_json(item) for item in spec["strata"]}
        return cls(
            columns=list(spec["columns"]),
            categories=[list(c) for c in spec["categories"]],
            pooled=BreslowBaseline.from_json(spec["pooled"]),
            strata=strata,
        )


def baseline_from_json(spec: dict[str, Any]) -> BreslowBaseline | StratifiedBaseline:
    return StratifiedBaseline.from_json(spec) if "strata" in spec else BreslowBaseline.from_json(spec)


def stratum_levels(kind: str, categories: Any) -> list[str]:
    """A stratum column's levels: a category's schema categories, a boolean's "false" and "true"."""
    return list(BOOLEAN_LEVELS) if kind == "boolean" else list(categories)


def category_lists(schema_predictors: list[dict[str, Any]], columns: list[str]) -> list[list[str]]:
    kinds = {p["name"]: p for p in schema_predictors}
    return [stratum_levels(kinds[c]["kind"], kinds[c]["categories"]) for c in columns]


def frame_strata(frame: pd.DataFrame, columns: list[str], categories: list[list[str]]) -> np.ndarray:
    """Each row's stratum index (-1 where a value is missing or not a schema category)."""
    codes = [
        pd.Categorical(_levels(frame[c], cats), categories=cats).codes.astype(int)
        for c, cats in zip(columns, categories, strict=True)
    ]
    return _combined(codes, [len(c) for c in categories])


def _levels(values: pd.Series, categories: list[str]) -> pd.Series:
    """A boolean column's True/False (or 1/0) as its levels "true"/"false"; other columns unchanged."""
    if list(categories) != list(BOOLEAN_LEVELS):
        return values
    return values.map(lambda v: None if pd.isna(v) else BOOLEAN_LEVELS[int(bool(v))])


def encoded_strata(encoded: np.ndarray, encoding: PatientEncoding, columns: list[str]) -> np.ndarray:
    """Each encoded patient's stratum index, read from the category indicators or a boolean's value (-1 where
    none is set or the value is missing)."""
    codes, sizes = [], []
    for column in columns:
        start, missing = encoding.slots[column]
        if encoding.kinds[encoding.names.index(column)] == "boolean":
            codes.append(np.where(encoded[:, missing] > 0.5, -1, (encoded[:, start] > 0.5).astype(int)))
            sizes.append(len(BOOLEAN_LEVELS))
            continue
        indicators = encoded[:, start:missing]
        codes.append(np.where(indicators.max(axis=1) > 0.5, indicators.argmax(axis=1), -1))
        sizes.append(missing - start)
    return _combined(codes, sizes)


def _combined(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    stacked = np.stack(codes) if codes else np.zeros((0, 0), dtype=int)
    known = (stacked >= 0).all(axis=0)
    index = np.ravel_multi_index(tuple(np.maximum(stacked, 0)), tuple(sizes)) if codes else np.zeros(0, dtype=int)
    return np.where(known, index, -1).astype(int)


def stratum_codes(baseline: StratifiedBaseline, index: np.ndarray) -> np.ndarray:
    """Each column's category code for stratum indices (... x columns); -1 for index -1."""
    index = np.asarray(index, dtype=int)
    codes = np.stack(np.unravel_index(np.maximum(index, 0), baseline.shape), axis=-1)
    return np.where((index >= 0)[..., None], codes, -1)
