"""The model card of a registered version, generated from what the run computed and logged (TRIPOD+AI style).

One markdown text, rendered to HTML with markdown-it; both are logged on the run (`model_card.md`,
`model_card.html`) and stored in the bundle (`ModelBundle.model_card`), so serving can show the card of the
model it serves. Nothing here is written by hand per version: every number comes from the run.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.task_schema import TaskSchema
from features.tasks import TASKS
from training.bootstrap import HEADLINE, BootstrapIntervals
from training.evaluate import endpoint_prefix
from training.promotion import PromotionDecision, PromotionGates
from training.run_note import gate_table_lines
from training.subgroups import SMALL_GROUP_EVENTS, SMALL_GROUP_PATIENTS
from training.validation import ValidationResult

DEFAULT_INTENDED_USE = ("Estimate the task's outcome probabilities at its horizons for patients like those in the "
                        "training data.", "Clinicians and researchers; not a causal model.")


def intended_use(task: str) -> tuple[str, str]:
    """(intended use, users and limits) from the task's spec; a task no folder declares gets the generic pair."""
    known = TASKS.get(task)
    if known is None or known.spec is None:
        return DEFAULT_INTENDED_USE
    return known.spec.use.intended_use, known.spec.use.users_and_limits


TRIPOD_AI_ITEMS = (
    ("3a, 4", "background and objectives", "Intended use and users"),
    ("5a, 6a-c", "data source, participants, setting and eligibility", "Data"),
    ("8a-c", "outcome, its definition, time zero and horizons", "Outcome"),
    ("9a-c", "predictors, their definition, units and timing (known at time zero)", "Predictors"),
    ("10", "sample size (patients, events, events per candidate predictor)", "Data"),
    ("11", "handling of missing data", "Missing data"),
    ("12a-c", "data use for development and evaluation, predictor handling, model type, tuning", "Model, Validation"),
    ("12d", "heterogeneity of performance across clusters (centres)", "Validation, Performance"),
    ("12e", "performance measures and plots (discrimination, calibration, clinical utility)", "Performance"),
    ("14", "fairness: performance in subgroups (sex, age, centre, country, clinical groups)", "Subgroups"),
    ("15, 22", "model output and specification (what a prediction is, how it is computed)", "Model"),
    ("16", "differences between development and evaluation data", "Validation"),
    ("18", "open science: code version, data digest, registry entry", "Identity"),
    ("20a-b", "participants and outcomes in development and evaluation data", "Data"),
    ("23a-b", "performance with confidence intervals, in subgroups and across centres", "Performance, Subgroups"),
    ("26", "limitations", "Limitations"),
    ("27a-c", "usability in context, users, how to use the model", "Intended use and users"),
)


@dataclass
class ModelCardInputs:
    schema: TaskSchema
    version: str
    run_id: str
    family: str
    git_commit: str
    data_source: str
    data_digest: str
    frame: pd.DataFrame  # the whole cohort (for counts and missingness only; no row reaches the card)
    split_design: str
    n_development: int
    n_held_out: int
    n_trials: int
    tuned: dict[str, dict[str, Any]]  # cause -> xgboost params and rounds
    metrics: dict[str, dict[str, float]]  # family -> held-out metrics
    intervals: BootstrapIntervals
    validation: ValidationResult
    subgroups: pd.DataFrame
    decision: PromotionDecision
    gates: PromotionGates
    decision_curves: dict[str, str]  # endpoint -> sentence on net benefit at the main horizon
    synthetic: bool
    unit_conversions: list[str] = field(default_factory=list)
    not_learned: list[dict[str, str]] = field(default_factory=list)  # dropped predictors and why
    comparison: str = ""  # markdown of today's risk tools and nested models (training/comparators.py)
    # Cox family's proportional-hazards check per cause (training/ph_check.py); empty when not run.
    ph_check: dict[str, dict[str, Any]] = field(default_factory=dict)
    plots: str = "all"  # the figures the run drew (TrainSettings.plots)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def _figures(inputs: ModelCardInputs, text: str) -> str:
    """`text` naming the run's figures, its {} filled with what they hold; a note when the run drew none."""
    if inputs.plots == "none":
        return " (no figures: the run was trained with `--plots none`)"
    return text.format(" (main horizon only)" if inputs.plots == "main" else "")


