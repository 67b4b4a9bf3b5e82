"""A patient's answer in the shape every task shares (clarifications §6), computed from a bundle; many patients
in one pass with `predict_patients`. Answers are the typed models of `risk_model.answers`, the ones the service
sends and its OpenAPI document shows."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from risk_model.answers import (
    Contribution,
    Contributions,
    ExplainedContribution,
    ExplanationAnswer,
    ExplanationBackground,
    ModelIdentity,
    PredictionAnswer,
    Warning_,
)
from risk_model.bundle import CURVE_MONTHS, RISK_GROUP_LABELS, ModelBundle
from risk_model.intervals import interval_method, intervals_from_replicates
from risk_model.ood import combination_warnings
from risk_model.report_groups import small_subgroup_warnings
from risk_model.wording import answer_phrase

RARE_CATEGORY_SHARE = 0.01


def out_of_distribution_warnings(bundle: ModelBundle, patient: dict[str, Any]) -> list[Warning_]:
    """Warn when a value lies outside what the model was trained on (never an error: the value is valid)."""
    warnings = []
    summary = bundle.training_summary
    for name, value in patient.items():
        info = summary.get(name)
        if value is None or info is None:
            continue
        if info["kind"] == "number" and not (info["min"] <= float(value) <= info["max"]):
            warnings.append(Warning_(code="outside_training_range", field=name,
                                     message=f"{value} lies outside the training range "
                                             f"[{info['min']:g}, {info['max']:g}]; the estimate extrapolates"))
        elif info["kind"] == "category" and info["shares"].get(str(value), 0.0) < RARE_CATEGORY_SHARE:
            share = info["shares"].get(str(value), 0.0)
            warnings.append(Warning_(code="rare_category", field=name,
                                     message=f"{value!r} was {'absent' if share == 0 else 'rare'} in training "
                                             f"({100 * share:.1f} % of patients); treat the estimate with caution"))
    return warnings


def patient_warnings(bundle: ModelBundle, patients: list[dict[str, Any]], encoded: np.ndarray
                     ) -> list[list[Warning_]]:
    """Each patient's warnings about its own values (outside the training range, rare category, far from the
    training patients, many imputed predictors, a report subgroup with few development patients): every route
    that answers with a probability gives these, so a
    patient never gets a number without the caution /predict would give it."""
    combination = combination_warnings(bundle.ood_reference, bundle.ood_columns(encoded), patients)
    groups = getattr(bundle, "report_groups", None) or []
    return [[*out_of_distribution_warnings(bundle, patient), *warnings, *small_subgroup_warnings(groups, patient)]
            for patient, warnings in zip(patients, combination, strict=True)]


def beyond_follow_up_warnings(bundle: ModelBundle, months: Any, what: str = "so no estimate is given there"
                              ) -> list[Warning_]:
    """One `horizon_beyond_follow_up` warning per horizon past the training follow-up."""
    return [Warning_(code="horizon_beyond_follow_up", field=None,
                     message=f"fewer than {bundle.min_at_risk} training patients were followed to {h:g} months, "
                             f"{what}")
            for h in np.asarray(months, dtype=float) if h > bundle.last_reliable_month]


def not_learned_warnings(bundle: ModelBundle) -> list[Warning_]:
    """One warning per predictor the model could not learn from, in every answer: the clinician may have sent
    it and must not believe it counted."""
    return [Warning_(code="not_learned", field=item["name"],
                     message=f"this model could not learn from {item['name']} ({item['reason']}): it was dropped "
                             "at training, so a value sent for it has no effect on the estimate")
            for item in getattr(bundle, "not_learned", None) or []]


def risk_groups(bundle: ModelBundle, risks: np.ndarray) -> list[dict[str, Any]]:
    """Each patient's risk group from the main endpoint's risk at the main horizon (the training tertiles)."""
    labels = np.asarray(RISK_GROUP_LABELS)[np.searchsorted(bundle.risk_cut_points, risks, side="right")].tolist()
    return [{"label": label, "horizon_months": bundle.main_horizon_months, "cut_points": bundle.risk_cut_points}
            for label in labels]


def answer_identity(bundle: ModelBundle, identity: dict[str, Any] | None = None) -> ModelIdentity:
    """The identity the service gives (champion.json's version and run), else the bundle's own lineage."""
    return ModelIdentity(**(identity or {"name": bundle.task, "version": bundle.lineage.get("version"),
                                         "run_id": bundle.lineage.get("run_id"), "family": bundle.family}))


def _endpoint_answers(kind: str, at_horizons: np.ndarray, curves: np.ndarray, horizons: list[int],
                      reliable_until: float, bounds: tuple[np.ndarray, np.ndarray] | None) -> list[dict[str, Any]]:
    """One endpoint's answer for every patient, as plain data from (patients x horizons) and (patients x curve
    months) arrays: the numbers are clipped and hidden for all patients at once."""
    lower, upper = bounds if bounds is not None else (np.full(at_horizons.shape, np.nan),) * 2
    hidden = np.asarray(horizons, dtype=float) > reliable_until
    # Probabilities lie in [0, 1]; clipping only removes floating-point excursions (e.g. 1 + 2e-16).
    shown = [_shown(np.clip(values, 0.0, 1.0), hidden) for values in (at_horizons, lower, upper)]
    months, horizon_months = CURVE_MONTHS.astype(int).tolist(), [int(m) for m in horizons]
    return [{"kind": kind,
             "horizons": [{"months": m, "probability": p, "lower": lo, "upper": hi}
                          for m, p, lo, hi in zip(horizon_months, probability, low, high, strict=True)],
             "curve": {"months": months, "probability": curve}}
            for probability, low, high, curve in zip(*shown, np.clip(curves, 0.0, 1.0).tolist(), strict=True)]


def _shown(values: np.ndarray, hidden: np.ndarray) -> list[list[float | None]]:
    """Rows of plain floats, None past the training follow-up (`hidden` columns) and where there is no number."""
    rows = values.astype(object)
    rows[np.isnan(values) | hidden[None, :]] = None
    return rows.tolist()


def predict_patient(
    bundle: ModelBundle,
    patient: dict[str, Any],
    *,
    explain_endpoint: str | None = None,
    explain_horizon_months: float | None = None,
    model_identity: dict[str, Any] | None = None,
) -> PredictionAnswer:
    """Every endpoint at each horizon with monthly curves, risk group, contributions and warnings."""
    [answer] = predict_patients(bundle, [patient], explain=[(explain_endpoint, explain_horizon_months)],
                                model_identity=model_identity)
    return answer


def predict_patients(
    bundle: ModelBundle,
    patients: list[dict[str, Any]],
    *,
    explain: list[tuple[str | None, float | None]] | None = None,
    with_contributions: bool = True,
    model_identity: dict[str, Any] | None = None,
) -> list[PredictionAnswer]:
    """`predict_patient` for many patients in one pass of the model (the endpoint, the batch endpoint and
    `make score` all run this). `explain` gives each patient's (endpoint, horizon) to explain (None: the
    defaults); without contributions (`with_contributions=False`) each answer's `contributions` is None."""
    if not patients:
        return []
    with _collector_paused():
        return _answers(bundle, patients, explain, with_contributions, model_identity)


