"""Today's risk tools as baselines: each `[[comparators]]` of the task's spec judged beside the registered model, in
the same run, on the same held-out centres (README "Comparison with today's risk tools").

A comparator becomes a model family: a rule's groups (or an index's predictors) are the only covariates of a Cox
model per cause fitted on the development data, combined into cumulative incidences exactly as the main Cox fit
(`training.pipeline.fit_family`), so every rule has calibrated probabilities per horizon and endpoint. On the
held-out patients, for each comparator and for the model:

- Harrell's and Uno's C (Wolbers' with competing risks) of the risk at the main horizon, with bootstrap 95 %
  intervals, and the paired difference model minus comparator on the same draws (`training.bootstrap`);
- calibration per horizon (O/E with the Aalen-Johansen observed incidence, slope, ICI: `training.evaluate`);
- decision curves (`training.evaluation_plots.decision_curve_table`);
- reclassification at the clinically used threshold: the comparator's high-intensity class against the model's,
  where the model's class is a predicted risk by the main horizon at or above `model_threshold`, or, when the spec
  gives none, the threshold giving the same share of high intensity as the comparator on the development data (so
  both treat as many patients intensively). Who moves standard -> high and back, how many of each group had the
  event by the main horizon (counts, and the Aalen-Johansen cumulative incidence, which handles censoring and
  the competing causes), and the categorical NRI in its event and non-event parts (Pencina et al. 2011's
  survival form with cumulative incidences), with bootstrap intervals.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import Predictor
from features.task_spec import ComparatorSpec
from features.tasks import EndpointTarget, Task
from risk_model.bundle import ModelBundle
from training.bootstrap import MIN_CENTRES_FOR_CENTRE_BOOTSTRAP, bootstrap_indices
from training.evaluate import (
    concordance_with_se,
    endpoint_risks,
    evaluable_horizons,
    evaluate_bundle,
    harrell_c_with_se,
    observed_risk,
    subset_target,
    uno_tau,
)
from training.evaluation_plots import decision_curve_figure, decision_curve_table
from training.figures import pyplot, save_figure

MODEL_ROW = "model"
MOVES = ("standard -> high", "high -> standard", "stayed standard", "stayed high")


@dataclass
class ComparisonReport:
    """Everything the run logs about the comparators; `table` has one row per comparator and one for the model."""

    table: pd.DataFrame
    reclassification: pd.DataFrame  # comparator, move, n, events, competing, censored, cumulative incidence
    decision_curves: pd.DataFrame
    horizon: int
    statement: str
    nested: pd.DataFrame | None = None  # training/nested_models.py
    skipped: dict[str, str] = field(default_factory=dict)

    def mlflow_metrics(self) -> dict[str, float]:
        """`comparator_<name>_<metric>` (the model's row as `comparator_model_<metric>`), finite values only."""
        metrics = {}
        for row in self.table.to_dict("records"):
            for key, value in row.items():
                if key not in ("name", "title", "kind") and _finite(value):
                    metrics[f"comparator_{row['name']}_{key}"] = float(value)
        for row in self.reclassification.to_dict("records"):
            move = "moved_up" if row["move"] == MOVES[0] else "moved_down" if row["move"] == MOVES[1] else None
            if move:
                metrics[f"comparator_{row['comparator']}_{move}"] = float(row["n"])
                metrics[f"comparator_{row['comparator']}_{move}_events"] = float(row["events"])
                if _finite(row["cumulative_incidence"]):
                    metrics[f"comparator_{row['comparator']}_{move}_incidence_{self.horizon}m"] = float(
                        row["cumulative_incidence"]
                    )
        if self.nested is not None:
            from training.nested_models import nested_metrics

            metrics.update(nested_metrics(self.nested))
        return metrics


def _finite(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and bool(np.isfinite(value))


# --- comparators as model families --------------------------------------------------------------------------


def group_column(comparator: ComparatorSpec) -> str:
    return f"{comparator.name}__group"


def comparator_groups(task: Task, comparator: ComparatorSpec, frame: pd.DataFrame) -> pd.Series:
    """The rule's group of every row, checked against the groups the spec lists."""
    rule = task.comparators[comparator.function or ""]
    groups = pd.Series(rule(frame), index=frame.index).astype(object)
    unknown = sorted({str(g) for g in groups.dropna().unique()} - set(comparator.groups))
    if unknown or groups.isna().any():
        raise ValueError(
            f"comparator {comparator.name!r}: its function returned groups the spec does not list "
            f"({', '.join(unknown) or 'a missing group'}; listed: {', '.join(comparator.groups)})"
        )
    return groups.astype(str)


def comparator_task(task: Task, comparator: ComparatorSpec, frame: pd.DataFrame) -> tuple[Task, pd.DataFrame]:
    """The task with the comparator's covariates as its only predictors, and the frame carrying them."""
    schema = task.schema
    if comparator.kind == "groups":
        column = group_column(comparator)
        predictor = Predictor(column, "category", comparator.title, categories=tuple(comparator.groups))
        frame = frame.assign(**{column: comparator_groups(task, comparator, frame).to_numpy()})
        predictors: tuple[Predictor, ...] = (predictor,)
    else:
        by_name = {p.name: p for p in schema.predictors}
        missing = [name for name in comparator.predictors if name not in by_name]
        if missing:
            raise ValueError(f"comparator {comparator.name!r}: its predictors {missing} are not learned in this run")
        predictors = tuple(by_name[name] for name in comparator.predictors)
    return replace(task, schema=replace(schema, predictors=predictors)), frame


def fit_comparator(task: Task, comparator: ComparatorSpec, development: pd.DataFrame, seed: int) -> ModelBundle:
    """A Cox model per cause on the comparator's covariates, fitted on the development data as the main Cox fit."""
    from training.pipeline import fit_family  # the pipeline imports this module

    sub_task, frame = comparator_task(task, comparator, development)
    return fit_family("cox_ph", sub_task, frame, {}, seed)


def comparator_risk(
    task: Task, comparator: ComparatorSpec, bundle: ModelBundle, frame: pd.DataFrame, months: np.ndarray
) -> dict[str, np.ndarray]:
    return endpoint_risks(bundle, comparator_task(task, comparator, frame)[1], months)


# --- reclassification and NRI -------------------------------------------------------------------------------


def reclassification_counts(
    target: EndpointTarget, old_high: np.ndarray, new_high: np.ndarray, month: float
) -> pd.DataFrame:
    """Per move (old -> new class): patients, events of the cause by `month`, competing events by then, censored
    before then, and the Aalen-Johansen cumulative incidence of the cause by `month` in that group."""
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    cause = target.event_of_interest
    old_high, new_high = np.asarray(old_high, bool), np.asarray(new_high, bool)
    masks = (~old_high & new_high, old_high & ~new_high, ~old_high & ~new_high, old_high & new_high)
    rows = []
    for move, mask in zip(MOVES, masks, strict=True):
        by_then = time[mask] <= month
        rows.append(
            {
                "move": move,
                "n": int(mask.sum()),
                "events": int(np.sum(by_then & (code[mask] == cause))),
                "competing": int(np.sum(by_then & (code[mask] > 0) & (code[mask] != cause))),
                "censored": int(np.sum(by_then & (code[mask] == 0))),
                "cumulative_incidence": observed_risk(time[mask], code[mask], cause, month) if mask.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def categorical_nri(
    target: EndpointTarget, old_high: np.ndarray, new_high: np.ndarray, month: float
) -> dict[str, float]:
    """Two-category NRI of the new classification against the old by `month`, with censoring and competing causes:
    P(up | event) = F_up P(up) / F, P(up | no event) = (1 - F_up) P(up) / (1 - F), F the Aalen-Johansen incidence
    (Pencina, Steyerberg & D'Agostino 2011, with cumulative incidences for competing risks). Without censoring
    these are the plain proportions of the events and non-events who moved."""
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    cause = target.event_of_interest
    old_high, new_high = np.asarray(old_high, bool), np.asarray(new_high, bool)
    total = observed_risk(time, code, cause, month)
    n = len(time)
    parts = {}
    for move, mask in (("up", ~old_high & new_high), ("down", old_high & ~new_high)):
        share = mask.sum() / n
        incidence = observed_risk(time[mask], code[mask], cause, month) if mask.any() else 0.0
        parts[move] = (share * incidence, share * (1.0 - incidence))
    events = (parts["up"][0] - parts["down"][0]) / total if total > 0 else np.nan
    nonevents = (parts["down"][1] - parts["up"][1]) / (1.0 - total) if total < 1 else np.nan
    return {"nri_events": float(events), "nri_nonevents": float(nonevents), "nri": float(events + nonevents)}


def high_share_threshold(development_risk: np.ndarray, share: float) -> float:
    """The risk at or above which `share` of the development patients lie (ties included)."""
    if share <= 0:
        return np.inf
    return float(np.quantile(np.asarray(development_risk, float), 1.0 - share, method="higher"))


def group_calibration_gap(target: EndpointTarget, groups: np.ndarray, risk: np.ndarray, month: float) -> float:
    """ICI of a rule: the patient-weighted mean absolute difference between each group's mean predicted risk and its
    Aalen-Johansen observed incidence by `month` (the groups are the rule's only calibration points)."""
    time, code = np.asarray(target.months, float), np.asarray(target.code)
    gaps = []
    for group in np.unique(groups):
        inside = groups == group
        observed = observed_risk(time[inside], code[inside], target.event_of_interest, month)
        gaps.append(inside.sum() * abs(observed - float(np.mean(risk[inside]))))
    return float(np.sum(gaps) / len(groups))


# --- the comparison ----------------------------------------------------------------------------------------


@dataclass
class _Scored:
    """One row of the table before the bootstrap: held-out risks and high-intensity classes."""

    name: str
    title: str
    kind: str
    risk: dict[int, np.ndarray]  # month -> held-out risk of the explained endpoint
    high: np.ndarray | None  # held-out high-intensity class (None for the model row)
    development_share: float  # share of development patients in the high-intensity class
    metrics: dict[str, float]
    model_threshold: float = np.nan
    model_high: np.ndarray | None = None


def _evaluation_metrics(
    bundle: ModelBundle, frame: pd.DataFrame, endpoint: str, target: EndpointTarget, horizons: list[int]
) -> dict[str, float]:
    """Calibration per horizon and the point C's of the explained endpoint (evaluate_bundle's definitions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate_bundle(bundle, frame, {endpoint: target}).metrics
    keep = ["harrell_c", "uno_c", "ibs"]
    keep += [f"{name}_{h}m" for h in horizons for name in ("cal_oe", "cal_slope", "ici", "brier", "auc")]
    return {k: metrics.get(k, np.nan) for k in keep}


def _score_comparator(
    task: Task,
    comparator: ComparatorSpec,
    development: pd.DataFrame,
    held_out: pd.DataFrame,
    target: EndpointTarget,
    endpoint: str,
    months: np.ndarray,
    seed: int,
) -> _Scored:
    bundle = fit_comparator(task, comparator, development, seed)
    main_index = list(months).index(task.schema.main_horizon_months)
    held_risk = comparator_risk(task, comparator, bundle, held_out, months)[endpoint]
    if comparator.kind == "groups":
        high_dev = comparator_groups(task, comparator, development).isin(comparator.high_intensity).to_numpy()
        high = comparator_groups(task, comparator, held_out).isin(comparator.high_intensity).to_numpy()
    else:
        dev_risk = comparator_risk(task, comparator, bundle, development, months)[endpoint][:, main_index]
        cut = (
            comparator.high_intensity_risk
            if comparator.high_intensity_risk is not None
            else high_share_threshold(dev_risk, comparator.high_intensity_share or 0.0)
        )
        high_dev, high = dev_risk >= cut, held_risk[:, main_index] >= cut
    frame = comparator_task(task, comparator, held_out)[1]
    metrics = _evaluation_metrics(bundle, frame, endpoint, target, list(task.schema.horizons_months))
    if comparator.kind == "groups":  # a loess through two or three distinct risks is no calibration curve
        groups = frame[group_column(comparator)].to_numpy()
        for i, month in enumerate(months):
            if f"ici_{int(month)}m" in metrics and np.isfinite(metrics[f"ici_{int(month)}m"]):
                metrics[f"ici_{int(month)}m"] = group_calibration_gap(target, groups, held_risk[:, i], month)
    return _Scored(
        comparator.name,
        comparator.title,
        comparator.kind,
        {int(m): held_risk[:, i] for i, m in enumerate(months)},
        high,
        float(np.mean(high_dev)),
        metrics,
    )


def _concordances(target: EndpointTarget, risk: np.ndarray, tau: float) -> tuple[float, float]:
    code = np.asarray(target.code)
    harrell = harrell_c_with_se(target.months, (code == target.event_of_interest).astype(int), risk)[0]
    return harrell, concordance_with_se(target, risk, tau)[0]


def _interval(values: list[float], draws: int) -> tuple[float, float]:
    array = np.asarray(values, float)
    finite = array[np.isfinite(array)]
    if len(finite) < 0.5 * draws:
        return np.nan, np.nan
    return float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))


def _bootstrap(
    rows: list[_Scored],
    model: _Scored,
    target: EndpointTarget,
    month: int,
    horizons: list[int],
    indices: list[np.ndarray],
) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile intervals of C, the paired C difference (model - comparator) and the NRI, on the same draws."""
    values: dict[str, dict[str, list[float]]] = {row.name: {} for row in [*rows, model]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for draw in indices:
            sample = subset_target(target, draw)
            if not np.any(np.asarray(sample.code) == target.event_of_interest):
                continue
            tau = uno_tau(np.asarray(sample.months, float), horizons)
            model_c = _concordances(sample, model.risk[month][draw], tau)
            _add(values[model.name], {"harrell_c": model_c[0], "uno_c": model_c[1]})
            for row in rows:
                c = _concordances(sample, row.risk[month][draw], tau)
                nri = {} if row.high is None else categorical_nri(sample, row.high[draw], row.model_high[draw], month)
                _add(
                    values[row.name],
                    {
                        "harrell_c": c[0],
                        "uno_c": c[1],
                        "delta_harrell_c": model_c[0] - c[0],
                        "delta_uno_c": model_c[1] - c[1],
                        **nri,
                    },
                )
    return {name: {k: _interval(v, len(indices)) for k, v in by_metric.items()} for name, by_metric in values.items()}


def _add(store: dict[str, list[float]], values: dict[str, float]) -> None:
    for key, value in values.items():
        store.setdefault(key, []).append(value)


def compare_with_comparators(
    task: Task,
    development: pd.DataFrame,
    held_out: pd.DataFrame,
    held_out_targets: dict[str, EndpointTarget],
    model: ModelBundle,
    family: str,
    draws: int,
    seed: int,
    thresholds: np.ndarray,
    min_centres: int = MIN_CENTRES_FOR_CENTRE_BOOTSTRAP,
    others: dict[str, ModelBundle] | None = None,
) -> ComparisonReport | None:
    """The comparison table, reclassification counts, decision curves and nested models of the task's spec, on the
    held-out patients; None when the spec declares neither comparators nor nested models. `others`: the run's
    other families (e.g. xgboost when Cox is registered), rows of the table beside the registered model."""
    spec = task.spec
    if spec is None or not (spec.comparators or spec.nested_models):
        return None
    schema = task.schema
    main = schema.main_horizon_months
    horizons = list(schema.horizons_months)
    months = np.array(sorted(set(horizons) | {main}), dtype=float)
    endpoint, target = model.main_endpoint, held_out_targets[model.main_endpoint]
    model_held = endpoint_risks(model, held_out, months, endpoint)[endpoint]
    model_dev = endpoint_risks(model, development, np.array([float(main)]), endpoint)[endpoint][:, 0]
    model_row = _Scored(
        MODEL_ROW,
        f"registered model ({family})",
        family,
        {int(m): model_held[:, i] for i, m in enumerate(months)},
        None,
        np.nan,
        _evaluation_metrics(model, held_out, endpoint, target, horizons),
    )
    rows = [
        _family_row(name, bundle, held_out, endpoint, target, months, horizons)
        for name, bundle in (others or {}).items()
        if name != family
    ]
    learned = {p.name for p in schema.predictors}
    skipped = {}
    for comparator in spec.comparators:
        if not set(comparator.predictors) <= learned:  # an index of a predictor dropped from this run
            missing = ", ".join(sorted(set(comparator.predictors) - learned))
            skipped[comparator.name] = f"not compared: its predictors {missing} are not learned in this run"
            continue
        row = _score_comparator(task, comparator, development, held_out, target, endpoint, months, seed)
        row.model_threshold = (
            comparator.model_threshold
            if comparator.model_threshold is not None
            else high_share_threshold(model_dev, row.development_share)
        )
        row.model_high = model_row.risk[main] >= row.model_threshold
        rows.append(row)
    indices, unit = bootstrap_indices(held_out, draws, seed, min_centres)
    intervals = _bootstrap(rows, model_row, target, main, horizons, indices)
    table, moves = _tables(rows, model_row, intervals, target, main)
    usable = evaluable_horizons(np.asarray(target.months, float), horizons)[0]
    curves = pd.DataFrame()
    if usable:
        curves = decision_curve_table({r.name: r.risk for r in [model_row, *rows]}, target, usable, thresholds)
    from training.nested_models import nested_model_comparisons

    nested = nested_model_comparisons(task, development, held_out, held_out_targets, endpoint, draws, seed, min_centres)
    statement = (
        f"held-out centres ({len(held_out)} patients), endpoint {endpoint}, main horizon {main} months; "
        f"bootstrap 95 % percentile intervals: {draws} draws resampling {unit}, paired across rows"
    )
    return ComparisonReport(
        table, moves, curves.assign(endpoint=endpoint) if not curves.empty else curves, main, statement, nested, skipped
    )


def _family_row(
    name: str,
    bundle: ModelBundle,
    held_out: pd.DataFrame,
    endpoint: str,
    target: EndpointTarget,
    months: np.ndarray,
    horizons: list[int],
) -> _Scored:
    """Another family of the run (not registered): C and calibration beside the model, no reclassification."""
    risk = endpoint_risks(bundle, held_out, months, endpoint)[endpoint]
    metrics = _evaluation_metrics(bundle, held_out, endpoint, target, horizons)
    return _Scored(
        name,
        f"{name} (not registered)",
        name,
        {int(m): risk[:, i] for i, m in enumerate(months)},
        None,
        np.nan,
        metrics,
    )


def _tables(
    rows: list[_Scored],
    model: _Scored,
    intervals: dict[str, dict[str, tuple[float, float]]],
    target: EndpointTarget,
    month: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    table, moves = [], []
    for row in [model, *rows]:
        record: dict[str, Any] = {"name": row.name, "title": row.title, "kind": row.kind}
        for metric, value in row.metrics.items():
            record[metric] = value
        if row is not model:
            record["delta_harrell_c"] = model.metrics["harrell_c"] - row.metrics["harrell_c"]
            record["delta_uno_c"] = model.metrics["uno_c"] - row.metrics["uno_c"]
        if row.high is not None:
            record["high_share"] = float(np.mean(row.high))
            record["model_threshold"] = row.model_threshold
            record["model_high_share"] = float(np.mean(row.model_high))
            record.update(categorical_nri(target, row.high, row.model_high, month))
            counts = reclassification_counts(target, row.high, row.model_high, month)
            moves.append(counts.assign(comparator=row.name))
        for metric, (lower, upper) in intervals.get(row.name, {}).items():
            record[f"{metric}_lower95"], record[f"{metric}_upper95"] = lower, upper
        table.append(record)
    reclassification = pd.concat(moves, ignore_index=True) if moves else pd.DataFrame(columns=["comparator", *MOVES])
    return pd.DataFrame(table), reclassification


# --- logging ----------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "-"


def _ci(record: dict[str, Any], metric: str) -> str:
    lower, upper = record.get(f"{metric}_lower95"), record.get(f"{metric}_upper95")
    text = _f(record.get(metric))
    return f"{text} ({_f(lower)} to {_f(upper)})" if _finite(lower) and _finite(upper) else text


def comparison_markdown(report: ComparisonReport) -> str:
    """The comparison table, the reclassification counts and the nested models, as the model card shows them."""
    lines = ["## Comparison with today's risk tools", "", f"On the {report.statement}.", ""]
    lines += [f"- `{name}`: {reason}." for name, reason in report.skipped.items()] + ([""] if report.skipped else [])
    if len(report.table) > 1:
        lines += _comparator_lines(report)
    else:
        lines += ["The task declares no comparators.", ""]
    if report.nested is not None and not report.nested.empty:
        from training.nested_models import nested_markdown

        lines += nested_markdown(report.nested)
    return "\n".join(lines)


def _comparator_lines(report: ComparisonReport) -> list[str]:
    h = report.horizon
    lines = [
        f"| tool | kind | Harrell C | Uno C | model - tool, Uno C | O/E {h} m | ICI {h} m | high intensity | "
        "NRI events | NRI non-events | NRI |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.table.to_dict("records"):
        lines.append(
            f"| {r['title']} | {r['kind']} | {_ci(r, 'harrell_c')} | {_ci(r, 'uno_c')} | "
            f"{_ci(r, 'delta_uno_c')} | {_f(r.get(f'cal_oe_{h}m'), 2)} | {_f(r.get(f'ici_{h}m'))} | "
            f"{_f(100 * r['high_share'], 0) + ' %' if _finite(r.get('high_share')) else '-'} | "
            f"{_ci(r, 'nri_events')} | {_ci(r, 'nri_nonevents')} | {_ci(r, 'nri')} |"
        )
    lines += [
        "",
        "Each tool's probabilities come from a Cox model of its groups (or refitted index) on the development "
        "data. The model's high-intensity class is a predicted risk by the main horizon at or above a threshold "
        "set, unless the spec gives one, to treat the same share of development patients as the tool. "
        "NRI events: share of patients with the event moved up minus moved down by the model; non-events: "
        "moved down minus moved up (cumulative incidences, so censoring and competing causes are handled).",
        "",
        f"| tool | move (tool -> model) | patients | events by {h} m | competing | censored before | "
        f"cumulative incidence by {h} m |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.reclassification.to_dict("records"):
        lines.append(
            f"| {r['comparator']} | {r['move']} | {r['n']} | {r['events']} | {r['competing']} | "
            f"{r['censored']} | {_f(r['cumulative_incidence'])} |"
        )
    lines.append("")
    return lines


def comparison_figure(table: pd.DataFrame, path: Path, subtitle: str) -> Path:
    """Uno's C of each row with its interval, and each comparator's NRI against the model with its interval."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(table) + 2.2))
    y = np.arange(len(table))[::-1]
    for ax, metric, reference in ((axes[0], "uno_c", 0.5), (axes[1], "nri", 0.0)):
        values = table[metric].to_numpy(float) if metric in table else np.full(len(table), np.nan)
        lower = table.get(f"{metric}_lower95", pd.Series(np.nan, index=table.index)).to_numpy(float)
        upper = table.get(f"{metric}_upper95", pd.Series(np.nan, index=table.index)).to_numpy(float)
        # a percentile interval need not hold its point estimate: bars clipped at the point, never negative
        error = np.clip(np.nan_to_num(np.vstack([values - lower, upper - values])), 0, None)
        ax.errorbar(values, y, xerr=error, fmt="o", color="black", capsize=3)
        ax.axvline(reference, color="grey", lw=1, ls="--")
        ax.set(yticks=y, yticklabels=table["title"], xlabel=metric.replace("_", " "))
    axes[0].set_title("Uno's C (held-out centres)")
    axes[1].set_title("NRI of the model against each tool")
    fig.suptitle(subtitle, fontsize=9)
    return save_figure(fig, path, dpi=100)


def log_comparison(mlflow: Any, report: ComparisonReport, folder: Path, task: str, figures: bool = True
                   ) -> dict[str, float]:
    """Artifacts under `comparators/` on the active run (the figures unless `figures` is off); returns the metrics
    for it."""
    out = folder / "comparators"
    out.mkdir(parents=True, exist_ok=True)
    report.table.to_csv(out / "comparison_table.csv", index=False)
    report.reclassification.to_csv(out / "reclassification.csv", index=False)
    (out / "comparison.md").write_text(comparison_markdown(report))
    if figures and len(report.table) > 1:
        comparison_figure(report.table, out / "comparison.png", f"{task}, {report.statement}")
    if not report.decision_curves.empty:
        report.decision_curves.to_csv(out / "decision_curves.csv", index=False)
    if figures and not report.decision_curves.empty:
        decision_curve_figure(
            report.decision_curves,
            str(report.decision_curves["endpoint"].iloc[0]),
            out / "decision_curves.png",
            f"{task}: the model and today's tools, held-out centres",
        )
    if report.nested is not None:
        report.nested.to_csv(out / "nested_models.csv", index=False)
    mlflow.log_artifacts(str(out), "comparators")
    mlflow.set_tag("comparator_design", report.statement)
    mlflow.set_tags({f"comparator_skipped_{name}": reason for name, reason in report.skipped.items()})
    return {k: v for k, v in report.mlflow_metrics().items() if re.match(r"^[\w./ -]+$", k)}