def _f(value: Any, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}" if np.isfinite(float(value)) else "-"
    except (TypeError, ValueError):
        return "-"


def _with_ci(value: float, interval: tuple[float, float] | None, digits: int = 3) -> str:
    if interval is None or not np.isfinite(interval[0]):
        return _f(value, digits)
    return f"{_f(value, digits)} ({_f(interval[0], digits)} to {_f(interval[1], digits)})"


def _endpoints(inputs: ModelCardInputs) -> list[str]:
    return list(inputs.validation.risks.get(inputs.family, {}) or ["relapse"])


def build_markdown(inputs: ModelCardInputs) -> str:
    s, h = inputs.schema, inputs.schema.main_horizon_months
    use, users = intended_use(s.task)
    status = "champion (served)" if inputs.decision.promoted else "challenger (not served)"
    out = [
        f"# Model card: {s.title}",
        "",
        f"Task `{s.task}`, registered version **{inputs.version}**, family `{inputs.family}`, "
        f"registry status at registration: **{status}**.",
        "",
        "## Identity",
        "",
        "| item | value |",
        "|---|---|",
        f"| MLflow run | `{inputs.run_id}` |",
        f"| code version (git commit) | `{inputs.git_commit}` |",
        f"| data | {inputs.data_source} |",
        f"| data digest (SHA-256, first 16 hex) | `{inputs.data_digest}` |",
        f"| schema version | {s.version} |",
        f"| created | {inputs.created} |",
        f"| promotion decision | {inputs.decision.reason} |",
        "",
        "## Intended use and users",
        "",
        use,
        "",
        f"Users: {users}",
        "",
        "## Outcome",
        "",
        f"- Time zero: {s.time_zero}.",
        f"- Event: {s.event_description}.",
        f"- Endpoints: {', '.join(f'`{e}` ({k})' for e, k in s.endpoint_names.items())}. Incidences are "
        "probabilities of the event by a time; survival endpoints the probability of staying event-free.",
        f"- Horizons: {', '.join(str(x) for x in s.horizons_months)} months; main horizon {h} months. Event "
        "times in months. A horizon with fewer than 20 patients still at risk is not reported.",
    ]
    if len(_endpoints(inputs)) > 1:
        out.append("- Relapse and non-relapse mortality are competing risks (cause-specific hazards combined into "
                   "cumulative incidences); LFS = 1 - CIR - NRM; OS adds survival after relapse; GRFS comes from "
                   "a four-cause model and is clipped to LFS, so OS >= LFS >= GRFS.")
    out += _data_section(inputs)
    out += _predictor_section(inputs)
    out += _model_section(inputs)
    out += _ph_section(inputs)
    out += _validation_section(inputs)
    out += _performance_section(inputs)
    out += _calibration_section(inputs)
    out += _usefulness_section(inputs)
    out += [inputs.comparison] if inputs.comparison else []
    out += _subgroup_section(inputs)
    out += _gate_section(inputs)
    out += _limitations_section(inputs)
    out += ["## TRIPOD+AI items covered", "",
            "Item numbers as in the TRIPOD+AI statement (Collins et al., BMJ 2024;385:e078378).", "",
            "| item | topic | section |", "|---|---|---|"]
    out += [f"| {item} | {topic} | {where} |" for item, topic, where in TRIPOD_AI_ITEMS]
    out += ["", "Not covered here: abstract, ethics approval, patient and public involvement, funding (items 2, "
                "17, 19, 18 in part): they belong to the publication, not to a model version.", ""]
    return "\n".join(out)


