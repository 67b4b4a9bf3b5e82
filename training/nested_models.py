"""Nested Cox models (the spec's `[[nested_models]]`): what each step of predictors adds, e.g. MRD at the end of
induction, then at the end of consolidation, then the log reduction between them (README "MRD kinetics").

For each entry, overall and per level of `by`, cause-specific Cox models of the explained cause (the other causes
censor it) add the steps one at a time after `adjust_for`, all fitted on the development data without a penalty:
the likelihood-ratio test of each step against the previous model is computed there, where the models are fitted
and the test is valid. Each model's linear predictor is then judged on the held-out patients: Harrell's and Uno's
(Wolbers' with competing risks) C, and the difference from the previous step with a paired bootstrap interval.

Collinearity is reported, never fitted: a column that is an exact linear combination of the columns before it (on
the development data of that level) is left out and named, and a step whose columns all are adds 0 degrees of
freedom, gets no test and says so. The log reduction is eoi - eoc, so added linearly after both values it adds
nothing where both are measured; `spline(name)` adds a restricted cubic spline (4 knots at the 5th, 35th, 65th
and 95th percentiles, Harrell 2015) whose non-linear terms can add what a linear term cannot.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.task_spec import TERM, NestedModelSpec
from features.tasks import EndpointTarget, Task
from risk_model.preprocessing import Preprocessor
from training.bootstrap import MIN_CENTRES_FOR_CENTRE_BOOTSTRAP, bootstrap_indices
from training.evaluate import concordance_with_se, harrell_c_with_se, subset_target, uno_tau
from training.families import cox_fitter

SPLINE_KNOTS = (0.05, 0.35, 0.65, 0.95)
MIN_EVENTS = 10  # fewer events of the cause in a level's development data: the level is reported, not fitted


# --- terms as model-matrix columns -----------------------------------------------------------------------


@dataclass
class _Term:
    """A fitted term: its column names and how it turns a frame into those columns."""

    columns: list[str]
    transform: Callable[[pd.DataFrame], np.ndarray]


def spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline: x and k - 2 non-linear terms, linear beyond the outer knots (Harrell's rcs)."""
    x, knots = np.asarray(x, float), np.asarray(knots, float)
    k = len(knots)
    scale = (knots[-1] - knots[0]) ** 2
    columns = [x]
    for j in range(k - 2):
        term = (
            np.clip(x - knots[j], 0, None) ** 3
            - np.clip(x - knots[-2], 0, None) ** 3 * (knots[-1] - knots[j]) / (knots[-1] - knots[-2])
            + np.clip(x - knots[-1], 0, None) ** 3 * (knots[-2] - knots[j]) / (knots[-1] - knots[-2])
        )
        columns.append(term / scale)
    return np.column_stack(columns)


def _fit_term(term: str, task: Task, development: pd.DataFrame) -> _Term:
    match = TERM.match(term)
    assert match is not None  # the spec model checked every term
    name = match.group("spline") or match.group("plain")
    predictor = next(p for p in task.schema.predictors if p.name == name)
    if match.group("spline"):
        fill = float(pd.to_numeric(development[name], errors="coerce").median())
        values = pd.to_numeric(development[name], errors="coerce").fillna(fill).to_numpy(float)
        knots = np.unique(np.quantile(values, SPLINE_KNOTS))
        knots = knots if len(knots) >= 3 else knots[:0]

        def spline(frame: pd.DataFrame) -> np.ndarray:
            x = pd.to_numeric(frame[name], errors="coerce").fillna(fill).to_numpy(float)
            return spline_basis(x, knots) if len(knots) else x[:, None]

        return _Term([f"{term}:{j}" for j in range(max(len(knots) - 1, 1))], spline)
    preprocessor = Preprocessor(impute=True).fit(development, replace(task.schema, predictors=(predictor,)))
    return _Term(list(preprocessor.columns), preprocessor.transform)


