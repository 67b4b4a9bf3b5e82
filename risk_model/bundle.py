"""The model bundle and its prediction path: what evaluation reports is what the endpoint answers.

A bundle holds one cause-specific survival model per cause (a margin model plus a Breslow baseline):
- `single_event` tasks (cml_tfr, ebmt_hsct): one cause; S(t | x) = exp(-H0(t) exp(margin)), reported as the
  schema's incidence endpoint (1 - S) and survival endpoint (S).
- `competing_risks` tasks (all_hsct): any number of causes (`relapse` and `nrm` there) combine into cumulative
  incidences with the product-limit form (so with no covariates they equal Aalen-Johansen and event-free + the
  incidences = 1 exactly); OS adds P(first cause and alive) from a post-relapse survival curve; GRFS comes from
  four causes (`grfs_*`) and is clipped to LFS, so OS >= LFS >= GRFS. Another task names its causes otherwise
  (ebmt_hsct_death_cause: death from relapse vs other causes; a registry's own task: three or more) and declares
  its endpoints; only the declared ones are computed, and a survival endpoint other than OS and GRFS is the
  probability of being free of every cause.
A task whose spec declares strata has one baseline per cause and stratum (risk_model/strata.py): each patient's
stratum index travels with the margins (key `STRATUM`) and picks its baseline, in the ensemble and the
contributions (where the stratum's baseline is a player of its own, given to the stratum column).
A bundle is a folder: `bundle.json` (preprocessing, baselines, coefficients or booster file names, horizons,
risk-group cut-points, training summary, explanation background of cluster summaries (no patient rows),
metrics, lineage) and one `<cause>.json` per boosted cause (xgboost's JSON model; `.ubj` in bundles saved before
it). Answering needs numpy, pandas and numba: the trees are read from the JSON model and walked in compiled loops
(risk_model/forest.py, risk_model/tree_shap.py), so xgboost, and the scikit-learn it imports, load only where a
booster itself is used (training, `margin_contributions`, a bundle with `.ubj` boosters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from risk_model.after_event import (
    AFTER_EVENT,
    alive_after_event,
    baseline_tables,
    encoding_weights,
    has_model,
    post_event_margin,
)
from risk_model.breslow import BreslowBaseline
from risk_model.preprocessing import PatientEncoding, Preprocessor, encoded_to_matrix
from risk_model.strata import STRATUM, StratifiedBaseline, baseline_from_json, encoded_strata, stratum_codes

CURVE_MONTHS = np.arange(0, 61, dtype=float)
RISK_GROUP_LABELS = ("low", "intermediate", "high")
BUNDLE_FILE = "bundle.json"
# The layout of bundle.json and its files, written into every bundle. Raise it with any change that older or newer
# code would misread, and teach `_in_current_format` the step from the previous format when there is one.
# 2: a cause's baseline may be one per stratum (risk_model/strata.py); a format-1 baseline is the one stratum.
BUNDLE_FORMAT_VERSION = 2
GRFS_CAUSES = ("grfs_relapse", "grfs_nrm", "grfs_agvhd", "grfs_cgvhd")
# Bounds on the rows of one vectorised pass (members x patients, or configurations x patients x background rows):
# each row carries one value per event time (~10^3). Measured on all_hsct: a 100-patient batch peaks at +29 MiB
# with 256 (+124 MiB with 1024, and no faster); 50 patients with contributions at +36 MiB with 512.
ENSEMBLE_ROWS = 256
CONTRIBUTION_ROWS = 512
GRADIENT_STEP = 1e-4


@dataclass
class CauseModel:
    """A cause-specific hazard model: margin = log relative hazard; Breslow baseline for H0."""

    family: str  # "cox_ph" or "xgboost_cox"
    preprocessor: Preprocessor
    baseline: BreslowBaseline | StratifiedBaseline  # one per stratum when the spec declares strata
    coefficients: list[float] | None = None
    booster: Any = None  # xgboost_cox: the booster, or None until `loaded_booster` reads `model_file`
    model_file: Path | None = None  # xgboost_cox in a loaded bundle: the booster's file
    _conditions: Any = field(default=None, repr=False)  # xgboost leaf table, built on first explanation
    _matrix_map: Any = field(default=None, repr=False)  # xgboost: the preprocessor's map from the encoding

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        encoding = PatientEncoding.of(self.preprocessor.schema_predictors)
        return self.margin_encoded(encoding.frame(frame), encoding)

    def margin_encoded(self, encoded: np.ndarray, encoding: PatientEncoding) -> np.ndarray:
        if self.family == "cox_ph":
            return encoded @ self.linear_weights(encoding)
        if self._matrix_map is None:  # once per loaded bundle, not per request
            self._matrix_map = self.preprocessor.linear_map(encoding)
        matrix = encoded_to_matrix(encoded, *self._matrix_map)
        margin = self.loaded_booster().inplace_predict(matrix, predict_type="margin", missing=np.nan)
        return np.asarray(margin, dtype=float)

    def linear_weights(self, encoding: PatientEncoding) -> np.ndarray:
        """Cox only: the margin as weights on the encoding (margin = encoded @ weights)."""
        weights, _ = self.preprocessor.linear_map(encoding)
        return weights.T @ np.asarray(self.coefficients, dtype=float)

    def margin_contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-predictor additive parts of the margin (rows x predictors); they sum to margin minus a constant.

        Cox: coefficient x value, summed over a predictor's columns. xgboost: native TreeSHAP (`pred_contribs`).
        """
        matrix = self.preprocessor.transform(frame)
        if self.family == "cox_ph":
            by_column = matrix * np.asarray(self.coefficients)
        else:
            import xgboost as xgb

            contribs = self.loaded_booster().predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)
            by_column = np.asarray(contribs[:, :-1], dtype=float)
        sources = np.array(self.preprocessor.sources)
        return np.column_stack([by_column[:, sources == name].sum(axis=1)
                                for name in self.preprocessor.feature_names])

    def loaded_booster(self) -> Any:
        """The xgboost booster, read from the bundle's file on first use: serving walks the trees of the JSON
        model (`tree_model`) and never needs it, nor xgboost and the scikit-learn it imports."""
        if self.booster is None and self.model_file is not None:
            import xgboost as xgb

            self.booster = xgb.Booster(params={"nthread": 1})
            self.booster.load_model(str(self.model_file))
        return self.booster

    def tree_model(self) -> dict[str, Any]:
        """xgboost's JSON model of the booster (its trees and base score): the bundle's file itself when it is
        JSON, else the booster's own JSON."""
        if self.booster is None and self.model_file is not None and self.model_file.suffix == ".json":
            return json.loads(self.model_file.read_text())
        return json.loads(bytes(self.loaded_booster().save_raw("json")))

    def to_json(self, folder: Path, name: str) -> dict[str, Any]:
        spec = {"family": self.family, "preprocessor": self.preprocessor.to_json(),
                "baseline": self.baseline.to_json(), "coefficients": self.coefficients}
        if self.family == "xgboost_cox":  # xgboost's JSON model format: serving reads its trees without xgboost
            spec["booster_file"] = f"{name}.json"
            self.loaded_booster().save_model(str(folder / spec["booster_file"]))
        return spec

    @classmethod
    def from_json(cls, spec: dict[str, Any], folder: Path) -> CauseModel:
        """A bundle's cause model; a booster stays on disk until something asks for it (`loaded_booster`).
        Bundles saved before the JSON model format hold `.ubj` boosters, which xgboost reads."""
        model_file = folder / spec["booster_file"] if spec["family"] == "xgboost_cox" else None
        return cls(family=spec["family"], preprocessor=Preprocessor.from_json(spec["preprocessor"]),
                   baseline=baseline_from_json(spec["baseline"]), coefficients=spec["coefficients"],
                   model_file=model_file)


