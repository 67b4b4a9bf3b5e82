"""Breslow baseline cumulative hazard, fed with any family's margins (Cox linear predictor or xgboost margin).

S(t | x) = exp(-H0(t) * exp(margin(x))). H0 is a step function known only up to the last event time of the
data it was fitted on; `last_reliable_month` marks where at least `min_at_risk` patients were still followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.survival_target import check_survival_target


@dataclass
class BreslowBaseline:
    min_at_risk: int = 20
    event_times_: np.ndarray | None = None
    cumulative_hazard_: np.ndarray | None = None
    last_reliable_month_: float = 0.0

    def fit(self, margin: np.ndarray, time: np.ndarray, event: np.ndarray) -> BreslowBaseline:
        time, event = check_survival_target(time, event)
        margin = np.asarray(margin, dtype=float)
        order = np.argsort(time, kind="stable")
        time, event, risk = time[order], event[order], np.exp(margin[order])
        # Events per distinct event time by counting, not by one pass over all patients per time (quadratic).
        event_times, deaths = np.unique(time[event == 1], return_counts=True)
        # Sum of exp(margin) over everyone still at risk at each event time (time >= t).
        risk_from = np.cumsum(risk[::-1])[::-1]
        first_at_risk = np.searchsorted(time, event_times, side="left")
        self.event_times_ = event_times
        self.cumulative_hazard_ = np.cumsum(deaths / risk_from[first_at_risk])
        at_risk = len(time) - np.searchsorted(time, np.sort(np.unique(time)), side="left")
        reliable = np.sort(np.unique(time))[at_risk >= self.min_at_risk]
        self.last_reliable_month_ = float(reliable.max()) if len(reliable) else 0.0
        return self

    def cumulative_hazard(self, months: np.ndarray) -> np.ndarray:
        """H0 at each month (right-continuous step function, 0 before the first event)."""
        assert self.event_times_ is not None and self.cumulative_hazard_ is not None, "fit first"
        index = np.searchsorted(self.event_times_, np.asarray(months, dtype=float), side="right") - 1
        return np.where(index >= 0, self.cumulative_hazard_[np.maximum(index, 0)], 0.0)

    def survival(self, margin: np.ndarray, months: np.ndarray) -> np.ndarray:
        """S(t | x) for each margin (rows) at each month (columns)."""
        hazard = self.cumulative_hazard(months)
        return np.exp(-np.outer(np.exp(np.asarray(margin, dtype=float)), hazard))

    def to_json(self) -> dict[str, Any]:
        return {"min_at_risk": self.min_at_risk, "event_times": self.event_times_.tolist(),
                "cumulative_hazard": self.cumulative_hazard_.tolist(),
                "last_reliable_month": self.last_reliable_month_}

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> BreslowBaseline:
        return cls(min_at_risk=spec["min_at_risk"], event_times_=np.array(spec["event_times"]),
                   cumulative_hazard_=np.array(spec["cumulative_hazard"]),
                   last_reliable_month_=spec["last_reliable_month"])