def independent_columns(matrix: np.ndarray) -> np.ndarray:
    """Mask of the columns kept in order: a constant column, or one that is a linear combination of the kept
    columns before it (exactly, to rounding), is left out."""
    spread = matrix.std(axis=0)
    keep = np.zeros(matrix.shape[1], dtype=bool)
    rank = 0
    for j in range(matrix.shape[1]):
        if spread[j] == 0:
            continue
        keep[j] = True
        standardized = (matrix[:, keep] - matrix[:, keep].mean(axis=0)) / matrix[:, keep].std(axis=0)
        new_rank = np.linalg.matrix_rank(standardized, tol=1e-8 * np.sqrt(len(matrix)))
        if new_rank == rank:
            keep[j] = False
        rank = int(keep.sum())
    return keep


# --- fitting ---------------------------------------------------------------------------------------------


def null_log_likelihood(time: np.ndarray, event: np.ndarray) -> float:
    """Cox partial log-likelihood at beta = 0 with Efron's ties (as lifelines): -sum_t sum_{l<d_t} log(r_t - l)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    grid, deaths = np.unique(time[event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), grid, side="left")
    return float(-sum(np.log(r - np.arange(d)).sum() for r, d in zip(at_risk, deaths, strict=True)))


def fit_cox(
    matrix: np.ndarray, time: np.ndarray, event: np.ndarray, start: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Unpenalised Cox coefficients and partial log-likelihood (Efron ties), fitted on standardised columns from
    `start` (the previous step's coefficients, zeros for the new columns): from zero, Newton-Raphson diverged on
    nearly collinear MRD columns and stopped at a lower likelihood than the smaller model's."""
    if matrix.shape[1] == 0:
        return np.zeros(0), null_log_likelihood(time, event)
    scale = matrix.std(axis=0)
    data = pd.DataFrame((matrix - matrix.mean(axis=0)) / scale, columns=[f"x{j}" for j in range(matrix.shape[1])])
    data["_time"], data["_event"] = time, event
    initial = None if start is None else np.asarray(start, float) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter = cox_fitter()(penalizer=0.0).fit(data, "_time", "_event", initial_point=initial)
    return fitter.params_.to_numpy() / scale, float(fitter.log_likelihood_)


# --- one level: the chain of models --------------------------------------------------------------------


def _cause(task: Task) -> str:
    """The explained endpoint's cause (the first cause when the explained endpoint is a survival one)."""
    spec = task.spec
    names = [c.name for c in spec.causes] if spec is not None else []
    explained = spec.explained_endpoint if spec is not None else ""
    return explained if explained in names else (names[0] if names else "")


def _concordance(target: EndpointTarget, risk: np.ndarray, tau: float) -> tuple[float, float]:
    code = np.asarray(target.code)
    return (
        harrell_c_with_se(target.months, (code == target.event_of_interest).astype(int), risk)[0],
        concordance_with_se(target, risk, tau)[0],
    )


