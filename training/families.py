"""The two model families behind one interface: fit on a validated frame, predict a margin, then S(t | x).

- `CoxFamily`: lifelines Cox proportional hazards (Efron ties, small ridge penalty, which also penalises spline
  terms) on imputed, missing-indicator, drop-first one-hot columns, numbers in the form the spec declares (log2,
  restricted cubic spline, cuts); baseline on its own (in-sample) margins.
- `XGBoostCoxFamily`: xgboost `survival:cox` on raw columns (missing values native), monotone in
  TKI and deep-response duration; baseline by Breslow on the booster's own margins of its training patients.
Each fit is one cause-specific model (other causes censor it) and ends in a `CauseModel`; a task's causes
together make the `ModelBundle`, so evaluation and serving share one prediction path.

`strata` (the spec's): one baseline per stratum in both families (risk_model/strata.py); the Cox family fits the
stratified partial likelihood without a coefficient for the stratum columns, the booster keeps them as features.

`ties`: the baseline estimator (risk_model/breslow.py): "grouped" for a single event, whose S(t | x) =
exp(-H0(t) exp(margin)) it matches when outcomes are seen at visits; "breslow" for competing causes, whose
product-limit combination takes Breslow's increments. `knots`: spline knots fixed from outside (a replicate takes
the point model's), else placed on the training patients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from features.survival_target import check_survival_target
from features.task_schema import TaskSchema
from risk_model.breslow import BreslowBaseline
from risk_model.bundle import CauseModel
from risk_model.preprocessing import PatientEncoding, Preprocessor
from risk_model.strata import StratifiedBaseline, frame_strata, stratum_levels
from training.efron import efron_derivatives
from training.parallel import xgboost_threads

XGB_FIXED_PARAMS = {"objective": "survival:cox", "eval_metric": "cox-nloglik", "tree_method": "hist",
                    "verbosity": 0}


def xgboost_cox_label(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """xgboost's survival:cox label: time for events, negative time for censored (never -0, read as an event)."""
    return np.where(event == 1, time, -np.maximum(time, 1e-6))


@dataclass
class CoxFamily:
    penalizer: float = 0.01
    name: str = "cox_ph"
    ties: str = "grouped"
    knots: dict[str, list[float]] | None = None
    preprocessor_: Preprocessor | None = None
    coefficients_: np.ndarray | None = None
    baseline_: BreslowBaseline | StratifiedBaseline | None = None

    def fit(self, frame: pd.DataFrame, schema: TaskSchema, target: tuple[np.ndarray, np.ndarray]) -> CoxFamily:
        """Fit, then respect the spec's monotone hints: a value or cut column whose coefficient goes against its
        predictor's hint, or a spline whose curve does over the training values, is left out and the model
        refitted (the constrained fit's boundary, where that effect is flat)."""
        time, event = check_survival_target(*target)
        self.preprocessor_ = Preprocessor(impute=True).fit(frame, schema, self.knots)
        matrix = self.preprocessor_.transform(frame)
        # Columns constant in this fold (e.g. a missing indicator with nothing missing) carry no information.
        keep = (matrix.std(axis=0) > 0) & np.array([s not in schema.strata for s in self.preprocessor_.sources])
        strata = training_strata(frame, schema)
        hints = {p.name: p.monotone for p in schema.predictors if p.monotone and p.kind == "number"}
        for _ in range(len(self.preprocessor_.columns)):
            coefficients = self._fit_columns(matrix, keep, time, event, strata)
            against = _against_hints(self.preprocessor_, coefficients, hints, frame) & keep
            if not against.any():
                break
            keep &= ~against
        self.coefficients_ = coefficients
        self.baseline_ = fit_baseline(schema, frame, matrix @ coefficients, (time, event), self.ties)
        return self

    def _fit_columns(self, matrix: np.ndarray, keep: np.ndarray, time: np.ndarray, event: np.ndarray,
                     strata: np.ndarray | None = None) -> np.ndarray:
        """Penalised partial likelihood; with strata, lifelines' stratified one (risk sets within a stratum)."""
        data = pd.DataFrame(matrix[:, keep], columns=np.array(self.preprocessor_.columns)[keep])
        data["_time"], data["_event"] = time, event
        if strata is not None:
            data["_stratum"] = strata
        fitter = cox_fitter()(penalizer=self.penalizer, strata=None if strata is None else ["_stratum"])
        fitter.fit(data, "_time", "_event")
        coefficients = np.zeros(matrix.shape[1])
        coefficients[keep] = fitter.params_.to_numpy()
        return coefficients

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.preprocessor_.transform(frame) @ self.coefficients_

    def cause_model(self) -> CauseModel:
        return CauseModel(family=self.name, preprocessor=self.preprocessor_, baseline=self.baseline_,
                          coefficients=self.coefficients_.tolist())


