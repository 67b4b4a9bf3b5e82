"""The model bundle and its prediction path: what evaluation reports is what the endpoint answers.

A bundle holds one cause-specific survival model per cause (a margin model plus a Breslow baseline):
- `single_event` tasks (cml_tfr, ebmt_hsct): one cause; S(t | x) = exp(-H0(t) exp(margin)), reported as the
  schema's incidence endpoint (1 - S) and survival endpoint (S).
- `competing_risks` tasks (all_hsct): causes `relapse` and `nrm` combine into cumulative incidences with the
  product-limit form (so with no covariates they equal Aalen-Johansen and LFS + CIR + NRM = 1 exactly); OS adds
  P(relapsed and alive) from a post-relapse survival curve; GRFS comes from four causes (`grfs_*`) and is
  clipped to LFS, so OS >= LFS >= GRFS. Another task may name its two causes otherwise (ebmt_hsct_death_cause:
  death from relapse vs other causes) and declare fewer endpoints; only the declared ones are computed.
A bundle is a folder: `bundle.json` (preprocessing, baselines, coefficients or booster file names, horizons,
risk-group cut-points, training summary, explanation background of cluster summaries (no patient rows),
metrics, lineage) and one `<cause>.ubj` per boosted cause. Only numpy, pandas and xgboost are needed here.
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
GRFS_CAUSES = ("grfs_relapse", "grfs_nrm", "grfs_agvhd", "grfs_cgvhd")


@dataclass
class CauseModel:
    """A cause-specific hazard model: margin = log relative hazard; Breslow baseline for H0."""

    family: str  # "cox_ph" or "xgboost_cox"
    preprocessor: Preprocessor
    baseline: BreslowBaseline
    coefficients: list[float] | None = None
    booster: Any = None
    _conditions: Any = field(default=None, repr=False)  # xgboost leaf table, built on first explanation

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = self.preprocessor.transform(frame)
        if self.family == "cox_ph":
            return matrix @ np.asarray(self.coefficients)
        import xgboost as xgb

        margin = self.booster.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True)
        return np.asarray(margin, dtype=float)

    def margin_contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-predictor additive parts of the margin (rows x predictors); they sum to margin minus a constant.

        Cox: coefficient x value, summed over a predictor's columns. xgboost: native TreeSHAP (`pred_contribs`).
        """
        matrix = self.preprocessor.transform(frame)
        if self.family == "cox_ph":
            by_column = matrix * np.asarray(self.coefficients)
        else:
            import xgboost as xgb

            contribs = self.booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)
            by_column = np.asarray(contribs[:, :-1], dtype=float)
        sources = np.array(self.preprocessor.sources)
        return np.column_stack([by_column[:, sources == name].sum(axis=1)
                                for name in self.preprocessor.feature_names])

    def reference_gaps(self, patient: pd.DataFrame, background: pd.DataFrame) -> np.ndarray:
        """Each predictor's share of margin(x) - margin(b) for one patient against each background row.

        Exact Shapley values of the margin game with one reference: for Cox the difference of the linear
        parts; for xgboost interventional TreeSHAP per reference row (training/tree_shap.py).
        """
        if self.family == "cox_ph":
            return self.margin_contributions(patient)[0][None, :] - self.margin_contributions(background)
        from training.tree_shap import leaf_conditions, reference_shapley

        if self._conditions is None:
            self._conditions = leaf_conditions(self.booster, len(self.preprocessor.columns))
        by_column = reference_shapley(self._conditions, self.preprocessor.transform(patient)[0],
                                      self.preprocessor.transform(background))
        sources = np.array(self.preprocessor.sources)
        return np.column_stack([by_column[:, sources == name].sum(axis=1)
                                for name in self.preprocessor.feature_names])

    def to_json(self, folder: Path, name: str) -> dict[str, Any]:
        spec = {"family": self.family, "preprocessor": self.preprocessor.to_json(),
                "baseline": self.baseline.to_json(), "coefficients": self.coefficients}
        if self.family == "xgboost_cox":
            spec["booster_file"] = f"{name}.ubj"
            self.booster.save_model(str(folder / spec["booster_file"]))
        return spec

    @classmethod
    def from_json(cls, spec: dict[str, Any], folder: Path) -> CauseModel:
        booster = None
        if spec["family"] == "xgboost_cox":
            import xgboost as xgb

            booster = xgb.Booster(params={"nthread": 1})
            booster.load_model(str(folder / spec["booster_file"]))
        return cls(family=spec["family"], preprocessor=Preprocessor.from_json(spec["preprocessor"]),
                   baseline=BreslowBaseline.from_json(spec["baseline"]), coefficients=spec["coefficients"],
                   booster=booster)


