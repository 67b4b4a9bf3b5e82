"""The evidence a reviewer asks for, computed once per training run and logged on its MLflow runs.

- internal-external validation across centres with random-effects pooling and forest plots (validation.py);
- bootstrap 95 % intervals of the registered family's headline metrics on the held-out data (bootstrap.py);
- calibration plots and decision curves at every horizon and endpoint, both families, held-out data;
- the subgroup table on the out-of-centre predictions (subgroups.py).
The pipeline calls `build_report` after both families are fitted and evaluated, and `log_report` inside its run.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget, Task
from risk_model.bundle import ModelBundle
from training.bootstrap import BootstrapIntervals, bootstrap_headline
from training.evaluate import endpoint_risks, evaluable_horizons
from training.evaluation_plots import (
    calibration_figure,
    decision_curve_figure,
    decision_curve_table,
    forest_figure,
)
from training.parallel import parallel_map
from training.promotion import PromotionGates
from training.stages import BOOTSTRAP_STAGE, PLOTS_STAGE, SUBGROUPS_STAGE, VALIDATION_STAGE, Stages
from training.subgroups import subgroup_markdown, subgroup_table
from training.validation import POOLED_METRICS, Refit, ValidationResult, internal_external_validation


@dataclass
class EvaluationReport:
    validation: ValidationResult
    intervals: BootstrapIntervals
    subgroups: pd.DataFrame
    decision_curves: pd.DataFrame  # family, endpoint, horizon_months, threshold, model, treat_all, treat_none
    usefulness: dict[str, str]  # endpoint -> sentence about the registered family at the main horizon
    seconds: dict[str, float] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        return {"validation_design": self.validation.design.description,
                "validation_note": self.validation.note,
                "bootstrap_design": self.intervals.statement,
                "subgroup_design": "out-of-centre predictions of the internal-external validation, main horizon"
                if self.validation.design.by_cluster else "out-of-fold predictions (first repeat), main horizon"}


def _evaluable(targets: dict[str, EndpointTarget], horizons: list[int]) -> dict[str, list[int]]:
    return {e: evaluable_horizons(np.asarray(t.months, float), horizons)[0] for e, t in targets.items()}


def usefulness_sentence(table: pd.DataFrame) -> str:
    useful = table[(table["model"] > table["treat_all"]) & (table["model"] > table["treat_none"])]
    if useful.empty:
        return "net benefit never above both treat-all and treat-none in the threshold range"
    return (f"net benefit above treat-all and treat-none at {len(useful)} of {len(table)} thresholds, from "
            f"{100 * useful['threshold'].min():.0f} % to {100 * useful['threshold'].max():.0f} % risk")


def build_report(task: Task, frame: pd.DataFrame, held_out: pd.DataFrame, held_out_targets: dict[str, EndpointTarget],
                 bundles: dict[str, ModelBundle], chosen: str, refit: Refit, gates: PromotionGates, seed: int,
                 say: Callable[[str], None], folder: Path, validation: ValidationResult | None = None,
                 stages: Stages | None = None, plots: str = "all") -> EvaluationReport:
    """`validation`: the internal-external validation when the pipeline ran it already (its gates read it).
    `stages`: the run's stage timer (training/stages.py), which the report's own seconds come from. `plots`: the
    figures drawn (TrainSettings.plots: all, main horizon only, none); the tables are the same."""
    schema = task.schema
    horizons, main = list(schema.horizons_months), schema.main_horizon_months
    stages = stages or Stages()

    if validation is None:
        with stages(VALIDATION_STAGE):
            validation = internal_external_validation(frame, task, refit, tuple(bundles), seed, say)
    say(f"validation done in {validation.seconds:.0f} s")

    evaluable = _evaluable(held_out_targets, horizons)
    with stages(BOOTSTRAP_STAGE):
        intervals = bootstrap_headline(bundles[chosen], held_out, held_out_targets, evaluable, gates.bootstrap_draws,
                                       seed, gates.bootstrap_min_centres)
    say(f"bootstrap intervals ({intervals.draws} draws over {intervals.unit}) in "
        f"{stages.seconds[BOOTSTRAP_STAGE]:.0f} s")

    with stages(SUBGROUPS_STAGE):
        main_index = validation.months.index(main)
        all_targets = task.endpoint_targets(frame)
        subgroups = subgroup_table(frame.reset_index(drop=True), schema, all_targets,
                                   {e: r[:, main_index] for e, r in validation.risks[chosen].items()})

    with stages(PLOTS_STAGE):
        months = np.array(sorted(set(horizons) | {main}), dtype=float)
        held_out_risks = {f: endpoint_risks(b, held_out, months) for f, b in bundles.items()}
        curves, usefulness, figures = [], {}, []
        for endpoint, target in held_out_targets.items():
            usable = evaluable[endpoint]
            if not usable:
                continue
            by_family = {f: {int(m): r[endpoint][:, i] for i, m in enumerate(months)}
                         for f, r in held_out_risks.items()}
            table = decision_curve_table(by_family, target, usable, gates.thresholds).assign(endpoint=endpoint)
            curves.append(table)
            if main in usable:
                usefulness[endpoint] = usefulness_sentence(table[(table["family"] == chosen)
                                                                 & (table["horizon_months"] == main)])
            drawn = {"all": usable, "main": [main] if main in usable else [], "none": []}[plots]
            if drawn:
                figures.append(partial(_plots, folder, endpoint, target, by_family, drawn, table, validation,
                                       schema.task))
            if plots != "none" and endpoint == bundles[chosen].main_endpoint and main in usable:
                figures.append(partial(calibration_figure, by_family, target, [main], endpoint,
                                       folder / "plots" / f"calibration_{main}m.png", "held-out centres"))
        # Drawing is most of this stage and each endpoint's figures are independent: the workers draw them.
        for sub in ("calibration", "decision_curves", "forest") if figures else ():
            (folder / "plots" / sub).mkdir(parents=True, exist_ok=True)
        for _ in parallel_map(operator.call, figures):
            pass
    seconds = {"validation": validation.seconds or stages.seconds.get(VALIDATION_STAGE, 0.0),
               "bootstrap": stages.seconds[BOOTSTRAP_STAGE], "subgroups": stages.seconds[SUBGROUPS_STAGE],
               "plots": stages.seconds[PLOTS_STAGE]}
    return EvaluationReport(validation, intervals, subgroups,
                            pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(), usefulness, seconds)


def _plots(folder: Path, endpoint: str, target: EndpointTarget, by_family: dict[str, dict[int, np.ndarray]],
           horizons: list[int], curves: pd.DataFrame, validation: ValidationResult, task: str) -> None:
    """One endpoint's calibration, decision-curve and forest plots at `horizons`."""
    calibration_figure(by_family, target, horizons, endpoint,
                       folder / "plots" / "calibration" / f"calibration_{endpoint}.png", f"{task}, held-out centres")
    decision_curve_figure(curves[curves["horizon_months"].isin(horizons)], endpoint,
                          folder / "plots" / "decision_curves" / f"decision_curve_{endpoint}.png",
                          f"{task}, held-out centres")
    references = {"uno_c": 0.5, "cal_oe": 1.0, "cal_slope": 1.0}
    rows = validation.per_cluster
    rows = rows[rows["horizon"].isna() | rows["horizon"].isin(horizons)]  # C has no horizon
    for metric in POOLED_METRICS:
        if rows[(rows["endpoint"] == endpoint) & (rows["metric"] == metric)].empty:
            continue
        forest_figure(rows, validation.pooled, metric, endpoint,
                      folder / "plots" / "forest" / f"forest_{endpoint}_{metric}.png",
                      references[metric], f"{task}, {validation.design.kind}")


