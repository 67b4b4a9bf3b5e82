"""Discrimination and calibration by subgroup: sex, age band, centre, country and each task's clinical groups.

Judged on the out-of-centre predictions of the internal-external validation (every patient predicted by a
model that never saw their centre; out-of-fold under K-fold), at the main horizon, for every endpoint. A group
with fewer than 100 patients or fewer than 20 events is flagged `small`; where fewer than 20 patients are still
at risk at the horizon the calibration columns are empty and the reason is given.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from features.task_spec import ReportSpec
from features.tasks import TASKS, EndpointTarget
from risk_model.report_groups import members
from training.evaluate import (
    MIN_AT_RISK,
    at_risk,
    calibration,
    concordance_with_se,
    observed_risk,
    subset_target,
    uno_tau,
)

SMALL_GROUP_PATIENTS = 100
SMALL_GROUP_EVENTS = 20
# Age bands (years, lower bounds) when a task's spec declares none.
DEFAULT_AGE_BANDS = (40, 60)


def _report(task: str) -> ReportSpec:
    """The task spec's `[report]`: its age bands and clinical groups (issue 6); any task also gets sex, age band,
    centre and country when present."""
    known = TASKS.get(task)
    return known.spec.report if known is not None and known.spec is not None else ReportSpec()


def age_column(schema: TaskSchema) -> str | None:
    return next((p.name for p in schema.predictors if p.name.startswith("age_") and p.unit == "years"), None)


def age_bands(values: pd.Series, cuts: tuple[int, ...]) -> pd.Series:
    edges = [-np.inf, *cuts, np.inf]
    labels = [f"< {cuts[0]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)] + [
        f">= {cuts[-1]}"]
    return pd.cut(pd.to_numeric(values, errors="coerce"), edges, right=False, labels=labels)


def report_group_definitions(schema: TaskSchema) -> list[dict[str, Any]]:
    """The task's report subgroups as plain conditions (risk_model/report_groups.py): each age band of the spec
    (or the default bands) on the age predictor, then each named group of `[[report.groups]]`."""
    report = _report(schema.task)
    groups: list[dict[str, Any]] = []
    age = age_column(schema)
    if age:
        cuts = tuple(report.age_bands) or DEFAULT_AGE_BANDS
        edges = [None, *cuts, None]
        for label, low, below in zip(age_bands(pd.Series(dtype=float), cuts).cat.categories, edges[:-1], edges[1:],
                                     strict=True):
            groups.append({"name": f"age {label}", "title": f"aged {label} years",
                           "conditions": [{"column": age, "minimum": low, "below": below, "categories": []}]})
    return groups + [report_group_definitions_of(group) for group in report.groups]


def report_group_definitions_of(group: Any) -> dict[str, Any]:
    return {"name": group.name, "title": group.title, "conditions": [c.model_dump() for c in group.conditions]}


def subgroup_variables(frame: pd.DataFrame, schema: TaskSchema) -> dict[str, pd.Series]:
    """Variable name -> group label per patient (missing values form a group of their own)."""
    variables: dict[str, pd.Series] = {}
    if "sex" in frame:
        variables["sex"] = frame["sex"]
    age = age_column(schema)
    if age and age in frame:
        variables["age band"] = age_bands(frame[age], tuple(_report(schema.task).age_bands) or DEFAULT_AGE_BANDS)
    clinical = tuple(_report(schema.task).subgroups) or None
    if clinical is None:  # a task without its own list: every categorical predictor
        clinical = tuple(p.name for p in schema.predictors if p.kind == "category" and p.name != "sex")
    for name in ("centre", "country", *clinical):
        if name in frame and frame[name].notna().any():
            variables[name] = frame[name]
    for group in _report(schema.task).groups:  # a named group: its patients against all others
        inside = members(report_group_definitions_of(group), frame)
        variables[group.name] = pd.Series(np.where(inside, group.title, "other patients"), index=frame.index)
    return {name: values.astype("string").fillna("missing").astype(str).reset_index(drop=True)
            for name, values in variables.items()}


def group_order(labels: pd.Series) -> list[str]:
    """Groups in their natural order: age bands from young to old, categories as listed, else sorted."""
    return sorted(labels.unique(), key=lambda g: (g == "missing", _band_key(g)))


def _band_key(label: str) -> tuple[float, str]:
    text = label.replace(">= ", "").replace("< ", "")
    head = text.split("-")[0]
    try:
        return (float(head) + (-0.5 if label.startswith("< ") else 0.0), label)
    except ValueError:
        return (np.inf, label)


def group_row(target: EndpointTarget, risk: np.ndarray, horizon: int, horizons: list[int]) -> dict[str, Any]:
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    events = int(np.sum(code == target.event_of_interest))
    row: dict[str, Any] = {"n": len(time_), "events": events, f"at_risk_{horizon}m": at_risk(time_, horizon),
                           "mean_predicted": float(np.mean(risk)), "observed": np.nan, "oe": np.nan,
                           "cal_slope": np.nan, "ici": np.nan, "c": np.nan, "c_lower95": np.nan,
                           "c_upper95": np.nan, "note": "",
                           "small": len(time_) < SMALL_GROUP_PATIENTS or events < SMALL_GROUP_EVENTS}
    if events == 0:
        row["note"] = "no events"
        return row
    c, se = concordance_with_se(target, risk, uno_tau(time_, horizons))
    if np.isfinite(c) and np.isfinite(se):
        logit, logit_se = np.log(c / (1 - c)), se / (c * (1 - c))
        row.update({"c": c, "c_lower95": 1 / (1 + np.exp(-(logit - 1.96 * logit_se))),
                    "c_upper95": 1 / (1 + np.exp(-(logit + 1.96 * logit_se)))})
    if at_risk(time_, horizon) < MIN_AT_RISK or horizon >= time_.max():
        row["note"] = f"fewer than {MIN_AT_RISK} at risk at {horizon} months: no calibration"
        return row
    row["observed"] = observed_risk(time_, code, target.event_of_interest, horizon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibration(time_, code, risk, horizon, target.event_of_interest)
    row.update({"oe": cal["oe"], "cal_slope": cal["slope"], "ici": cal["ici"]})
    return row


def subgroup_table(frame: pd.DataFrame, schema: TaskSchema, targets: dict[str, EndpointTarget],
                   risks: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per endpoint, variable and group; `risks[endpoint]` is each patient's risk at the main horizon."""
    horizon, horizons = schema.main_horizon_months, list(schema.horizons_months)
    rows = []
    for endpoint, target in targets.items():
        risk = np.asarray(risks[endpoint], dtype=float)
        for variable, labels in subgroup_variables(frame, schema).items():
            for group in group_order(labels):
                rows_in = np.flatnonzero((labels == group).to_numpy() & np.isfinite(risk))
                if not len(rows_in):
                    continue
                rows.append({"endpoint": endpoint, "variable": variable, "group": group,
                             **group_row(subset_target(target, rows_in), risk[rows_in], horizon, horizons)})
    columns = ["endpoint", "variable", "group", "n", "events", f"at_risk_{horizon}m", "mean_predicted", "observed",
               "oe", "cal_slope", "ici", "c", "c_lower95", "c_upper95", "note", "small"]
    return pd.DataFrame(rows, columns=columns)