def _data_section(inputs: ModelCardInputs) -> list[str]:
    s, frame = inputs.schema, inputs.frame
    events = int(frame[s.event_column].sum())
    centres = frame["centre"].nunique() if "centre" in frame else 0
    countries = frame["country"].nunique() if "country" in frame else 0
    origin = (f"from {centres} centres in {countries} countries" if centres else "(no centre recorded)")
    time_ = frame[s.time_column].to_numpy(float)
    lines = ["", "## Data", "",
             f"- Source: {inputs.data_source}" + (" (synthetic, generated to reproduce published figures; no real "
                                                  "patient)" if inputs.synthetic else "") + ".",
             f"- {len(frame)} patients {origin}; {events} primary events "
             f"({events / max(len(s.predictors), 1):.1f} per candidate predictor, {len(s.predictors)} predictors).",
             f"- Follow-up: median observed time {np.median(time_):.1f} months, longest {time_.max():.1f} months.",
             f"- Split: {inputs.split_design}: {inputs.n_development} development and {inputs.n_held_out} held-out "
             "patients."]
    if inputs.unit_conversions:
        lines.append(f"- Unit conversions on loading: {'; '.join(inputs.unit_conversions)}.")
    return lines + [""]


def _predictor_section(inputs: ModelCardInputs) -> list[str]:
    s, frame = inputs.schema, inputs.frame
    lines = ["## Predictors", "",
             "All known at time zero. Centre and country group the validation and the subgroup tables and never "
             "predict.", "",
             "| predictor | meaning | unit / categories | required | missing in data | monotone |",
             "|---|---|---|---|---:|---|"]
    for p in s.predictors:
        unit = p.unit or (", ".join(p.categories) if p.categories else p.kind)
        missing = f"{100 * frame[p.name].isna().mean():.0f} %" if p.name in frame else "-"
        monotone = {-1: "risk never rises with it (both families)", 1: "risk never falls with it (both families)"}.get(
            p.monotone, "")
        lines.append(f"| `{p.name}` | {p.description} | {unit} | {'yes' if p.required else 'no'} | {missing} | "
                     f"{monotone} |")
    lines += _not_learned_lines(inputs.not_learned)
    lines += ["", "## Missing data", "",
              "- xgboost takes missing values natively (each split learns a default direction).",
              "- The Cox baseline imputes the median (numbers) or the mode (categories) and adds a missing-indicator "
              "column per predictor with missing values; imputation values are fitted inside the development data "
              "(and inside each validation fold), never on evaluation patients.",
              "- Patients are never dropped for a missing optional predictor; the outcome columns must be complete.",
              ""]
    return lines


def _not_learned_lines(not_learned: list[dict[str, str]]) -> list[str]:
    if not not_learned:
        return []
    lines = ["", "### Predictors the model could not learn from", "",
             "Dropped at training: they are not in the model. A request may still send them; the value has no "
             "effect, and every answer of this model says so (warning `not_learned`). Patients who differ only in "
             "these predictors get the same estimate.", "",
             "| predictor | why |", "|---|---|"]
    return lines + [f"| `{item['name']}` | {item['reason']} |" for item in not_learned]


def _model_section(inputs: ModelCardInputs) -> list[str]:
    lines = ["## Model", "",
             f"- Registered family: `{inputs.family}` (the better cross-validated Uno's C on the development tuning "
             "folds, never the held-out patients; ties within 0.005, or a boosted model failing the gates the "
             "baseline passes, go to the "
             "Cox baseline).",
             "- Families: xgboost `survival:cox` per cause (monotone constraints as above, `hist` trees) with a "
             "Breslow baseline on its own margins of the development patients; Cox proportional hazards "
             "(lifelines, small ridge penalty; numbers in the form the task declares: log2, restricted cubic "
             "splines, cuts) with the same baseline estimator (grouped-time for a single event, Breslow for "
             "competing causes). One cause-specific model per cause; other causes censor it.",
             f"- Tuning: Optuna (seeded TPE, {inputs.n_trials} trials) on centre-grouped folds of the development "
             "centres, early stopping on the validation fold's partial likelihood; the held-out centres are never "
             "seen.",
             "- Output: S(t | x) = exp(-H0(t) exp(margin)) per cause, combined into each endpoint's probability at "
             "every month; risk groups are training tertiles of main-horizon risk.",
             "- Explanations: Shapley contributions against at most 50 weighted synthetic patients that reproduce "
             "the training cohort's category shares, means and mean predicted probability (no patient's row; each "
             "stands for at least 10 patients), so the base value is the training patients' mean prediction.", ""]
    if inputs.tuned:
        lines += ["| cause | xgboost settings (boosting rounds) |", "|---|---|"]
        for cause, params in inputs.tuned.items():
            shown = ", ".join(f"{k} {_f(v, 3) if isinstance(v, float) else v}" for k, v in params.items())
            lines.append(f"| {cause} | {shown} |")
        lines.append("")
    return lines