@dataclass
class ModelBundle:
    task: str
    family: str
    outcome: str  # "single_event" or "competing_risks"
    causes: dict[str, CauseModel]
    horizons_months: list[int]
    main_horizon_months: int
    schema: dict[str, Any]
    # Survival after relapse (risk_model/after_event.py): {"months", "survival"} since relapse, and "model" (age,
    # time to relapse) when training could fit one.
    post_relapse_survival: dict[str, Any] | None = None
    background: list[dict[str, Any]] = field(default_factory=list)
    background_weights: list[float] = field(default_factory=list)
    risk_cut_points: list[float] = field(default_factory=list)
    training_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    # The model card of the registered version (training/model_card.py): {"markdown": ..., "html": ...};
    # empty in bundles exported before model cards existed.
    model_card: dict[str, str] = field(default_factory=dict)
    # Bootstrap refits of every cause (risk_model/intervals.py): the 95 % intervals on each probability.
    replicates: list[dict[str, CauseModel]] = field(default_factory=list)
    # Out-of-distribution reference (risk_model/ood.py): encoding, training mean and precision, thresholds of the
    # far_from_training_data and many_imputed_predictors warnings; empty in older bundles (no such warnings).
    ood_reference: dict[str, Any] = field(default_factory=dict)
    # UTC time (ISO 8601) the training run first saved the bundle; None in bundles saved before it was recorded.
    trained_at: str | None = None
    # Predictors of the task the model could not learn from (dropped at training, e.g. constant in the file):
    # [{"name", "reason"}]. Not in the encoding; a request may still send them, to no effect (`not_learned` warning).
    not_learned: list[dict[str, str]] = field(default_factory=list)
    # Report subgroups with their development counts (risk_model/report_groups.py): a patient in a small one gets
    # the `small_subgroup` warning; empty in older bundles.
    report_groups: list[dict[str, Any]] = field(default_factory=list)
    _background_cache: dict[str, Any] | None = field(default=None, repr=False)
    _ensemble_cache: dict[str, Any] | None = field(default=None, repr=False)

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
    def strata(self) -> StratifiedBaseline | None:
        """The first cause's stratified baseline (every cause shares the strata), None when unstratified."""
        baseline = next(iter(self.causes.values())).baseline
        return baseline if isinstance(baseline, StratifiedBaseline) else None

    def unseen_stratum_problems(self, patient: dict[str, Any]) -> list[dict[str, str]]:
        """A request field error for a stratum value the model has no baseline for (no training patient had
        it): the answer would fall back on another stratum's baseline, so it is refused."""
        strata = self.strata
        if strata is None:
            return []
        [index] = encoded_strata(self.encode([patient]), self._ensemble()["encoding"], strata.columns)
        if index in strata.strata:
            return []
        return [{"location": f"body.{column}", "reason": "no training patient had this value: the model has no "
                 "baseline for its stratum"} for column in strata.columns]

    @property
    def min_at_risk(self) -> int:
        return next(iter(self.causes.values())).baseline.min_at_risk

    # --- the ensemble: the bundle's own model (member 0) and its bootstrap replicates -----------------------
    def _ensemble(self) -> dict[str, Any]:
        """Built once per bundle: the encoding every preprocessor is linear in, the members, and for Cox causes
        every member's margin weights stacked, so all members' margins are one matrix product. Rebuilt when the
        causes or replicates are replaced (training attaches the replicates to a finished bundle)."""
        key = (id(self.causes), id(self.replicates), len(self.replicates))
        if self._ensemble_cache is None or self._ensemble_cache["key"] != key:
            encoding = PatientEncoding.of(next(iter(self.causes.values())).preprocessor.schema_predictors)
            members = [self.causes, *self.replicates]
            weights = {name: np.stack([m[name].linear_weights(encoding) for m in members])
                       for name, cause in self.causes.items() if cause.family == "cox_ph"}
            self._ensemble_cache = {"key": key, "encoding": encoding, "members": members, "weights": weights,
                                    "grouping": encoding.grouping(), "grids": {}}
        return self._ensemble_cache

    def encode(self, patients: pd.DataFrame | list[dict[str, Any]] | np.ndarray) -> np.ndarray:
        """Patients (a frame, plain dicts, or already encoded) in the encoding every cause model reads."""
        encoding = self._ensemble()["encoding"]
        if isinstance(patients, np.ndarray):
            return patients
        return encoding.frame(patients) if isinstance(patients, pd.DataFrame) else encoding.records(patients)

    def ood_columns(self, encoded: np.ndarray) -> np.ndarray:
        """The patients in the out-of-distribution reference's columns (risk_model/ood.py), one product."""
        if not self.ood_reference:
            return np.zeros((len(encoded), 0))
        ensemble = self._ensemble()
        if "ood" not in ensemble:
            from risk_model.ood import encoded_columns

            ensemble["ood"] = encoded_columns(self.ood_reference, ensemble["encoding"])
        return encoded @ ensemble["ood"]

    def member_margins(self, encoded: np.ndarray, with_replicates: bool = False) -> dict[str, np.ndarray]:
        """Each cause's margin as (members x patients): the bundle's own model, then every replicate if asked."""
        ensemble = self._ensemble()
        count = len(ensemble["members"]) if with_replicates else 1
        margins = {}
        for name in self.causes:
            if name in ensemble["weights"]:
                margins[name] = ensemble["weights"][name][:count] @ encoded.T
            else:
                margins[name] = self._forest_margins(name, count, encoded)
        if has_model(self.post_relapse_survival):  # one post-relapse model shared by every member
            after = post_event_margin(self.post_relapse_survival, ensemble["encoding"], encoded)
            margins[AFTER_EVENT] = np.repeat(after[None, :], count, axis=0)
        if self.strata:  # each patient's stratum picks its baseline (risk_model/strata.py)
            index = encoded_strata(encoded, ensemble["encoding"], self.strata.columns)
            margins[STRATUM] = np.repeat(index[None, :].astype(float), count, axis=0)
        return margins

    def _forest_margins(self, cause: str, count: int, encoded: np.ndarray) -> np.ndarray:
        """A boosted cause's margins for the first `count` members (members x patients) from every member's trees,
        compiled once per bundle (risk_model/forest.py), equal bit for bit to each booster's `inplace_predict`.
        Members whose preprocessors differ (a category absent from a bootstrap resample has no column) read their
        own columns, side by side in one stacked model matrix."""
        ensemble = self._ensemble()
        # numba (about 0.3 s to import) only where a boosted model answers, not in the service's arbiter
        from risk_model.forest import compile_forest, forest_margins

        forests = ensemble.setdefault("forests", {})
        if cause not in forests:
            offsets, stacked = _stacked_maps([m[cause] for m in ensemble["members"]], ensemble["encoding"])
            forests[cause] = (compile_forest([m[cause].tree_model() for m in ensemble["members"]], offsets,
                                             len(stacked[1])), stacked)
        forest, stacked = forests[cause]
        return forest_margins(forest.first(count), encoded_to_matrix(encoded, *stacked)).astype(float)

    def margins(self, frame: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[0] for name, values in self.member_margins(self.encode(frame)).items()}

    def endpoints_from_margins(self, margins: dict[str, np.ndarray], months: np.ndarray, only: str | None = None,
                               members: list[dict[str, CauseModel]] | None = None) -> dict[str, np.ndarray]:
        """Each endpoint's probability from the causes' margins: (patients x months) from the bundle's own
        margins (1-D), or (members x patients x months) from margins stacked over `members` (2-D)."""
        months = np.asarray(months, dtype=float)
        stacked = next(iter(margins.values())).ndim == 2
        members = members if stacked else [self.causes]
        margins = margins if stacked else {name: values[None, :] for name, values in margins.items()}
        if self.outcome == "single_event":
            [(cause, _)] = self.causes.items()
            hazard = _per_patient(_member_hazards(self, cause, members, months), margins.get(STRATUM))
            survival = np.exp(-np.exp(margins[cause])[:, :, None] * hazard)
            kinds = self.endpoint_kinds
            incidence = next(name for name, kind in kinds.items() if kind == "incidence")
            event_free = next(name for name, kind in kinds.items() if kind == "survival")
            result = {incidence: 1.0 - survival, event_free: survival}
        else:
            result = competing_risk_endpoints(self, margins, months, only, members)
        return result if stacked else {name: values[0] for name, values in result.items()}

    def endpoint_probabilities(self, frame: pd.DataFrame | np.ndarray, months: np.ndarray, only: str | None = None
                               ) -> dict[str, np.ndarray]:
        """Every endpoint (patients x months), in chunks of patients: with competing causes each patient carries
        one value per event time, and all_hsct's 45,000 held-out patients of a 180,000 cohort at once took 8.9 GB."""
        return self.endpoints_in_chunks(self.margins(frame), months, only)

    def endpoints_in_chunks(self, margins: dict[str, np.ndarray], months: np.ndarray, only: str | None = None
                            ) -> dict[str, np.ndarray]:
        """`endpoints_from_margins` of the bundle's own margins (1-D), ENSEMBLE_ROWS patients at a time."""
        n = len(next(iter(margins.values())))
        if n <= ENSEMBLE_ROWS:
            return self.endpoints_from_margins(margins, months, only)
        parts = [self.endpoints_from_margins({c: m[i:i + ENSEMBLE_ROWS] for c, m in margins.items()}, months, only)
                 for i in range(0, n, ENSEMBLE_ROWS)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def ensemble_endpoints(self, patients: pd.DataFrame | np.ndarray, months: np.ndarray, only: str | None = None
                           ) -> dict[str, np.ndarray]:
        """Every endpoint for every member (members x patients x months; member 0 is the bundle's own model), in
        one vectorised pass per chunk of patients (chunks bound the memory of members x patients x event times)."""
        # Margins of all patients at once (members x patients is small): a booster pays a fixed cost per call.
        return self.ensemble_from_margins(self.member_margins(self.encode(patients), with_replicates=True), months,
                                          only)

    def ensemble_from_margins(self, margins: dict[str, np.ndarray], months: np.ndarray, only: str | None = None
                              ) -> dict[str, np.ndarray]:
        """`ensemble_endpoints` of every member's margins (members x patients, as `member_margins` gives them)."""
        members = self._ensemble()["members"]
        chunk = max(1, ENSEMBLE_ROWS // len(members))
        n = len(next(iter(margins.values()))[0])
        parts = [self.endpoints_from_margins({c: m[:, i:i + chunk] for c, m in margins.items()}, months, only,
                                             members) for i in range(0, n, chunk)]
        return {name: np.concatenate([part[name] for part in parts], axis=1) for name in parts[0]}

    def event_probability(self, frame: pd.DataFrame | np.ndarray, months: np.ndarray) -> np.ndarray:
        """P(main event by t | x): relapse (incidence)."""
        return self.endpoint_probabilities(frame, months, only=self.main_endpoint)[self.main_endpoint]

    # --- explanations ---------------------------------------------------------------------------------
    def _background_terms(self) -> dict[str, Any]:
        key = (id(self.background), id(self.background_weights), id(self.causes))
        if self._background_cache is None or self._background_cache["key"] != key:
            encoded = self.encode(self.background)
            weights = np.asarray(self.background_weights, dtype=float)
            self._background_cache = {"key": key, "encoded": encoded, "margins": self.margins(encoded),
                                      "weights": weights / weights.sum()}
            self._background_cache["references"] = {cause: self._reference_side(cause, encoded)
                                                    for cause in self._explained_causes()}
        return self._background_cache

    def _explained_causes(self) -> list[str]:
        causes = list(self.causes)
        return [*causes, AFTER_EVENT] if has_model(self.post_relapse_survival) else causes

    def _reference_side(self, cause: str, background: np.ndarray) -> dict[str, Any]:
        """What a cause's reference Shapley gaps need of the background alone, once per bundle (it depends on no
        patient, endpoint or horizon): the weights on the encoding and each background row's per-predictor parts
        for a linear margin; for a booster its leaf table, the background's model matrix and which leaf
        conditions each background row satisfies."""
        ensemble = self._ensemble()
        model = self.causes.get(cause)
        if model is None or model.family == "cox_ph":
            weights = (encoding_weights(self.post_relapse_survival, ensemble["encoding"])[0] if model is None
                       else ensemble["weights"][cause][0])
            return {"weights": weights, "parts": (background * weights) @ ensemble["grouping"]}
        from risk_model.tree_shap import leaf_conditions, references

        preprocessor = model.preprocessor
        if model._conditions is None:
            model._conditions = leaf_conditions(model.tree_model(), len(preprocessor.columns))
        sources = np.array(preprocessor.sources)
        return {"map": preprocessor.linear_map(ensemble["encoding"]),
                "references": references(model._conditions, preprocessor.transform_encoded(background,
                                                                                            ensemble["encoding"])),
                "to_predictor": np.column_stack([(sources == name).astype(float) for name in self.feature_names])}

    def causes_of(self, endpoint: str) -> list[str]:
        """The causes whose margins an endpoint depends on."""
        causes = endpoint_causes(self.outcome, list(self.causes), endpoint)
        return [*causes, AFTER_EVENT] if endpoint == "os" and has_model(self.post_relapse_survival) else causes

    def contributions(self, patients: pd.DataFrame | np.ndarray | list[dict[str, Any]], horizon_months: float,
                      endpoint: str | None = None) -> tuple[np.ndarray, float]:
        """Shapley-style contributions to an endpoint's probability at a horizon, in probability units.

        Fast path, exact in its sum: for each background row b, the probability gap f(x) - f(b) is shared over
        predictors in proportion to their first-order effect through every cause's margin (the gradient of f
        at the midpoint times each predictor's exact Shapley share of the margin gap against b; with one cause
        this is the rescale rule), then averaged with the background weights. The result adds up to f(x) minus the
        weighted background mean of f. All patients, background rows and causes go through f in one pass.
        """
        values, bases = self.contributions_at(patients, [horizon_months], endpoint)
        return values[0], bases[0]

    def contributions_at(self, patients: pd.DataFrame | np.ndarray | list[dict[str, Any]],
                         horizons_months: list[float], endpoint: str | None = None
                         ) -> tuple[np.ndarray, list[float]]:
        """`contributions` at several horizons in one pass (horizons x patients x predictors, and each horizon's
        base): the product-limit runs once up to the last horizon, which costs about what that horizon alone
        does, and the margins' Shapley gaps, which no horizon changes, are computed once."""
        endpoint = endpoint or self.main_endpoint
        months = np.asarray(horizons_months, dtype=float)

        def f(margins: dict[str, np.ndarray]) -> np.ndarray:
            shape = next(iter(margins.values())).shape
            if len(shape) == 3:  # the two sides of a difference go as two members: what they share is computed once
                sides = {cause: values.reshape(shape[0], -1) for cause, values in margins.items()}
                return self.endpoints_from_margins(sides, months, endpoint, [self.causes] * shape[0])[
                    endpoint].reshape(*shape, len(months))
            flat = {cause: np.ravel(values) for cause, values in margins.items()}
            return self.endpoints_from_margins(flat, months, only=endpoint)[endpoint].reshape(*shape, len(months))

        background = self._background_terms()
        causes = self.causes_of(endpoint)
        # The background's own probabilities depend on no patient: once per endpoint and horizons
        cached = _bounded(background.setdefault("f", {}))
        key = (endpoint, months.tobytes())
        if key not in cached:
            cached[key] = f({**{c: background["margins"][c] for c in causes},
                             **_stratum_of({k: v[None] for k, v in background["margins"].items()}, 0)})
        f_background = cached[key]
        encoded = self.encode(patients)
        chunk = max(1, CONTRIBUTION_ROWS // (len(f_background) * len(causes) * len(months)))
        values = [self._contribution_chunk(encoded[i:i + chunk], f, f_background, causes)
                  for i in range(0, len(encoded), chunk)]
        # Each horizon's base from a contiguous column: a one-horizon call (every request) sums as a plain vector.
        bases = [float(background["weights"] @ np.ascontiguousarray(f_background[:, h])) for h in range(len(months))]
        return (np.concatenate(values, axis=1) if values else np.zeros((len(months), 0, len(self.feature_names))),
                bases)

    def _contribution_chunk(self, encoded: np.ndarray, f: Any, f_background: np.ndarray, causes: list[str]
                            ) -> np.ndarray:
        """(horizons x patients x predictors); `f` and `f_background` carry the horizons as their last axis."""
        background = self._background_terms()
        n, (k, horizons) = len(encoded), f_background.shape
        own = self.member_margins(encoded)
        at_x = {c: own[c][0] for c in causes}
        pairs = self._pair_strata(own, n, k)
        gradients, by_stratum = self._paired_terms(f, at_x, pairs, f_background, causes)
        share = np.zeros((n, k, horizons, len(self.feature_names)))
        for cause in causes:
            share += gradients[cause][..., None] * self._reference_gaps(cause, encoded)[:, :, None, :]
        gap_f = f({**at_x, **_stratum_of(own, 0)})[:, None] - f_background[None, :]
        scaled = _rescale(share.reshape(n * k * horizons, -1), (gap_f - by_stratum).reshape(-1)).reshape(share.shape)
        if pairs is not None:
            scaled += by_stratum[..., None] * self._stratum_columns(pairs)[:, :, None, :]
        # One horizon at a time from contiguous slices: a one-horizon call (every request) sums as a plain array.
        return np.stack([np.einsum("k,nkp->np", background["weights"], np.ascontiguousarray(scaled[:, :, h]))
                         for h in range(horizons)])

    def _pair_strata(self, own: dict[str, np.ndarray], n: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The stratum of each patient and of each background row as (patients x background), or None."""
        if STRATUM not in own:
            return None
        background = self._background_terms()["margins"][STRATUM]
        return (np.broadcast_to(own[STRATUM][0][:, None], (n, k)), np.broadcast_to(background[None, :], (n, k)))

    def _paired_terms(self, f: Any, at_x: dict[str, np.ndarray], pairs: tuple[np.ndarray, np.ndarray] | None,
                      f_background: np.ndarray, causes: list[str]
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """What each (patient, background row) pair needs of `f`, evaluated in one call (each evaluation is a
        member of one pass, so the Python around a call is paid once, not once per evaluation):

        - d f / d margin(cause) at the midpoint of patient and row, by central difference; with strata, the mean
          over the patient's and the row's stratum (a category has no midpoint);
        - the stratum's baseline as a player of its own (Shapley value of the two-player game baseline x
          margins): half of f(x) - f(x in b's stratum) plus half of f(b in x's stratum) - f(b); 0 unstratified.
        """
        background = {c: self._background_terms()["margins"][c] for c in at_x}
        n, k = len(next(iter(at_x.values()))), len(f_background)
        shape = (n, k)
        middle = {c: 0.5 * (at_x[c][:, None] + background[c][None, :]) for c in causes}
        strata = (None,) if pairs is None else tuple(p.astype(float) for p in pairs)
        evaluations = [{**{c: middle[c] + (sign * GRADIENT_STEP if c == cause else 0.0) for c in causes},
                        **({} if stratum is None else {STRATUM: stratum})}
                       for cause in causes for stratum in strata for sign in (1, -1)]
        if pairs is not None:
            x = {c: np.broadcast_to(m[:, None], shape) for c, m in at_x.items()}
            b = {c: np.broadcast_to(m[None, :], shape) for c, m in background.items()}
            evaluations += [{**x, STRATUM: strata[0]}, {**x, STRATUM: strata[1]}, {**b, STRATUM: strata[0]}]
        values = f({name: np.stack([np.broadcast_to(e[name], shape) for e in evaluations]) for name in evaluations[0]})
        gradients, position = {}, 0
        for cause in causes:
            total: Any = 0.0  # (patients x background x horizons) after the first stratum
            for _ in strata:
                total = total + (values[position] - values[position + 1]) / (2 * GRADIENT_STEP)
                position += 2
            gradients[cause] = total / (1 if pairs is None else len(pairs))
        if pairs is None:
            return gradients, np.zeros((n, *f_background.shape))
        own_x, other_x, own_b = values[position:position + 3]
        return gradients, 0.5 * ((own_x - other_x) + (own_b - f_background[None, :]))

    def _stratum_columns(self, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """(patients x background x predictors) weights giving the stratum part to the stratum columns whose
        values differ between patient and background row, in equal shares."""
        strata = self.strata
        differ = stratum_codes(strata, pairs[0]) != stratum_codes(strata, pairs[1])
        count = np.maximum(differ.sum(axis=-1, keepdims=True), 1)
        weights = np.zeros((*pairs[0].shape, len(self.feature_names)))
        for j, column in enumerate(strata.columns):
            weights[..., self.feature_names.index(column)] = differ[..., j] / count[..., 0]
        return weights

    def _reference_gaps(self, cause: str, encoded: np.ndarray) -> np.ndarray:
        """Each predictor's share of margin(x) - margin(b), for each patient against each background row
        (patients x background x predictors): exact Shapley values of the margin game with one reference. Cox:
        the difference of the linear parts; xgboost: interventional TreeSHAP per reference (risk_model/tree_shap.py).
        """
        reference = self._background_terms()["references"][cause]
        if "parts" in reference:  # linear margin (Cox, or the post-relapse model)
            parts_x = (encoded * reference["weights"]) @ self._ensemble()["grouping"]
            return parts_x[:, None, :] - reference["parts"][None, :, :]
        from risk_model.tree_shap import reference_shapley

        conditions = self.causes[cause]._conditions
        patients = encoded_to_matrix(encoded, *reference["map"])
        return reference_shapley(conditions, patients, reference["references"]) @ reference["to_predictor"]

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.trained_at is None:
            from datetime import UTC, datetime

            self.trained_at = datetime.now(UTC).isoformat(timespec="seconds")
        spec = {
            "format_version": BUNDLE_FORMAT_VERSION, "task": self.task, "family": self.family, "outcome": self.outcome,
            "causes": {name: cause.to_json(folder, name) for name, cause in self.causes.items()},
            "horizons_months": self.horizons_months, "main_horizon_months": self.main_horizon_months,
            "schema": self.schema, "post_relapse_survival": self.post_relapse_survival,
            "background": self.background, "background_weights": self.background_weights,
            "risk_cut_points": self.risk_cut_points, "training_summary": self.training_summary,
            "metrics": self.metrics, "lineage": self.lineage, "model_card": self.model_card,
            "ood_reference": self.ood_reference, "trained_at": self.trained_at, "not_learned": self.not_learned,
            "report_groups": self.report_groups,
            "replicates": [{name: cause.to_json(folder, f"replicate{i:02d}_{name}") for name, cause in causes.items()}
                           for i, causes in enumerate(self.replicates)],
        }
        text = json.dumps(_finite(spec), indent=1, default=_json_default, allow_nan=False)
        (folder / BUNDLE_FILE).write_text(text)
        return folder

    @classmethod
    def load(cls, folder: str | Path, upgrade: bool = False) -> ModelBundle:
        """Read a bundle of this format; another format raises BundleFormatError saying what to do. With
        `upgrade` (training's export and comparisons, the registry's pyfunc) an older format that has a step to
        this one is read too; serving never upgrades, so what it serves is what was exported."""
        folder = Path(folder)
        spec = json.loads((folder / BUNDLE_FILE).read_text())
        found = spec.pop("format_version", None)
        if found != BUNDLE_FORMAT_VERSION:
            lifted = _in_current_format(spec, found) if upgrade else None
            if lifted is None:
                raise BundleFormatError(found, spec)
            spec = lifted
        causes = {name: CauseModel.from_json(c, folder) for name, c in spec.pop("causes").items()}
        replicates = [{name: CauseModel.from_json(c, folder) for name, c in causes_spec.items()}
                      for causes_spec in spec.pop("replicates", [])]
        return cls(causes=causes, replicates=replicates, **spec)


class BundleFormatError(ValueError):
    """A bundle in a format this code does not read; the message names the commands that fix it."""

    def __init__(self, found: Any, spec: dict[str, Any]):
        self.found = found
        task = spec.get("task", "<task>")
        version = (spec.get("lineage") or {}).get("version") or "<registered version>"
        written = ("bundle has no format version (saved before formats were numbered)" if found is None
                   else f"bundle format {found!r}")
        if isinstance(found, int) and found > BUNDLE_FORMAT_VERSION:
            advice = f"serve it with the newer release that wrote it, or retrain with `make train TASK={task}`"
        else:
            advice = (f"retrain with `make train TASK={task}` or re-export with "
                      f"`make promote TASK={task} VERSION={version}`")
        super().__init__(f"{written}, this code reads format {BUNDLE_FORMAT_VERSION}: {advice}")


def _in_current_format(spec: dict[str, Any], found: Any) -> dict[str, Any] | None:
    """An older bundle's spec lifted to this format, or None when no step leads here. Bundles saved before
    formats were numbered have format 1's layout (fields added since then have defaults); format 1's one
    baseline per cause reads as format 2's unstratified baseline, unchanged."""
    if found in (None, 1) and BUNDLE_FORMAT_VERSION == 2:
        return spec
    return None


def _rescale(share: np.ndarray, gap_f: np.ndarray) -> np.ndarray:
    """Make each background row's first-order shares add up to the exact probability gap.

    Where the shares mostly agree in sign (their sum is at least half their absolute sum) they are scaled by
    gap / sum, the rescale rule. Where they largely cancel, scaling would blow them up (a sum near zero); there the
    residual gap - sum is spread in proportion to each share's size instead, so no contribution grows past its
    first-order value by more than the residual.
    """
    total = share.sum(axis=1)
    magnitude = np.abs(share)
    absolute = magnitude.sum(axis=1)
    agree = (np.abs(total) >= 0.5 * absolute) & (absolute > 1e-12)
    scaled = np.zeros_like(share)
    scaled[agree] = share[agree] * (gap_f[agree] / total[agree])[:, None]
    rest = ~agree
    weights = np.where(absolute[rest, None] > 1e-12, magnitude[rest] / np.where(absolute[rest] > 1e-12,
                                                                                 absolute[rest], 1.0)[:, None],
                       1.0 / share.shape[1])
    scaled[rest] = share[rest] + weights * (gap_f[rest] - total[rest])[:, None]
    return scaled


# --- competing risks -------------------------------------------------------------------------------------

def _stacked_maps(models: list[CauseModel], encoding: PatientEncoding
                  ) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
    """Each model's first column in one stacked model matrix, and the stacked map from the encoding to it: models
    with the same preprocessor map share their columns."""
    maps: list[tuple[np.ndarray, np.ndarray]] = []
    offsets = []
    for model in models:
        weights, nan_from = model.preprocessor.linear_map(encoding)
        index = next((i for i, (w, n) in enumerate(maps) if np.array_equal(w, weights) and np.array_equal(n, nan_from)),
                     None)
        if index is None:
            index = len(maps)
            maps.append((weights, nan_from))
        offsets.append(sum(len(w) for w, _ in maps[:index]))
    return offsets, (np.concatenate([w for w, _ in maps]), np.concatenate([n for _, n in maps]))


def _jump_grid(causes: list[CauseModel], upto: float) -> np.ndarray:
    times = np.unique(np.concatenate([c.baseline.event_times_ for c in causes]))
    return times[times <= upto]


def _bounded(cache: dict[Any, Any], limit: int = 256) -> dict[Any, Any]:
    """Requests choose explained horizons freely: start over rather than grow without bound."""
    if len(cache) > limit:
        cache.clear()
    return cache


def _member_hazards(bundle: ModelBundle, cause: str, members: list[dict[str, CauseModel]], months: np.ndarray
                    ) -> np.ndarray:
    """Each member's baseline cumulative hazard at the months (members x strata x months); cached like the
    grids."""
    cache = _bounded(bundle._ensemble()["grids"])
    key = (cause, tuple(id(m) for m in members), months.tobytes())
    if key not in cache:
        cache[key] = np.stack([m[cause].baseline.hazards(months) for m in members])
    return cache[key]


def _grid_steps(bundle: ModelBundle, names: tuple[str, ...], members: list[dict[str, CauseModel]], upto: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The event times of the named causes over all members up to `upto`, each cause's baseline hazard
    increments there (causes x members x strata x grid), and the grid positions where the first cause has an
    increment in some member or stratum (elsewhere its incidence increments are 0: overall survival reads only
    these); cached, since serving asks for the same months every time."""
    cache = _bounded(bundle._ensemble()["grids"])
    key = (names, tuple(id(m) for m in members), upto)
    if key not in cache:
        grid = _jump_grid([m[name] for m in members for name in names], upto)
        steps = np.stack([np.diff(np.stack([m[name].baseline.hazards(grid) for m in members]), axis=-1, prepend=0.0)
                          for name in names])
        cache[key] = (grid, steps, np.flatnonzero(np.any(steps[0] != 0, axis=(0, 1))))
    return cache[key]


def _rates(margins: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """exp(margin) of the named causes (causes x members x patients)."""
    return np.exp(np.stack([margins[name] for name in names]))


def _stratum_of(margins: dict[str, np.ndarray], member: int) -> dict[str, np.ndarray]:
    return {STRATUM: margins[STRATUM][member]} if STRATUM in margins else {}


def _per_patient(by_stratum: np.ndarray, stratum: np.ndarray | None) -> np.ndarray:
    """(members x strata x times) read at each patient's stratum: (members x patients x times); unstratified,
    the one row as (members x 1 x times), broadcast over the patients."""
    if stratum is None:
        return by_stratum[:, :1, :]
    index = np.asarray(stratum, dtype=int)
    return by_stratum[np.arange(len(by_stratum))[:, None], index]


def main_causes(bundle: ModelBundle) -> list[str]:
    """The competing causes, in the order of their event codes (the GRFS causes are a model of their own)."""
    return competing_causes(list(bundle.causes))


def competing_causes(causes: list[str]) -> list[str]:
    return [name for name in causes if name not in GRFS_CAUSES]


def endpoint_causes(outcome: str, causes: list[str], endpoint: str) -> list[str]:
    """Of a task's cause-specific models (in event-code order), those an endpoint reads (OS also reads the model
    of survival after the first event)."""
    if outcome == "single_event":
        return causes
    return [*competing_causes(causes), *GRFS_CAUSES] if endpoint == "grfs" else competing_causes(causes)


def competing_risk_endpoints(bundle: ModelBundle, margins: dict[str, np.ndarray], months: np.ndarray,
                             only: str | None = None, members: list[dict[str, CauseModel]] | None = None
                             ) -> dict[str, np.ndarray]:
    """The competing causes (the bundle's non-GRFS causes in event-code order: relapse and NRM for all_hsct; any
    number) give one cumulative incidence each, named like the cause, and the probability of being free of all of
    them, under every declared survival endpoint that is neither `os` nor `grfs` (all_hsct: `lfs`). `os`
    (event-free plus alive after the first cause) and `grfs` are computed only when the schema declares them; only
    the declared ones are returned (or `only` and what it needs). Margins are (members x patients), one member
    per entry of `members` (default: the bundle's own causes); results add the month axis.
    """
    # numba (about 0.3 s to import) only where a competing-risk model answers, not in the service's arbiter
    from risk_model.product_limit import product_limit_at

    members = members or [bundle.causes]
    main = tuple(main_causes(bundle))
    wanted = set(bundle.endpoint_kinds) if only is None else {only}
    upto = float(months.max())
    grid, steps, first_at = _grid_steps(bundle, main, members, upto)
    stratum = margins.get(STRATUM)
    # Incidences only where an answer reads them: a wanted incidence, and the first cause's increments for OS.
    needed = {k for k, name in enumerate(main) if name in wanted} | ({0} if "os" in wanted else set())
    event_free, incidence, d_first = product_limit_at(_rates(margins, main), steps, stratum, grid, months, needed,
                                                      keep_first="os" in wanted, first_at=first_at)
    result = {name: incidence[k] for k, name in enumerate(main) if name in wanted}
    result["lfs"] = event_free
    for name, kind in bundle.endpoint_kinds.items():
        if kind == "survival" and name not in ("os", "grfs"):
            result[name] = event_free
    # OS reads the first cause's increments at its own event times only: at the other causes' event times the
    # post-event survival powers would be computed to be multiplied by 0.
    if "os" in wanted:  # event-free, or relapsed and alive (risk_model/after_event.py)
        post = bundle.post_relapse_survival
        cache = _bounded(bundle._ensemble()["grids"])  # the tables are a grid x months array each
        key = ("after_event", main, tuple(id(m) for m in members), upto, months.tobytes())
        if key not in cache:
            cache[key] = baseline_tables(post, grid[first_at], months)
        result["os"] = result["lfs"] + alive_after_event(post, grid[first_at], months, d_first,
                                                         margins.get(AFTER_EVENT), cache[key])
    if "grfs" in wanted:
        grfs_grid, grfs_steps, _ = _grid_steps(bundle, GRFS_CAUSES, members, upto)
        grfs_free, _, _ = product_limit_at(_rates(margins, GRFS_CAUSES), grfs_steps, stratum, grfs_grid, months, set())
        result["grfs"] = np.minimum(grfs_free, result["lfs"])
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