def subgroup_markdown(table: pd.DataFrame, horizon: int, title: str) -> str:
    """The table as markdown, numbers rounded, small groups marked."""
    lines = [f"# {title}", "",
             f"Main horizon {horizon} months. `small`: fewer than {SMALL_GROUP_PATIENTS} patients or fewer than "
             f"{SMALL_GROUP_EVENTS} events (interpret with care). C: Uno's C (Wolbers' for a cause with competing "
             "events) with a 95 % interval from its influence-function standard error; O/E, calibration slope and "
             "ICI at the main horizon.", ""]
    if table.empty:
        return "\n".join([*lines, "No subgroup variable in these data.", ""])
    for endpoint, part in table.groupby("endpoint", sort=False):
        lines += [f"## {endpoint}", "",
                  "| variable | group | n | events | observed | predicted | O/E | slope | ICI | C (95 % CI) | flag |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for row in part.itertuples():
            c = f"{row.c:.3f} ({row.c_lower95:.3f}-{row.c_upper95:.3f})" if np.isfinite(row.c) else "-"
            flag = "; ".join(x for x in ("small" if row.small else "", row.note) if x)
            lines.append(f"| {row.variable} | {row.group} | {row.n} | {row.events} | {_f(row.observed)} | "
                         f"{_f(row.mean_predicted)} | {_f(row.oe, 2)} | {_f(row.cal_slope, 2)} | {_f(row.ici)} | "
                         f"{c} | {flag} |")
        lines.append("")
    return "\n".join(lines)


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and np.isfinite(value) else "-"