def _ph_section(inputs: ModelCardInputs) -> list[str]:
    if not inputs.ph_check:
        return []
    lines = ["## Proportional hazards (Cox family)", "",
             "Scaled Schoenfeld residuals against the rank of event time (Grambsch-Therneau), on the development "
             "patients: a small p says a hazard ratio changes with time, which neither family models.", "",
             "| cause | global test (df) | p | predictors with p < 0.05 |", "|---|---|---|---|"]
    for cause, check in inputs.ph_check.items():
        flagged = ", ".join(f"{name} ({_f(test['p'], 3)})" for name, test in check["predictors"].items()
                            if test["p"] < 0.05) or "none"
        test = check["global"]
        lines.append(f"| {cause} | {_f(test['statistic'], 1)} ({test['df']}) | {_f(test['p'], 3)} | {flagged} |")
    return [*lines, ""]


def _validation_section(inputs: ModelCardInputs) -> list[str]:
    v = inputs.validation
    pooling = ("pooled with a DerSimonian-Laird random-effects model (logit C, log O/E, slope) with I² and a 95 % "
               "prediction interval" if v.design.by_cluster else
               "averaged over the folds (folds are not populations, so no random-effects model), with a 95 % "
               "confidence interval from the fold standard errors")
    unit = v.design.unit or "fold"
    return ["## Validation design", "",
            f"- Held-out evaluation: {inputs.split_design}. Headline metrics and the net-benefit gate use it (the "
            "calibration and discrimination gates read the pooled estimates below); "
            "censoring weights come from the evaluation data itself.",
            f"- {v.design.description[0].upper() + v.design.description[1:]}: both families refitted without each "
            f"{unit} with the tuned settings and judged on its patients ({v.seconds:.0f} s). Per {unit}: C, and "
            f"O/E and calibration slope at each horizon with at least 20 at risk; {pooling}.",
            f"- Note: {v.note}.",
            f"- Confidence intervals of held-out metrics: {inputs.intervals.statement}.", ""]


def _performance_section(inputs: ModelCardInputs) -> list[str]:
    h = inputs.schema.main_horizon_months
    chosen = inputs.metrics[inputs.family]
    others = [f for f in inputs.metrics if f != inputs.family]
    lines = ["## Performance", "",
             f"Held-out data, main horizon {h} months, registered family with 95 % bootstrap intervals"
             + (f"; {others[0]} beside it for comparison" if others else "") + ".", ""]
    header = "| endpoint | metric | " + inputs.family + (f" | {others[0]}" if others else "") + " |"
    lines += [header, "|---|---|---|" + ("---|" if others else "")]
    for endpoint in _endpoints(inputs):
        prefix = endpoint_prefix(endpoint)
        for template in HEADLINE:
            name = prefix + template.format(h=h)
            value = _with_ci(chosen.get(name, np.nan), inputs.intervals.intervals.get(name))
            other = f" | {_f(inputs.metrics[others[0]].get(name, np.nan))}" if others else ""
            lines.append(f"| {endpoint} | {template.format(h=h)} | {value}{other} |")
    lines += ["", f"{inputs.validation.design.kind[0].upper() + inputs.validation.design.kind[1:]}, pooled "
                  "estimates of the registered family: estimate (95 % CI), 95 % prediction interval, I² "
                  "(under K-fold: the mean over folds, its interval from the fold standard errors, no prediction "
                  "interval).", "",
              "| endpoint | metric | pooled | prediction interval | I² | clusters |", "|---|---|---|---|---:|---:|"]
    pooled = inputs.validation.pooled
    for row in pooled[pooled["family"] == inputs.family].itertuples():
        if row.metric != "uno_c" and row.horizon != h:
            continue
        name = inputs.validation.metric_name(row.endpoint, row.metric, row.horizon)
        lines.append(f"| {row.endpoint} | {name.removeprefix(endpoint_prefix(row.endpoint))} | "
                     f"{_with_ci(row.estimate, (row.lower, row.upper))} | "
                     f"{_f(row.pi_lower)} to {_f(row.pi_upper)} | {_f(100 * row.i2, 0)} % | {row.k} |")
    lines += ["", "Per-centre values and every horizon: `validation/per_cluster_metrics.csv`, "
                  "`validation/pooled_metrics.csv`" + _figures(inputs, " and the forest plots "
                  "`plots/forest/forest_<endpoint>_<metric>.png`{}") + " on the run.", ""]
    return lines