def _answers(bundle: ModelBundle, patients: list[dict[str, Any]], explain: list[tuple[str | None, float | None]] | None,
             with_contributions: bool, model_identity: dict[str, Any] | None) -> list[PredictionAnswer]:
    encoded = bundle.encode(patients)
    reliable_until = bundle.last_reliable_month
    months = np.array(bundle.horizons_months, dtype=float)
    probabilities, intervals = _probabilities_and_intervals(bundle, encoded, months)
    at_horizons = {name: values[:, : len(months)] for name, values in probabilities.items()}
    beyond = beyond_follow_up_warnings(bundle, months)
    cautions = patient_warnings(bundle, patients, encoded)
    not_learned = not_learned_warnings(bundle)
    contributions = (_contributions(bundle, encoded, patients, explain or [(None, None)] * len(patients))
                     if with_contributions else [None] * len(patients))
    main_risk = (at_horizons[bundle.main_endpoint][:, bundle.horizons_months.index(bundle.main_horizon_months)]
                 if bundle.main_horizon_months in bundle.horizons_months
                 else bundle.event_probability(encoded, np.array([bundle.main_horizon_months]))[:, 0])
    identity = answer_identity(bundle, model_identity)
    method = interval_method(bundle)
    endpoints = {name: _endpoint_answers(kind, at_horizons[name], probabilities[name][:, len(months):],
                                         bundle.horizons_months, reliable_until, intervals[name] if intervals else None)
                 for name, kind in bundle.endpoint_kinds.items()}
    answers = [{"task": bundle.task, "model": identity, "endpoints": {name: endpoints[name][row] for name in endpoints},
                "risk_group": group, "contributions": contributions[row], "interval_method": method,
                "warnings": [*cautions[row], *beyond, *not_learned]}
               for row, group in enumerate(risk_groups(bundle, main_risk))]
    # One call of pydantic's compiled validator builds and checks every answer object: building them one by one
    # in Python cost more than a boosted model's whole prediction (make bench's batch model time).
    return _ANSWERS.validate_python(answers)