def log_report(mlflow: Any, report: EvaluationReport, folder: Path, chosen: str, family_runs: dict[str, str],
               horizon: int) -> dict[str, float]:
    """Artifacts and tags on the active (parent) run, pooled metrics on each family's run; returns the metrics
    that go on the parent run (the registered family's pooled estimates and bootstrap intervals)."""
    client = mlflow.MlflowClient()
    validation = report.validation
    data = folder / "report"
    data.mkdir(parents=True, exist_ok=True)
    validation.per_cluster.to_csv(data / "per_cluster_metrics.csv", index=False)
    validation.pooled.to_csv(data / "pooled_metrics.csv", index=False)
    mlflow.log_artifact(str(data / "per_cluster_metrics.csv"), "validation")
    mlflow.log_artifact(str(data / "pooled_metrics.csv"), "validation")
    report.subgroups.to_csv(data / "subgroups.csv", index=False)
    (data / "subgroups.md").write_text(subgroup_markdown(report.subgroups, horizon, "Subgroup performance"))
    mlflow.log_artifact(str(data / "subgroups.csv"), "subgroups")
    mlflow.log_artifact(str(data / "subgroups.md"), "subgroups")
    if not report.decision_curves.empty:
        report.decision_curves.to_csv(data / "decision_curves.csv", index=False)
        mlflow.log_artifact(str(data / "decision_curves.csv"), "decision_curves")
    if (folder / "plots").is_dir():  # none when the run draws no figure
        mlflow.log_artifacts(str(folder / "plots"), "plots")
    mlflow.set_tags(report.tags())
    for endpoint, sentence in report.usefulness.items():
        mlflow.set_tag(f"net_benefit_{endpoint}", sentence)
    skipped = validation.per_cluster[validation.per_cluster["skipped_reason"] != ""]
    if not skipped.empty:
        reasons = skipped.groupby(["endpoint", "metric", "horizon", "skipped_reason"], dropna=False)["cluster"].apply(
            lambda c: ", ".join(sorted(set(c))))
        mlflow.log_text("\n".join(f"{e} {m}{'' if pd.isna(h) else f' {int(h)}m'}: left out of pooling in {c} ({r})"
                                  for (e, m, h, r), c in reasons.items()) + "\n", "validation/skipped_reasons.txt")
        tags: dict[str, list[str]] = {}
        for (e, m, h, r), c in reasons.items():
            name = "skipped_reason_pooled_" + validation.metric_name(e, m, None if pd.isna(h) else h)
            tags.setdefault(name, []).append(f"left out of pooling in {c} ({r})")
        mlflow.set_tags({name: "; ".join(texts)[:5000] for name, texts in tags.items()})
    timing = {f"{k}_seconds": v for k, v in report.seconds.items()}
    for family, run_id in family_runs.items():
        metrics = validation.mlflow_metrics(family)
        if family == chosen:
            metrics.update(report.intervals.mlflow_metrics())
        _log_batch(client, run_id, metrics)
    return {**validation.mlflow_metrics(chosen), **report.intervals.mlflow_metrics(), **timing}


def _log_batch(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(k, float(v), stamp, 0) for k, v in metrics.items() if np.isfinite(v)]
    for start in range(0, len(items), 900):
        client.log_batch(run_id, metrics=items[start:start + 900])