def _calibration_section(inputs: ModelCardInputs) -> list[str]:
    chosen = inputs.metrics[inputs.family]
    lines = ["## Calibration", "",
             "Held-out data. O/E = observed (Kaplan-Meier or Aalen-Johansen) / mean predicted risk; slope and "
             "intercept from a cloglog GLM on pseudo-observations; ICI and E50 from a loess of the "
             "pseudo-observations on the predicted risk."
             + _figures(inputs, " Plots: `plots/calibration/`{} on the run."), "",
             "| endpoint | horizon | O/E | slope | intercept | ICI | E50 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for endpoint in _endpoints(inputs):
        prefix = endpoint_prefix(endpoint)
        for h in inputs.schema.horizons_months:
            values = [chosen.get(f"{prefix}{m}_{h}m", np.nan) for m in ("cal_oe", "cal_slope", "cal_intercept",
                                                                         "ici", "e50")]
            lines.append(f"| {endpoint} | {h} | " + " | ".join(_f(v, 3) for v in values) + " |")
    return lines + [""]


def _usefulness_section(inputs: ModelCardInputs) -> list[str]:
    first, last, _ = inputs.gates.net_benefit_range
    lines = ["## Clinical usefulness (decision curves)", "",
             f"Net benefit against treat-all and treat-none for threshold risks {100 * first:.0f} % to "
             f"{100 * last:.0f} %, with Kaplan-Meier (Aalen-Johansen) risks so censoring is handled. Tables: "
             "`decision_curves/`" + _figures(inputs, ", plots: `plots/decision_curves/`{}") + " on the run.", ""]
    lines += [f"- {endpoint}: {sentence}" for endpoint, sentence in inputs.decision_curves.items()]
    return lines + [""]


def _subgroup_section(inputs: ModelCardInputs) -> list[str]:
    table = inputs.subgroups
    h = inputs.schema.main_horizon_months
    lines = ["## Subgroups", "",
             f"{'Out-of-centre' if inputs.validation.design.by_cluster else 'Out-of-fold'} predictions of the "
             f"{inputs.validation.design.kind} validation, main horizon {h} months. Groups with "
             f"fewer than {SMALL_GROUP_PATIENTS} patients or {SMALL_GROUP_EVENTS} events are flagged small. Full "
             "table: `subgroups/subgroups.csv` and `subgroups/subgroups.md` on the run.", ""]
    if table.empty:
        return lines + ["No subgroup could be evaluated.", ""]
    main = table[table["endpoint"] == table["endpoint"].iloc[0]]
    lines += ["| variable | group | n | events | O/E | slope | C (95 % CI) | flag |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    for row in main.itertuples():
        c = f"{_f(row.c)} ({_f(row.c_lower95)} to {_f(row.c_upper95)})" if np.isfinite(row.c) else "-"
        flag = "; ".join(x for x in ("small" if row.small else "", row.note) if x)
        lines.append(f"| {row.variable} | {row.group} | {row.n} | {row.events} | {_f(row.oe, 2)} | "
                     f"{_f(row.cal_slope, 2)} | {c} | {flag} |")
    poor = table[(~table["small"]) & ((table["oe"] < 0.8) | (table["oe"] > 1.25))]
    lines += ["", "Groups of adequate size with O/E outside 0.8-1.25: "
                  + (", ".join(f"{r.endpoint} {r.variable}={r.group} ({r.oe:.2f})" for r in poor.itertuples())
                     if len(poor) else "none") + ".", ""]
    return lines


def _gate_section(inputs: ModelCardInputs) -> list[str]:
    g = inputs.gates
    lines = ["## Promotion gate", "",
             f"Configuration `{g.source}`. The gates read the pooled cross-centre (or repeated cross-validated) "
             "estimate at the main horizon with its 95 % confidence interval: calibration slope in "
             f"{list(g.slope_bounds)} and O/E in {list(g.oe_bounds)} fail only when the whole interval lies outside "
             f"the band, Uno's C only when the whole interval lies below {g.min_uno_c}; net benefit above both "
             f"defaults somewhere in {g.net_benefit_range[0]}-{g.net_benefit_range[1]} on the held-out patients. "
             "The family was chosen on development data (cross-validated C on the tuning folds); a chosen family "
             "that fails is replaced by the Cox baseline when that passes. Against the champion, on held-out "
             f"patients neither model trained on: lower bound of delta-C above {g.min_delta_uno_c_lower95} and "
             "better on C or IBS.", ""]
    if inputs.decision.table:
        lines += gate_table_lines(inputs.decision.table) + [""]
    lines += ["| gate value | result |", "|---|---|"]
    for name, value in inputs.decision.gates.items():
        shown = ("pass" if value else "FAIL") if isinstance(value, bool) else _f(value) if isinstance(
            value, float | int | np.floating) else str(value)
        lines.append(f"| {name} | {shown} |")
    lines += ["", f"Decision: **{'promoted' if inputs.decision.promoted else 'not promoted'}**: "
                  f"{inputs.decision.reason}.", ""]
    return lines


def _limitations_section(inputs: ModelCardInputs) -> list[str]:
    lines = ["## Limitations", ""]
    if inputs.synthetic:
        lines.append("- Trained and validated on a synthetic cohort: the numbers show that the pipeline works and "
                     "what a reviewer will see, not clinical performance. Do not use for patient care before "
                     "training and validating on registry data.")
    if inputs.not_learned:
        lines.append(f"- Not learned from: {', '.join(i['name'] for i in inputs.not_learned)} (see Predictors): the "
                     "estimates ignore them, whatever a patient's value.")
    lines += [
        f"- {inputs.validation.note[0].upper() + inputs.validation.note[1:]}.",
        "- Cause-specific proportional hazards (Cox) or boosted log-hazards with a common baseline per cause"
        + (f" and stratum ({', '.join(inputs.schema.strata)}: one baseline hazard per value, so hazards need "
           "to be proportional only within it)" if inputs.schema.strata else "")
        + ": effects that change over time are approximated.",
        "- Transportability: performance may differ in centres, countries or eras unlike those in the data; the "
        "prediction interval of the pooled estimates shows what a new centre might see.",
        "- Small subgroups and late horizons have wide intervals; horizons with fewer than 20 patients at risk "
        "are not reported.",
        "- Associations, not causes: a predictor's contribution is not the effect of changing it.",
        "- Censoring is assumed independent of the outcome given the time (Kaplan-Meier censoring weights).",
        "",
    ]
    return lines


def render_html(markdown_text: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
             "font-size:0.9em}th{background:#f3f3f3}code{background:#f5f5f5;padding:0 3px}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n{body}</body></html>\n")


def build_model_card(inputs: ModelCardInputs) -> dict[str, str]:
    markdown_text = build_markdown(inputs)
    title = f"Model card: {inputs.schema.task} version {inputs.version}"
    return {"markdown": markdown_text, "html": render_html(markdown_text, title)}