_ANSWERS = TypeAdapter(list[PredictionAnswer])
_pause = {"depth": 0, "was_enabled": False}
_pause_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while answers are computed: they are thousands of containers without
    cycles that reference counting frees, and the collections their allocations set off would scan them, and the
    loaded models, for nothing (a large share of a 1,000-patient batch's time). Concurrent callers share one pause; the
    last one out turns the collector back on if it was on."""
    with _pause_lock:
        if _pause["depth"] == 0:
            _pause["was_enabled"] = gc.isenabled()
            gc.disable()
        _pause["depth"] += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause["depth"] -= 1
            if _pause["depth"] == 0 and _pause["was_enabled"]:
                gc.enable()


def _probabilities_and_intervals(bundle: ModelBundle, encoded: np.ndarray, months: np.ndarray
                                 ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Every endpoint at the horizons then the curve months, and the intervals at the horizons, from one pass over
    every member's margins. The replicates are asked for the horizons only, and the curve comes from the bundle's
    own model alone: 30 replicates' curves, which no answer shows, were most of a boosted model's work."""
    margins = bundle.member_margins(encoded, with_replicates=bool(bundle.replicates))
    own = {cause: values[0] for cause, values in margins.items()}
    curves = bundle.endpoints_in_chunks(own, CURVE_MONTHS)
    if not bundle.replicates:
        at_horizons = bundle.endpoints_in_chunks(own, months)
        return {name: np.concatenate([at_horizons[name], curves[name]], axis=1) for name in curves}, None
    members = bundle.ensemble_from_margins(margins, months)
    probabilities = {name: np.concatenate([values[0], curves[name]], axis=1) for name, values in members.items()}
    intervals = intervals_from_replicates(bundle, {name: values[1:] for name, values in members.items()},
                                          {name: values[0] for name, values in members.items()})
    return probabilities, intervals


def _contributions(bundle: ModelBundle, encoded: np.ndarray, patients: list[dict[str, Any]],
                   explain: list[tuple[str | None, float | None]]) -> list[Contributions]:
    """Each patient's contributions, computed together for the patients that ask for the same explanation."""
    groups: dict[tuple[str, float], list[int]] = {}
    for row, (endpoint, horizon) in enumerate(explain):
        key = (endpoint or bundle.main_endpoint, float(horizon or bundle.main_horizon_months))
        groups.setdefault(key, []).append(row)
    units = {p["name"]: p.get("unit") for p in bundle.schema["predictors"]}
    result: list[Contributions | None] = [None] * len(patients)
    for (endpoint, horizon), rows in groups.items():
        values, base_value = bundle.contributions(encoded[rows], horizon, endpoint)
        for position, row in enumerate(rows):
            items = [Contribution(feature=name, value=_plain(patients[row].get(name)), units=units.get(name),
                                  percentage_points=float(100.0 * v))
                     for name, v in zip(bundle.feature_names, values[position], strict=True)]
            result[row] = Contributions(endpoint=endpoint, horizon_months=horizon, base_value=base_value,
                                        items=items)
    return result  # type: ignore[return-value]  # every row belongs to one group


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def explain_patient(bundle: ModelBundle, patient: dict[str, Any], endpoint: str | None = None,
                    horizon_months: float | None = None, model_identity: dict[str, Any] | None = None
                    ) -> ExplanationAnswer:
    """Every predictor's contribution to one endpoint's probability at one horizon, largest first, with its value,
    units and direction, the explained probability and the background it is measured against."""
    endpoint = endpoint or bundle.main_endpoint
    horizon = float(horizon_months or bundle.main_horizon_months)
    encoded = bundle.encode([patient])
    [explained] = _contributions(bundle, encoded, [patient], [(endpoint, horizon)])
    probability = float(bundle.endpoint_probabilities(encoded, np.array([horizon]), only=endpoint)[endpoint][0, 0])
    items = sorted((ExplainedContribution(**item.model_dump(), direction=_direction(item.percentage_points))
                    for item in explained.items), key=lambda item: -abs(item.percentage_points))
    return ExplanationAnswer(
        task=bundle.task, model=answer_identity(bundle, model_identity), endpoint=endpoint,
        kind=bundle.endpoint_kinds[endpoint], horizon_months=horizon,
        explained=f"probability of {answer_phrase(bundle.schema, endpoint)} by {horizon:g} months",
        probability=probability, base_value=explained.base_value, units="percentage points of that probability",
        background=ExplanationBackground(rows=len(bundle.background), patients=int(sum(bundle.background_weights)),
                                         description=BACKGROUND_DESCRIPTION),
        method=CONTRIBUTION_METHOD, items=items,
        warnings=[*patient_warnings(bundle, [patient], encoded)[0],
                  *beyond_follow_up_warnings(bundle, [horizon], "so the explained probability extrapolates"),
                  *not_learned_warnings(bundle)],
    )


BACKGROUND_DESCRIPTION = ("synthetic patients that reproduce the training cohort: every number a mean of at least "
                          "10 training patients, category shares, means and the mean predicted probability of the "
                          "training patients kept by the weights (each at least 10 patients); no patient's own row")
CONTRIBUTION_METHOD = ("interventional Shapley values of the probability itself against the background, fast "
                       "path: each cause's exact margin shares, mapped to the probability scale through the "
                       "gradient at the midpoint and rescaled so they add up exactly to probability - base_value")


def _direction(points: float) -> str:
    if abs(points) < 0.005:  # below the 0.01-point resolution an answer is shown at
        return "none"
    return "raises" if points > 0 else "lowers"