def _level_rows(
    task: Task,
    nested: NestedModelSpec,
    development: pd.DataFrame,
    held_out: pd.DataFrame,
    target: EndpointTarget,
    draws: int,
    seed: int,
    min_centres: int,
) -> list[dict[str, Any]]:
    """One row per step of one level: degrees of freedom, LR test, held-out C and its paired difference."""
    months, event = task.cause_targets(development)[_cause(task)]
    blocks = [nested.adjust_for, *nested.steps]
    terms = [[_fit_term(t, task, development) for t in block] for block in blocks]
    dev = np.column_stack([np.zeros(len(development))] + [t.transform(development) for b in terms for t in b])[:, 1:]
    held = np.column_stack([np.zeros(len(held_out))] + [t.transform(held_out) for b in terms for t in b])[:, 1:]
    names = [c for b in terms for t in b for c in t.columns]
    block_of = (
        np.concatenate([[i] * len(t.columns) for i, b in enumerate(terms) for t in b]).astype(int)
        if names
        else np.zeros(0, int)
    )
    keep = independent_columns(dev) if names else np.zeros(0, bool)
    events = int(np.sum(event))
    base = {
        "n_development": len(development),
        "events_development": events,
        "n_held_out": len(held_out),
        "events_held_out": int(np.sum(np.asarray(target.code) == target.event_of_interest)),
    }
    if events < MIN_EVENTS:
        return [
            {**base, "step": k, "terms": ", ".join(step), "status": f"fewer than {MIN_EVENTS} events: not fitted"}
            for k, step in enumerate(nested.steps, start=1)
        ]
    time_ = np.asarray(target.months, float)
    judged = base["events_held_out"] > 0  # a level without held-out events gets its LR tests only
    tau = uno_tau(time_, list(task.schema.horizons_months)) if judged else np.nan
    indices, _ = bootstrap_indices(held_out, draws, seed, min_centres)
    columns = keep & (block_of == 0)
    coefficients, previous_ll = fit_cox(dev[:, columns], months, event)
    previous_risk = held[:, columns] @ coefficients
    rows = []
    for k, step in enumerate(nested.steps, start=1):
        added = keep & (block_of == k)
        aliased = [names[j] for j in np.flatnonzero((block_of == k) & ~keep)]
        row = {**base, "step": k, "terms": ", ".join(step), "df": int(added.sum()), "aliased": "; ".join(aliased)}
        if not added.any():
            rows.append(
                {
                    **row,
                    "status": "adds nothing: its columns are constant or linear combinations of the "
                    "earlier steps' (0 degrees of freedom), not fitted",
                }
            )
            continue
        start = np.zeros(dev.shape[1])
        start[columns] = coefficients  # warm start: the previous model, the new columns at zero
        columns = columns | added
        try:
            coefficients, ll = fit_cox(dev[:, columns], months, event, start[columns])
        except Exception as error:  # lifelines' ConvergenceError and linear-algebra failures alike
            rows.append({**row, "status": f"did not converge ({type(error).__name__})"})
            break
        if ll < previous_ll - 1e-6:  # a larger model fits at least as well: anything else is a failed fit
            rows.append({**row, "status": "did not converge (the log-likelihood fell below the smaller model's)"})
            break
        risk = held[:, columns] @ coefficients
        chi2 = max(0.0, 2.0 * (ll - previous_ll))  # rounding only: a fall was caught above
        row.update({"lr_chi2": chi2, "lr_p": float(stats.chi2.sf(chi2, row["df"])), "status": "fitted"})
        if judged:
            row.update(_held_out_c(target, risk, previous_risk, tau, indices))
        else:
            row["status"] = "fitted; no held-out events of this level: no C"
        rows.append(row)
        previous_ll, previous_risk = ll, risk
    return rows