@cache
def cox_fitter() -> type:
    """lifelines' Breslow-Efron Cox fitter (what its CoxPHFitter fits with) with two cheaper parts: the Efron
    likelihood of each Newton step in vectorised numpy (training/efron.py) instead of a Python loop over patients,
    and as its reference covariate values (for its own plots and partial hazards) each stratum's medians, taken by
    one median per column instead of describe()'s eight statistics per column and stratum. The coefficients, all
    this project reads, equal lifelines' own to rounding (tests/training/test_efron.py)."""
    from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

    class ProjectCoxFitter(SemiParametricPHFitter):
        def _choose_gradient_calculator(self, T: pd.Series, X: pd.DataFrame, entries: Any) -> Callable:
            if entries is not None:  # delayed entry: lifelines' own (this project never sends it)
                return super()._choose_gradient_calculator(T, X, entries)
            return _vectorised_efron

        def _compute_central_values_of_raw_training_data(self, df: pd.DataFrame, strata: Any = None,
                                                         name: str = "baseline") -> pd.DataFrame:
            if strata is None:
                return df.median(numeric_only=True).to_frame(name=name).T.astype(df.dtypes)
            return df.groupby(strata).median(numeric_only=True)

    return ProjectCoxFitter


def _vectorised_efron(X: pd.DataFrame, T: pd.Series, E: pd.Series, weights: pd.Series, entries: None,
                      beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """lifelines' Efron call for one Newton step (on all patients, or on one stratum's), answered by
    training/efron.py in vectorised numpy."""
    return efron_derivatives(X.to_numpy(dtype=float), T.to_numpy(dtype=float), E.to_numpy(),
                             weights.to_numpy(dtype=float), beta)


def _against_hints(preprocessor: Preprocessor, coefficients: np.ndarray, hints: dict[str, int],
                   frame: pd.DataFrame) -> np.ndarray:
    """Columns to leave out for going against a monotone hint (-1: risk never rises with the value)."""
    columns, sources = np.array(preprocessor.columns), np.array(preprocessor.sources)
    against = np.zeros(len(columns), dtype=bool)
    for name, direction in hints.items():
        own = sources == name
        spline = own & np.char.startswith(columns.astype(str), f"{name}@rcs")
        signed = own & ~spline & ~np.char.endswith(columns.astype(str), "__missing")
        against |= signed & (direction * coefficients < -1e-12)
        if spline.any() and not against[own].any():
            grid = np.quantile(pd.to_numeric(frame[name], errors="coerce").dropna(), np.linspace(0, 1, 50))
            curve = PatientEncoding.of(preprocessor.schema_predictors)
            effect = preprocessor.transform_encoded(curve.frame(pd.DataFrame({name: grid})), curve)
            rises = np.diff(effect[:, own] @ coefficients[own]) * direction
            against |= spline if (rises < -1e-9).any() else np.zeros_like(spline)
    return against


def training_strata(frame: pd.DataFrame, schema: TaskSchema) -> np.ndarray | None:
    """Each patient's stratum index under the spec's strata (None without strata)."""
    if not schema.strata:
        return None
    return frame_strata(frame, list(schema.strata), stratum_categories(schema))


def stratum_categories(schema: TaskSchema) -> list[list[str]]:
    """Each stratum column's levels (a boolean's "false", "true")."""
    return [stratum_levels(schema.predictor(c).kind, schema.predictor(c).categories) for c in schema.strata]


def fit_baseline(schema: TaskSchema, frame: pd.DataFrame, margin: np.ndarray,
                 target: tuple[np.ndarray, np.ndarray], ties: str) -> BreslowBaseline | StratifiedBaseline:
    """The Breslow baseline on these margins: one, or one per stratum of the spec's strata."""
    strata = training_strata(frame, schema)
    if strata is None:
        return BreslowBaseline(ties=ties).fit(margin, *target)
    return StratifiedBaseline(list(schema.strata), stratum_categories(schema)).fit(
        np.asarray(margin, dtype=float), *target, strata, ties)


def baseline_ties(outcome: str) -> str:
    """The baseline estimator matching how the bundle combines a task's causes (see the module docstring)."""
    return "grouped" if outcome == "single_event" else "breslow"


def monotone_constraints(schema: TaskSchema, preprocessor: Preprocessor) -> tuple[int, ...]:
    direction = {p.name: p.monotone for p in schema.predictors}
    return tuple(direction.get(column, 0) for column in preprocessor.columns)


@dataclass
class XGBoostCoxFamily:
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 200
    seed: int = 0
    name: str = "xgboost_cox"
    ties: str = "grouped"
    knots: dict[str, list[float]] | None = None
    preprocessor_: Preprocessor | None = None
    booster_: Any = None
    baseline_: BreslowBaseline | StratifiedBaseline | None = None

    def _params(self, schema: TaskSchema) -> dict[str, Any]:
        # nthread: this process's share of the cores (training/parallel.py); the trees do not depend on it.
        return {**XGB_FIXED_PARAMS, **self.params, "seed": self.seed, "nthread": xgboost_threads(),
                "monotone_constraints": monotone_constraints(schema, self.preprocessor_)}

    def _train(self, matrix: np.ndarray, label: np.ndarray, schema: TaskSchema, rounds: int,
               valid: tuple[np.ndarray, np.ndarray] | None = None, early_stopping: int | None = None) -> Any:
        import xgboost as xgb

        from training.distributed import cluster_client, from_arrays, scheduler_address, train_on_cluster

        params = self._params(schema)
        # DASK_SCHEDULER: the fit runs on the cluster's workers. Not the early-stopped tuning fits: xgboost cannot
        # evaluate the Cox partial likelihood distributed (tuning scales out through tune-workers instead).
        if valid is None and (address := scheduler_address()):
            client = cluster_client(address)
            return train_on_cluster(client, params, from_arrays(matrix, label, client), rounds)
        train = xgb.DMatrix(matrix, label=label, missing=np.nan)
        evals = [(xgb.DMatrix(valid[0], label=valid[1], missing=np.nan), "valid")] if valid else []
        return xgb.train(params, train, num_boost_round=rounds, evals=evals,
                         early_stopping_rounds=early_stopping if valid else None, verbose_eval=False)

    def fit(self, frame: pd.DataFrame, schema: TaskSchema, target: tuple[np.ndarray, np.ndarray],
            ) -> XGBoostCoxFamily:
        """Fit on the frame, then the Breslow baseline on this booster's own margins of the same patients.

        A Cox booster has no fixed intercept: each booster sits at its own level, so a baseline fitted on other
        boosters' margins (out-of-fold ones, say) shifts every probability. On its own margins the level matches.
        """
        time, event = check_survival_target(*target)
        self.preprocessor_ = Preprocessor(impute=False).fit(frame, schema, self.knots)
        matrix = self.preprocessor_.transform(frame)
        self.booster_ = self._train(matrix, xgboost_cox_label(time, event), schema, self.num_boost_round)
        # survival:cox has no strata: a stratum column stays a feature of the trees, and each stratum gets its
        # own baseline on the booster's margins.
        self.baseline_ = fit_baseline(schema, frame, self.predict_margin(frame), (time, event), self.ties)
        return self

    def fit_partitions(self, parts: Any, schema: TaskSchema,
                       target_of: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]], client: Any = None,
                       ) -> XGBoostCoxFamily:
        """`fit` for a cohort held in partitions (a dask DataFrame, training/distributed.py) on a dask cluster
        (`client`, else DASK_SCHEDULER): the matrix is built and fitted on the workers; only margins, times and
        events (three numbers per patient) come back for the Breslow baseline."""
        from training.distributed import (
            cluster_client,
            model_matrix,
            predict_margin,
            scheduler_address,
            train_on_cluster,
        )

        if client is None:
            address = scheduler_address()
            if address is None:
                raise ValueError("fit_partitions needs a dask cluster: a client, or DASK_SCHEDULER=tcp://host:port")
            client = cluster_client(address)
        # The boosted family's encoding depends on the schema only (no imputation): the empty frame suffices.
        self.preprocessor_ = Preprocessor(impute=False).fit(parts._meta, schema)
        matrix, label = model_matrix(parts, self.preprocessor_.transform, self.preprocessor_.columns,
                                     lambda part: xgboost_cox_label(*target_of(part)))
        self.booster_ = train_on_cluster(client, self._params(schema), (matrix, label), self.num_boost_round)
        margin = predict_margin(client, self.booster_, matrix)
        columns = [*schema.strata]  # the stratum columns come back too, for a baseline per stratum
        targets = client.compute(parts.map_partitions(
            lambda part: pd.DataFrame({**dict(zip(("time", "event"), target_of(part), strict=True)),
                                       **{c: part[c] for c in columns}}, index=part.index),
            meta=pd.DataFrame({"time": pd.Series(dtype=float), "event": pd.Series(dtype=int),
                               **{c: pd.Series(dtype=object) for c in columns}}))).result()
        time, event = check_survival_target(targets["time"].to_numpy(), targets["event"].to_numpy())
        self.baseline_ = fit_baseline(schema, targets, margin, (time, event), self.ties)
        return self

    def fit_early_stopping(self, preprocessor: Preprocessor, matrices: tuple[np.ndarray, np.ndarray],
                           schema: TaskSchema,
                           targets: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                           patience: int = 30) -> int:
        """Fit on the training matrix (encoded by `preprocessor`) stopping on the validation matrix's partial
        likelihood; returns the best number of rounds."""
        self.preprocessor_ = preprocessor
        labels = [xgboost_cox_label(*check_survival_target(*t, allow_all_censored=True)) for t in targets]
        self.booster_ = self._train(matrices[0], labels[0], schema, self.num_boost_round, (matrices[1], labels[1]),
                                    patience)
        return int(self.booster_.best_iteration) + 1

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        import xgboost as xgb

        matrix = self.preprocessor_.transform(frame)
        return self.booster_.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True)

    def cause_model(self) -> CauseModel:
        return CauseModel(family=self.name, preprocessor=self.preprocessor_, baseline=self.baseline_,
                          booster=self.booster_)
