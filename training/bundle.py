"""The model bundle and its prediction path: what evaluation reports is what the endpoint answers.

A bundle is a folder: `bundle.json` (preprocessing, Breslow baseline, coefficients or booster file name,
horizons, risk-group cut-points, training summary for out-of-distribution warnings, explanation background of
cluster summaries (no patient rows), metrics, lineage) and, for the boosted family, `booster.ubj`.
Only numpy, pandas and xgboost are needed here, so serving never imports training or tracking libraries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.breslow import BreslowBaseline
from training.preprocessing import Preprocessor

CURVE_MONTHS = np.arange(0, 61, dtype=float)
RISK_GROUP_LABELS = ("low", "intermediate", "high")
BUNDLE_FILE = "bundle.json"
BOOSTER_FILE = "booster.ubj"


@dataclass
class ModelBundle:
    task: str
    family: str  # "cox_ph" or "xgboost_cox"
    preprocessor: Preprocessor
    baseline: BreslowBaseline
    horizons_months: list[int]
    main_horizon_months: int
    schema: dict[str, Any]
    coefficients: list[float] | None = None
    booster: Any = None
    background: list[dict[str, Any]] = field(default_factory=list)
    background_weights: list[float] = field(default_factory=list)
    risk_cut_points: list[float] = field(default_factory=list)
    training_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    _background_cache: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # --- the model ------------------------------------------------------------------------------------
    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Log relative hazard for each row of a preprocessed matrix."""
        if self.family == "cox_ph":
            return matrix @ np.asarray(self.coefficients)
        import xgboost as xgb

        margin = self.booster.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True)
        return np.asarray(margin, dtype=float)

    def margin_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-predictor additive parts of the margin (rows x predictors); they sum to margin minus a constant.

        Cox: coefficient x value, summed over a predictor's columns. xgboost: native TreeSHAP (`pred_contribs`).
        """
        if self.family == "cox_ph":
            by_column = matrix * np.asarray(self.coefficients)
        else:
            import xgboost as xgb

            contribs = self.booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)
            by_column = np.asarray(contribs[:, :-1], dtype=float)
        names = self.preprocessor.feature_names
        sources = np.array(self.preprocessor.sources)
        return np.column_stack([by_column[:, sources == name].sum(axis=1) for name in names])

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return self.preprocessor.transform(frame)

    def relapse_free_probability(self, frame: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """S(t | x): rows are patients, columns the months asked for."""
        return self.baseline.survival(self.margin(self.matrix(frame)), months)

    def event_probability(self, frame: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """P(event by t | x) = 1 - S(t | x)."""
        return 1.0 - self.relapse_free_probability(frame, months)

    # --- explanations ---------------------------------------------------------------------------------
    def _background_terms(self) -> tuple[np.ndarray, np.ndarray]:
        if self._background_cache is None:
            matrix = self.matrix(pd.DataFrame(self.background))
            self._background_cache = (self.margin(matrix), self.margin_contributions(matrix))
        return self._background_cache

    def contributions(self, frame: pd.DataFrame, horizon_months: float) -> tuple[np.ndarray, float]:
        """Shapley-style contributions to P(event by horizon | x) in probability units, and the base value.

        Fast path: for each background row b, the margin gap m(x) - m(b) splits over predictors as the
        difference of their margin contributions; the probability gap f(x) - f(b) is shared in the same
        proportions (the rescale rule), then averaged with the background weights. The result adds up exactly
        to f(x) minus the weighted background mean of f.
        """
        matrix = self.matrix(frame)
        parts_x = self.margin_contributions(matrix)
        margin_x = self.margin(matrix)
        margin_b, parts_b = self._background_terms()
        weights = np.asarray(self.background_weights, dtype=float)
        weights = weights / weights.sum()
        hazard = float(self.baseline.cumulative_hazard(np.array([horizon_months]))[0])

        def risk(m: np.ndarray) -> np.ndarray:
            return 1.0 - np.exp(-hazard * np.exp(m))

        gap_parts = parts_x[:, None, :] - parts_b[None, :, :]  # patients x background x predictors
        # The margin gap is taken from the parts (not float32 margins), so the shares sum exactly.
        gap_margin = gap_parts.sum(axis=2)
        gap_risk = risk(margin_x)[:, None] - risk(margin_b)[None, :]
        slope_at_x = np.exp(-hazard * np.exp(margin_x)) * hazard * np.exp(margin_x)
        tiny = np.abs(gap_margin) < 1e-9
        ratio = np.where(tiny, slope_at_x[:, None], gap_risk / np.where(tiny, 1.0, gap_margin))
        values = np.einsum("k,nk,nkp->np", weights, ratio, gap_parts)
        base_value = float(weights @ risk(margin_b))
        return values, base_value

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "task": self.task, "family": self.family, "preprocessor": self.preprocessor.to_json(),
            "baseline": self.baseline.to_json(), "horizons_months": self.horizons_months,
            "main_horizon_months": self.main_horizon_months, "schema": self.schema,
            "coefficients": self.coefficients, "background": self.background,
            "background_weights": self.background_weights, "risk_cut_points": self.risk_cut_points,
            "training_summary": self.training_summary, "metrics": self.metrics, "lineage": self.lineage,
        }
        if self.family == "xgboost_cox":
            self.booster.save_model(str(folder / BOOSTER_FILE))
            spec["booster_file"] = BOOSTER_FILE
        (folder / BUNDLE_FILE).write_text(json.dumps(_finite(spec), indent=1, default=_json_default,
                                                     allow_nan=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelBundle:
        folder = Path(folder)
        spec = json.loads((folder / BUNDLE_FILE).read_text())
        booster = None
        if spec["family"] == "xgboost_cox":
            import xgboost as xgb

            booster = xgb.Booster(params={"nthread": 1})
            booster.load_model(str(folder / spec["booster_file"]))
        return cls(
            task=spec["task"], family=spec["family"],
            preprocessor=Preprocessor.from_json(spec["preprocessor"]),
            baseline=BreslowBaseline.from_json(spec["baseline"]), horizons_months=spec["horizons_months"],
            main_horizon_months=spec["main_horizon_months"], schema=spec["schema"],
            coefficients=spec["coefficients"], booster=booster, background=spec["background"],
            background_weights=spec["background_weights"], risk_cut_points=spec["risk_cut_points"],
            training_summary=spec["training_summary"], metrics=spec["metrics"], lineage=spec["lineage"],
        )


def _finite(value: Any) -> Any:
    """NaN (e.g. a metric skipped for lack of follow-up) becomes null: bundle.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")