def _held_out_c(
    target: EndpointTarget, risk: np.ndarray, previous: np.ndarray, tau: float, indices: list[np.ndarray]
) -> dict[str, float]:
    """C of this step, and its difference from the previous step with a paired bootstrap percentile interval."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        now, before = _concordance(target, risk, tau), _concordance(target, previous, tau)
        result = {
            "harrell_c": now[0],
            "uno_c": now[1],
            "delta_harrell_c": now[0] - before[0],
            "delta_uno_c": now[1] - before[1],
        }
        differences: dict[str, list[float]] = {"delta_harrell_c": [], "delta_uno_c": []}
        for draw in indices:
            sample = subset_target(target, draw)
            if not np.any(np.asarray(sample.code) == target.event_of_interest):
                continue
            a, b = _concordance(sample, risk[draw], tau), _concordance(sample, previous[draw], tau)
            differences["delta_harrell_c"].append(a[0] - b[0])
            differences["delta_uno_c"].append(a[1] - b[1])
    for name, values in differences.items():
        finite = np.asarray(values, float)
        finite = finite[np.isfinite(finite)]
        usable = len(finite) >= 0.5 * len(indices)
        result[f"{name}_lower95"] = float(np.quantile(finite, 0.025)) if usable else np.nan
        result[f"{name}_upper95"] = float(np.quantile(finite, 0.975)) if usable else np.nan
    return result


def nested_model_comparisons(
    task: Task,
    development: pd.DataFrame,
    held_out: pd.DataFrame,
    held_out_targets: dict[str, EndpointTarget],
    endpoint: str,
    draws: int,
    seed: int,
    min_centres: int = MIN_CENTRES_FOR_CENTRE_BOOTSTRAP,
) -> pd.DataFrame | None:
    """Every `[[nested_models]]` entry overall and per level of its `by`; None when the spec declares none."""
    spec = task.spec
    if spec is None or not spec.nested_models:
        return None
    target = held_out_targets[endpoint]
    rows = []
    learned = {p.name for p in task.schema.predictors}
    for nested in spec.nested_models:
        missing = sorted({name for name, _ in nested.term_columns()} - learned)
        if missing:  # a predictor dropped from this run: said so, not fitted
            rows.append(
                {
                    "nested": nested.name,
                    "title": nested.title,
                    "level": "all",
                    "step": 1,
                    "terms": "",
                    "status": f"not fitted: {', '.join(missing)} not learned in this run",
                }
            )
            continue
        levels: list[tuple[str, np.ndarray, np.ndarray]] = [
            ("all", np.ones(len(development), bool), np.ones(len(held_out), bool))
        ]
        if nested.by:
            for value in sorted(development[nested.by].dropna().astype(str).unique()):
                levels.append(
                    (
                        f"{nested.by}={value}",
                        development[nested.by].astype(str).to_numpy() == value,
                        held_out[nested.by].astype(str).to_numpy() == value,
                    )
                )
        for level, in_dev, in_held in levels:
            part = held_out[in_held].reset_index(drop=True)
            found = _level_rows(
                task,
                nested,
                development[in_dev].reset_index(drop=True),
                part,
                subset_target(target, np.flatnonzero(in_held)),
                draws,
                seed,
                min_centres,
            )
            rows += [{"nested": nested.name, "title": nested.title, "level": level, **row} for row in found]
    return pd.DataFrame(rows)


# --- reporting ----------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def nested_metrics(table: pd.DataFrame) -> dict[str, float]:
    """`nested_<name>_<level>_step<k>_<metric>`, e.g. nested_mrd_kinetics_lineage_t_step2_delta_uno_c."""
    metrics = {}
    wanted = (
        "df",
        "lr_chi2",
        "lr_p",
        "harrell_c",
        "uno_c",
        "delta_harrell_c",
        "delta_uno_c",
        "delta_uno_c_lower95",
        "delta_uno_c_upper95",
        "delta_harrell_c_lower95",
        "delta_harrell_c_upper95",
    )
    for row in table.to_dict("records"):
        prefix = f"nested_{row['nested']}_{_slug(row['level'])}_step{row['step']}_"
        for key in wanted:
            value = row.get(key)
            if isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
                metrics[prefix + key] = float(value)
    return metrics


def _f(value: Any, digits: int = 3) -> str:
    ok = isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value)
    return f"{float(value):.{digits}f}" if ok else "-"


def nested_markdown(table: pd.DataFrame) -> list[str]:
    lines = [
        "### Nested models",
        "",
        "Cause-specific Cox models adding each step in turn, fitted on the development data (likelihood-ratio "
        "test there); C of each model's linear predictor and its difference from the previous step on the "
        "held-out patients, with a paired bootstrap interval (step 1 against the adjustment model, or against no "
        "model: C 0.5). A step whose columns are linear combinations of earlier ones adds 0 degrees of freedom and "
        "is reported, not fitted.",
        "",
        "| models | level | step | terms added | df | LR chi2 | p | Harrell C | Uno C | change in Uno C | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        change = _f(r.get("delta_uno_c"))
        if _f(r.get("delta_uno_c_lower95")) != "-":
            change += f" ({_f(r['delta_uno_c_lower95'])} to {_f(r['delta_uno_c_upper95'])})"
        note = r.get("status", "")
        if isinstance(r.get("aliased"), str) and r["aliased"]:
            note += f"; left out as collinear: {r['aliased']}"
        lines.append(
            f"| {r['title']} | {r['level']} | {r['step']} | {r['terms']} | {r.get('df', '-')} | "
            f"{_f(r.get('lr_chi2'), 1)} | {_f(r.get('lr_p'), 4)} | {_f(r.get('harrell_c'))} | "
            f"{_f(r.get('uno_c'))} | {change} | {note} |"
        )
    lines.append("")
    return lines