@dataclass
class ModelBundle:
    task: str
    family: str
    outcome: str  # "single_event" or "competing_risks"
    causes: dict[str, CauseModel]
    horizons_months: list[int]
    main_horizon_months: int
    schema: dict[str, Any]
    post_relapse_survival: dict[str, list[float]] | None = None  # {"months", "survival"} since relapse
    background: list[dict[str, Any]] = field(default_factory=list)
    background_weights: list[float] = field(default_factory=list)
    risk_cut_points: list[float] = field(default_factory=list)
    training_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    # The model card of the registered version (training/model_card.py): {"markdown": ..., "html": ...};
    # empty in bundles exported before model cards existed.
    model_card: dict[str, str] = field(default_factory=dict)
    # Bootstrap refits of every cause (training/intervals.py): the 95 % intervals on each probability.
    replicates: list[dict[str, CauseModel]] = field(default_factory=list)
    # Out-of-distribution reference (training/ood.py): encoding, training mean and precision, thresholds of the
    # far_from_training_data and many_imputed_predictors warnings; empty in older bundles (no such warnings).
    ood_reference: dict[str, Any] = field(default_factory=dict)
    # UTC time (ISO 8601) the training run first saved the bundle; None in bundles saved before it was recorded.
    trained_at: str | None = None
    _background_cache: dict[str, Any] | None = field(default=None, repr=False)

    # --- what the bundle answers ----------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [p["name"] for p in self.schema["predictors"]]

    @property
    def endpoint_kinds(self) -> dict[str, str]:
        """Endpoint -> "incidence" (probability of the event) or "survival" (of staying event-free)."""
        return dict(self.schema["endpoints"])

    @property
    def main_endpoint(self) -> str:
        """The schema's first endpoint (`relapse` for cml_tfr and all_hsct): plain metric names, promotion gates."""
        return next(iter(self.schema["endpoints"]))

    @property
    def last_reliable_month(self) -> float:
        return min(c.baseline.last_reliable_month_ for c in self.causes.values())

    @property
    def min_at_risk(self) -> int:
        return next(iter(self.causes.values())).baseline.min_at_risk

    def margins(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {name: cause.margin(frame) for name, cause in self.causes.items()}

    def endpoints_from_margins(self, margins: dict[str, np.ndarray], months: np.ndarray,
                               only: str | None = None) -> dict[str, np.ndarray]:
        """Each endpoint's probability (rows = patients, columns = months) from the causes' margins."""
        months = np.asarray(months, dtype=float)
        if self.outcome == "single_event":
            [(cause, model)] = self.causes.items()
            survival = model.baseline.survival(margins[cause], months)
            kinds = self.endpoint_kinds
            incidence = next(name for name, kind in kinds.items() if kind == "incidence")
            event_free = next(name for name, kind in kinds.items() if kind == "survival")
            return {incidence: 1.0 - survival, event_free: survival}
        return competing_risk_endpoints(self, margins, months, only)

    def endpoint_probabilities(self, frame: pd.DataFrame, months: np.ndarray, only: str | None = None
                               ) -> dict[str, np.ndarray]:
        return self.endpoints_from_margins(self.margins(frame), months, only)

    def event_probability(self, frame: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """P(main event by t | x): relapse (incidence)."""
        return self.endpoint_probabilities(frame, months, only=self.main_endpoint)[self.main_endpoint]

    # --- explanations ---------------------------------------------------------------------------------
    def _background_terms(self) -> dict[str, Any]:
        if self._background_cache is None:
            frame = pd.DataFrame(self.background)
            self._background_cache = {"margins": self.margins(frame)}
        return self._background_cache

    def contributions(self, frame: pd.DataFrame, horizon_months: float, endpoint: str | None = None
                      ) -> tuple[np.ndarray, float]:
        """Shapley-style contributions to an endpoint's probability at a horizon, in probability units.

        Fast path, exact in its sum: for each background row b, the probability gap f(x) - f(b) is shared over
        predictors in proportion to their first-order effect through every cause's margin (the gradient of f
        at the midpoint times each predictor's exact Shapley share of the margin gap against b; with one cause
        this is the rescale rule), then averaged with the background weights. The result adds up to f(x) minus the
        weighted background mean of f.
        """
        endpoint = endpoint or self.main_endpoint
        background = self._background_terms()
        weights = np.asarray(self.background_weights, dtype=float)
        weights = weights / weights.sum()
        horizon = np.array([float(horizon_months)])

        def f(margins: dict[str, np.ndarray]) -> np.ndarray:
            return self.endpoints_from_margins(margins, horizon, only=endpoint)[endpoint][:, 0]

        base_value = float(weights @ f(background["margins"]))
        margins_x = self.margins(frame)
        background_frame = pd.DataFrame(self.background)
        values = np.zeros((len(frame), len(self.feature_names)))
        k = len(weights)
        for row in range(len(frame)):
            at_x = {c: np.full(k, margins_x[c][row]) for c in self.causes}
            gap_f = f(at_x) - f(background["margins"])
            share = np.zeros((k, len(self.feature_names)))
            for cause in self.causes:
                gap_parts = self.causes[cause].reference_gaps(frame.iloc[[row]], background_frame)
                share += _midpoint_gradient(f, at_x, background["margins"], cause)[:, None] * gap_parts
            values[row] = weights @ _rescale(share, gap_f)
        return values, base_value

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.trained_at is None:
            from datetime import UTC, datetime

            self.trained_at = datetime.now(UTC).isoformat(timespec="seconds")
        spec = {
            "task": self.task, "family": self.family, "outcome": self.outcome,
            "causes": {name: cause.to_json(folder, name) for name, cause in self.causes.items()},
            "horizons_months": self.horizons_months, "main_horizon_months": self.main_horizon_months,
            "schema": self.schema, "post_relapse_survival": self.post_relapse_survival,
            "background": self.background, "background_weights": self.background_weights,
            "risk_cut_points": self.risk_cut_points, "training_summary": self.training_summary,
            "metrics": self.metrics, "lineage": self.lineage, "model_card": self.model_card,
            "ood_reference": self.ood_reference, "trained_at": self.trained_at,
            "replicates": [{name: cause.to_json(folder, f"replicate{i:02d}_{name}") for name, cause in causes.items()}
                           for i, causes in enumerate(self.replicates)],
        }
        text = json.dumps(_finite(spec), indent=1, default=_json_default, allow_nan=False)
        (folder / BUNDLE_FILE).write_text(text)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelBundle:
        folder = Path(folder)
        spec = json.loads((folder / BUNDLE_FILE).read_text())
        causes = {name: CauseModel.from_json(c, folder) for name, c in spec.pop("causes").items()}
        replicates = [{name: CauseModel.from_json(c, folder) for name, c in causes_spec.items()}
                      for causes_spec in spec.pop("replicates", [])]
        return cls(causes=causes, replicates=replicates, **spec)


def _midpoint_gradient(f: Any, at_x: dict[str, np.ndarray], at_b: dict[str, np.ndarray], cause: str,
                       step: float = 1e-4) -> np.ndarray:
    """df/dm_cause at the midpoint between x and each background row (central difference)."""
    middle = {c: 0.5 * (at_x[c] + at_b[c]) for c in at_x}
    up, down = dict(middle), dict(middle)
    up[cause], down[cause] = middle[cause] + step, middle[cause] - step
    return (f(up) - f(down)) / (2 * step)


def _rescale(share: np.ndarray, gap_f: np.ndarray) -> np.ndarray:
    """Scale each background row's first-order shares so they add up to the exact probability gap."""
    total = share.sum(axis=1)
    safe = np.abs(total) > 1e-12
    scaled = np.zeros_like(share)
    scaled[safe] = share[safe] * (gap_f[safe] / total[safe])[:, None]
    # Where the first-order shares cancel out, split the gap by the size of each predictor's share.
    magnitude = np.abs(share[~safe])
    norm = magnitude.sum(axis=1, keepdims=True)
    fallback = np.where(norm > 0, magnitude / np.where(norm > 0, norm, 1.0), 1.0 / share.shape[1])
    scaled[~safe] = fallback * gap_f[~safe][:, None]
    return scaled


# --- competing risks -------------------------------------------------------------------------------------

def _jump_grid(causes: list[CauseModel], upto: float) -> np.ndarray:
    times = np.unique(np.concatenate([c.baseline.event_times_ for c in causes]))
    return times[times <= upto]


def _cause_increments(cause: CauseModel, margin: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """dH_k(g | x) at each grid time (patients x grid)."""
    cumulative = cause.baseline.cumulative_hazard(grid)
    steps = np.diff(np.concatenate([[0.0], cumulative]))
    return np.outer(np.exp(margin), steps)


def _product_limit(increments: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Event-free probability just after each grid time and each cause's incidence increments.

    S(g) = S(g-) (1 - dH_total(g)); dF_k(g) = S(g-) dH_k(g). When dH_total > 1 (large relative hazards) the
    increments are scaled to 1, so S stays in [0, 1] and S + sum F_k = 1 holds exactly.
    """
    total = np.sum(increments, axis=0)
    scale = np.where(total > 1.0, 1.0 / np.where(total > 0, total, 1.0), 1.0)
    factors = 1.0 - total * scale
    survival_after = np.cumprod(factors, axis=1)
    survival_before = np.concatenate([np.ones((total.shape[0], 1)), survival_after[:, :-1]], axis=1)
    return survival_after, [survival_before * inc * scale for inc in increments]


def _at_months(grid: np.ndarray, values: np.ndarray, months: np.ndarray, start: float) -> np.ndarray:
    """Step function (value after each grid time) read at each month; `start` before the first grid time."""
    index = np.searchsorted(grid, months, side="right") - 1
    padded = np.concatenate([np.full((values.shape[0], 1), start), values], axis=1)
    return padded[:, index + 1]


def competing_risk_endpoints(bundle: ModelBundle, margins: dict[str, np.ndarray], months: np.ndarray,
                             only: str | None = None) -> dict[str, np.ndarray]:
    """The two competing causes (the bundle's first two non-GRFS causes, event codes 1 and 2: relapse and NRM
    for all_hsct) give one cumulative incidence each, named like the cause, and the event-free probability
    `lfs`. `os` (event-free plus alive after the first cause) and `grfs` are computed only when the schema
    declares them; only the declared endpoints are returned (or `only` and what it needs)."""
    first, second = (name for name in bundle.causes if name not in GRFS_CAUSES)
    wanted = set(bundle.endpoint_kinds) if only is None else {only}
    grid = _jump_grid([bundle.causes[first], bundle.causes[second]], float(months.max()))
    lfs_after, (d_first, d_second) = _product_limit(
        [_cause_increments(bundle.causes[name], margins[name], grid) for name in (first, second)])
    result = {
        first: _at_months(grid, np.cumsum(d_first, axis=1), months, 0.0),
        second: _at_months(grid, np.cumsum(d_second, axis=1), months, 0.0),
        "lfs": _at_months(grid, lfs_after, months, 1.0),
    }
    if "os" in wanted:
        post = bundle.post_relapse_survival
        post_months, post_survival = np.asarray(post["months"]), np.asarray(post["survival"])
        since = months[None, :] - grid[:, None]  # grid x months
        index = np.searchsorted(post_months, since, side="right") - 1
        alive = np.where(since >= 0, np.where(index >= 0, post_survival[np.maximum(index, 0)], 1.0), 0.0)
        result["os"] = result["lfs"] + d_first @ alive
    if "grfs" in wanted:
        grfs_causes = [bundle.causes[c] for c in GRFS_CAUSES]
        grfs_grid = _jump_grid(grfs_causes, float(months.max()))
        grfs_after, _ = _product_limit([_cause_increments(c, margins[name], grfs_grid)
                                        for name, c in zip(GRFS_CAUSES, grfs_causes, strict=True)])
        result["grfs"] = np.minimum(_at_months(grfs_grid, grfs_after, months, 1.0), result["lfs"])
    if only is None:
        return {name: result[name] for name in bundle.endpoint_kinds}
    return result


def _finite(value: Any) -> Any:
    """NaN (e.g. a metric skipped for lack of follow-up) becomes null: bundle.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    raise TypeError(f"not JSON serialisable: {type(value)}")
