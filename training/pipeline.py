"""One `make train`: cohort, split, tune, fit both families, evaluate, validate across centres, explain, log,
register with a model card, promote through the gate."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.predictor_variation import constant_predictor_problems, not_learned_reasons, without_predictors
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError, TaskSchema, validate_frame
from features.tasks import EndpointTarget, Task, get_task
from risk_model.bundle import BundleFormatError, ModelBundle, endpoint_causes
from risk_model.ood import out_of_distribution_reference
from risk_model.report_groups import with_development_counts
from risk_model.strata import StratifiedBaseline
from training.after_event import after_event_model, kaplan_meier_curve  # noqa: F401 - kaplan_meier_curve re-exported
from training.comparators import compare_with_comparators, comparison_markdown, log_comparison
from training.config import TrainSettings
from training.evaluate import Evaluation, evaluate_bundle, subset_target
from training.explain import build_background, explanation_plots, training_summary
from training.families import CoxFamily, XGBoostCoxFamily, baseline_ties, stratum_categories, training_strata
from training.mlflow_store import relocate_store
from training.model_card import ModelCardInputs, build_model_card
from training.parallel import parallel_map, parallel_tags
from training.ph_check import proportional_hazards_check
from training.promotion import (
    GateResult,
    PromotionDecision,
    PromotionGates,
    absolute_gates,
    compare_with_champion,
    decide,
    enough_shared,
    export_champion,
    fall_back_to_baseline,
    load_gates,
    mark_challenger,
    mark_champion,
    read_champion,
    shared_held_out,
    split_lineage,
)
from training.replicates import fit_replicates
from training.report import EvaluationReport, build_report, log_report
from training.run_note import NOTE_TAG, run_note, task_experiment
from training.selection import choose_family, development_concordance
from training.splits import HoldOutSplit, hold_out_centres, tuning_folds
from training.stages import VALIDATION_STAGE, Stages
from training.subgroups import report_group_definitions
from training.tune import TuningResult, shared_study, tune_xgboost
from training.validation import ValidationResult, internal_external_validation

FAMILIES = ("cox_ph", "xgboost_cox")
MIN_EVENTS_PER_PREDICTOR = 10
MIN_STRATUM_EVENTS = 10  # per cause and stratum: fewer make a warning at training


@dataclass
class Cohort:
    frame: pd.DataFrame
    source: str
    digest: str
    unit_conversions: list[str] = field(default_factory=list)
    description: str = ""
    file_format: str = ""


@dataclass
class TrainingSummary:
    task: str
    run_id: str
    experiment_id: str
    version: str
    family: str
    promoted: bool
    reason: str
    metrics: dict[str, dict[str, float]]
    tracking_uri: str
    report: EvaluationReport | None = None


class Progress:
    def __init__(self, quiet: bool):
        self.quiet, self.start = quiet, time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:6.1f}s] {message}", flush=True)


def data_digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:16]


def load_cohort(settings: TrainSettings, schema: TaskSchema) -> Cohort:
    """The registry file when given, else the task's synthetic cohort (written under data/, git-ignored)."""
    if settings.data_path:
        loaded = load_registry_file(settings.data_path, schema, settings.drop_predictors, separator=settings.separator,
                                    decimal=settings.decimal, encoding=settings.encoding)
        return Cohort(loaded.frame, loaded.source, data_digest(loaded.frame), loaded.unit_conversions,
                      description=f"registry file {Path(loaded.source).name}",
                      file_format=loaded.file_format.describe() if loaded.file_format else "")
    task = get_task(settings.task)
    n = settings.n_patients or task.default_cohort_size
    frame = validate_frame(task.generate_cohort(n, settings.seed), schema)
    problems = constant_predictor_problems(frame, schema, settings.drop_predictors)
    if problems:
        raise SchemaValidationError(schema.task, problems)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / f"{settings.task}_synthetic_n{n}_seed{settings.seed}.parquet"
    frame.to_parquet(path, index=False)
    return Cohort(frame, str(path.resolve()), data_digest(frame),
                  description=f"synthetic {settings.task} cohort, n={n}, seed={settings.seed}")


def events_per_predictor_advice(frame: pd.DataFrame, schema: TaskSchema) -> str | None:
    events = int(frame[schema.event_column].sum())
    per = events / len(schema.predictors)
    if per < MIN_EVENTS_PER_PREDICTOR:
        return (f"only {events} events for {len(schema.predictors)} candidate predictors ({per:.1f} per predictor, "
                f"fewer than {MIN_EVENTS_PER_PREDICTOR}): estimates will be unstable; collect more follow-up or "
                "restrict the predictors")
    return None


def stratum_event_advice(task: Task, frame: pd.DataFrame) -> list[str]:
    """One warning per cause and stratum of the spec's strata with fewer than MIN_STRATUM_EVENTS events: that
    stratum's baseline rests on few steps (it is still fitted; no events give it no risk of that cause)."""
    strata = training_strata(frame, task.schema)
    if strata is None:
        return []
    baseline = StratifiedBaseline(list(task.schema.strata), stratum_categories(task.schema))
    advice = []
    for cause, (_, event) in task.cause_targets(frame).items():
        for index in np.unique(strata[strata >= 0]):
            events = int(event[strata == index].sum())
            if events < MIN_STRATUM_EVENTS:
                advice.append(f"stratum {baseline.label(int(index))}: only {events} events of {cause} (fewer than "
                              f"{MIN_STRATUM_EVENTS}): its baseline hazard rests on few steps")
    return advice


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fit_family(family: str, task: Task, development: pd.DataFrame, tuned: dict[str, Any], seed: int,
               endpoint: str | None = None) -> ModelBundle:
    """One cause-specific model per cause of the task, combined into a bundle; with `endpoint`, only the models
    that endpoint reads (the family choice scores the main endpoint alone: all_hsct's four GRFS causes and the
    post-relapse model would be fitted for nothing)."""
    schema = task.schema
    causes = {}
    ties = baseline_ties(task.outcome)
    targets = task.cause_targets(development)
    needed = endpoint_causes(task.outcome, list(targets), endpoint) if endpoint else list(targets)
    for cause in needed:
        target = targets[cause]
        if family == "cox_ph":
            causes[cause] = CoxFamily(ties=ties).fit(development, schema, target).cause_model()
        else:
            result = tuned[cause]
            causes[cause] = XGBoostCoxFamily(result.params, result.num_boost_round, seed, ties=ties).fit(
                development, schema, target).cause_model()
    # Survival after relapse, with age and time to relapse (for OS).
    post_relapse = after_event_model(task, development) if endpoint in (None, "os") else None
    return ModelBundle(task=schema.task, family=family, outcome=task.outcome, causes=causes,
                       horizons_months=list(schema.horizons_months), main_horizon_months=schema.main_horizon_months,
                       schema=schema.to_json(), post_relapse_survival=post_relapse)


def choose_on_development(task: Task, development: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]],
                          tuned: dict[str, TuningResult], settings: TrainSettings) -> tuple[str, dict[str, float]]:
    """The family to register, from its cross-validated C on the tuning folds (training/selection.py): the
    held-out reporting patients are not an argument, so they cannot sway the choice."""
    refit = refit_for_validation(task, tuned, settings, task.schema.main_endpoint)  # the endpoint the choice scores
    scores = development_concordance(task, development, folds, refit, FAMILIES)
    return choose_family(scores), scores


def gate_families(bundles: dict[str, ModelBundle], family: str, validation: ValidationResult,
                  held_out: pd.DataFrame, targets: dict[str, EndpointTarget], gates: PromotionGates
                  ) -> tuple[GateResult, str]:
    """The chosen family's gates, and the Cox baseline's when it fails (training/promotion.py)."""
    def result(name: str) -> GateResult:
        bundle = bundles[name]
        return absolute_gates(bundle, validation, held_out, targets[bundle.main_endpoint], gates)

    return fall_back_to_baseline(family, result)


def complete_bundle(bundle: ModelBundle, development: pd.DataFrame, schema: TaskSchema, seed: int) -> ModelBundle:
    """Add what serving needs beyond the model: background, risk-group cut-points, training summary."""
    bundle.background, bundle.background_weights = build_background(development, schema, seed, bundle)
    main_risk = bundle.event_probability(development, np.array([schema.main_horizon_months]))[:, 0]
    bundle.risk_cut_points = [float(q) for q in np.quantile(main_risk, [1 / 3, 2 / 3])]
    bundle.training_summary = training_summary(development, schema)
    bundle.ood_reference = out_of_distribution_reference(development, bundle)
    bundle.report_groups = with_development_counts(report_group_definitions(schema), development)
    return bundle


def refit_for_validation(task: Task, tuned: dict[str, TuningResult], settings: TrainSettings,
                         endpoint: str | None = None) -> Callable[[str, pd.DataFrame], ModelBundle]:
    """Refit a family on a validation fold's training patients with the tuned settings (no re-tuning), built
    exactly as the main fit is (with `endpoint`: only the models it reads)."""

    def refit(family: str, train: pd.DataFrame) -> ModelBundle:
        return fit_family(family, task, train, tuned, settings.seed, endpoint)

    return refit


def run_training(settings: TrainSettings, gates: PromotionGates | None = None, stages: Stages | None = None
                 ) -> TrainingSummary:
    """`gates`: the promotion gates; default `training/promotion_gates.toml`. `stages`: times each stage (the
    training benchmark passes one that also watches CPU and memory); the seconds are logged with the run."""
    import mlflow

    gates = gates or load_gates()
    stages = stages or Stages()

    say = Progress(settings.quiet)
    task = get_task(settings.task)
    with stages("cohort (generate, validate, digest)"):
        cohort = load_cohort(settings, task.schema)
    frame = cohort.frame
    # Dropped predictors leave the model's schema: not in its encoding, its card, or what it asks for.
    not_learned = not_learned_reasons(frame, task.schema, settings.drop_predictors)
    task = replace(task, schema=without_predictors(task.schema, settings.drop_predictors))
    schema = task.schema
    if not_learned:
        say("not learned from (dropped): " + "; ".join(f"{i['name']}: {i['reason']}" for i in not_learned))
    say(f"cohort: {len(frame)} patients, {int(frame[schema.event_column].sum())} events, {cohort.description}")
    advice = events_per_predictor_advice(frame, schema)
    for warning in filter(None, [advice, *stratum_event_advice(task, frame)]):
        warnings.warn(warning, stacklevel=1)
        say(f"WARNING: {warning}")

    with stages("split and tuning folds"):
        split = hold_out_centres(frame, schema.event_column, settings.held_out_fraction, settings.seed)
        development, held_out = frame.iloc[split.development].reset_index(drop=True), \
            frame.iloc[split.held_out].reset_index(drop=True)
        folds = tuning_folds(development, schema.event_column, settings.n_folds, settings.seed)
    say(f"split: {split.design}; {len(folds)} tuning folds on {len(development)} development patients")

    for note in relocate_store(settings.tracking_uri):  # a copied or moved folder writes into its own store
        say(note)
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = task_experiment(mlflow, settings)
    with mlflow.start_run(experiment_id=experiment, run_name=_run_name(settings, cohort)) as parent:
        lineage_tags = {"task": settings.task, "git_commit": git_commit(), "data_digest": cohort.digest}
        mlflow.set_tags({**lineage_tags, "role": "pipeline", "data_source": cohort.description,
                         "split_design": split.design, "seed": str(settings.seed), **parallel_tags()})
        mlflow.log_params(gates.as_params())
        if advice:
            mlflow.set_tag("advisory_events_per_predictor", advice)
        if cohort.unit_conversions:
            mlflow.set_tag("unit_conversions", "; ".join(cohort.unit_conversions))
        if cohort.file_format:
            mlflow.set_tag("file_format", cohort.file_format)
        if not_learned:
            mlflow.set_tag("not_learned_predictors", ",".join(item["name"] for item in not_learned))
        mlflow.log_input(mlflow.data.from_pandas(frame, source=cohort.source, name=f"{settings.task}_cohort",
                                                 digest=cohort.digest), context="training")
        mlflow.log_params({"n_patients": len(frame), "n_development": len(development),
                           "n_held_out": len(held_out), "n_trials": settings.n_trials, "n_folds": len(folds)})

        with stages("tuning (all causes)"):
            tuned = _tune_causes(mlflow, task, development, folds, settings, experiment, parent.info.run_id,
                                 lineage_tags, say)

        say("fitting both families on the development centres")
        with stages("fit both families (with background, cut-points, OOD reference)"):
            bundles = dict(zip(FAMILIES, parallel_map(lambda family: complete_bundle(
                fit_family(family, task, development, tuned, settings.seed), development, schema, settings.seed),
                FAMILIES), strict=True))
        with stages("proportional-hazards check"):
            ph_check = proportional_hazards_check(bundles["cox_ph"], task, development)
        mlflow.log_dict(ph_check, "ph_check.json")
        mlflow.log_metrics({f"ph_global_p_{cause}": check["global"]["p"] for cause, check in ph_check.items()})
        held_out_targets = task.endpoint_targets(held_out)
        with stages("held-out metrics, both families"):
            evaluations = {name: evaluate_bundle(b, held_out, held_out_targets) for name, b in bundles.items()}
        family_runs = {}
        for name, evaluation in evaluations.items():
            family_runs[name] = _log_family_run(mlflow, experiment, settings, name, evaluation, bundles[name],
                                                lineage_tags)
            say(f"  {name}: held-out Uno C {evaluation.metrics['uno_c']:.3f}, Harrell C "
                f"{evaluation.metrics['harrell_c']:.3f}, IBS {evaluation.metrics['ibs']:.3f}")
        say("choosing the family on development data (cross-validated C on the tuning folds)")
        with stages("family choice on development (tuning-fold refits)"):
            family, development_c = choose_on_development(task, development, folds, tuned, settings)
        mlflow.log_metrics({f"development_cv_uno_c_{f}": v for f, v in development_c.items() if np.isfinite(v)})
        with stages(VALIDATION_STAGE):
            validation = internal_external_validation(frame, task, refit_for_validation(task, tuned, settings),
                                                      FAMILIES, settings.seed, say)
        gate_result, fallback_note = gate_families(bundles, family, validation, held_out, held_out_targets, gates)
        mlflow.set_tags({"family_chosen_on_development": family, "family_choice": _choice_note(development_c)}
                        | ({"family_fallback": fallback_note} if fallback_note else {}))
        say(f"  chosen on development: {family} ({_choice_note(development_c)})"
            + (f"; {fallback_note}" if fallback_note else ""))
        family = gate_result.family
        chosen, metrics = bundles[family], evaluations[family].metrics
        say(f"bootstrap ensemble for the 95 % intervals: {settings.n_replicates} refits of {family}")
        with stages(f"interval refits ({settings.n_replicates})"):
            chosen.replicates = fit_replicates(chosen, task, development, tuned, settings.seed, settings.n_replicates)
        chosen.not_learned = not_learned
        mlflow.set_tag("registered_family", family)
        for name, run_id in family_runs.items():
            mlflow.MlflowClient().set_tag(run_id, "registered", str(name == family).lower())
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        for name, evaluation in evaluations.items():
            mlflow.log_metrics({f"{name}_{k}": v for k, v in evaluation.metrics.items() if np.isfinite(v)})

        say("explaining and plotting")
        with tempfile.TemporaryDirectory() as scratch:
            scratch_path = Path(scratch)
            if settings.plots != "none":
                with stages("explanations (plots of the held-out patients)"):
                    _log_plots(mlflow, schema, chosen, held_out, scratch_path, settings.plots == "main")
            report = build_report(task, frame, held_out, held_out_targets, bundles, family,
                                  refit_for_validation(task, tuned, settings), gates, settings.seed, say, scratch_path,
                                  validation=validation, stages=stages, plots=settings.plots)
            report_metrics = log_report(mlflow, report, scratch_path, family, family_runs, schema.main_horizon_months)
            mlflow.log_metrics({k: v for k, v in report_metrics.items() if np.isfinite(v)})
            with stages("comparators (today's risk tools, nested models)"):
                comparison = compare_with_comparators(task, development, held_out, held_out_targets, chosen, family,
                                                      gates.bootstrap_draws, settings.seed, gates.thresholds,
                                                      gates.bootstrap_min_centres, bundles)
            if comparison is not None:  # today's risk tools and nested models the spec declares
                mlflow.log_metrics(log_comparison(mlflow, comparison, scratch_path, settings.task,
                                                  figures=settings.plots != "none"))
            say("promotion gate, model card and registration")
            with stages("promotion gate"):
                decision = _gate(chosen, gate_result, held_out, held_out_targets, settings, cohort.digest, gates,
                                 bundles["cox_ph"], (frame, split, schema.event_column))
            if fallback_note:
                decision.reason = f"{fallback_note}; {decision.reason}"
            chosen.metrics = {**metrics, **{k: v for k, v in report_metrics.items() if not k.endswith("_seconds")}}
            with stages("model card and registration"):
                chosen.lineage = {"run_id": parent.info.run_id, "data_digest": cohort.digest,
                                  "git_commit": git_commit(), "data_source": cohort.description,
                                  "split_design": split.design,
                                  "validation_design": report.validation.design.description,
                                  "not_learned_predictors": [item["name"] for item in not_learned],
                                  **split_lineage(frame, split, settings.seed, settings.held_out_fraction)}
                card_inputs = ModelCardInputs(
                    schema=schema, version=_next_version(mlflow, settings.task), run_id=parent.info.run_id,
                    family=family, git_commit=lineage_tags["git_commit"], data_source=cohort.description,
                    data_digest=cohort.digest, frame=frame, split_design=split.design, n_development=len(development),
                    n_held_out=len(held_out), n_trials=settings.n_trials,
                    tuned={c: {**r.params, "rounds": r.num_boost_round} for c, r in tuned.items()},
                    metrics={n: e.metrics for n, e in evaluations.items()}, intervals=report.intervals,
                    validation=report.validation, subgroups=report.subgroups, decision=decision, gates=gates,
                    decision_curves=report.usefulness, synthetic=not settings.data_path,
                    unit_conversions=cohort.unit_conversions, not_learned=not_learned, ph_check=ph_check,
                    comparison=comparison_markdown(comparison) if comparison is not None else "",
                    plots=settings.plots)
                chosen.lineage["version"] = card_inputs.version
                chosen.model_card = build_model_card(card_inputs)
                bundle_dir = scratch_path / "bundle"
                version = _register(mlflow, chosen, bundle_dir, settings.task)
                if version != card_inputs.version:  # another run registered in between: the card names the real one
                    card_inputs.version = chosen.lineage["version"] = version
                    chosen.model_card = build_model_card(card_inputs)
                chosen.save(bundle_dir)
                _log_model_card(mlflow, chosen.model_card, scratch_path)
                _record_decision(mlflow, decision, settings.task, version, family, lineage_tags)
                mlflow.set_tag(NOTE_TAG, run_note(
                    task=settings.task, endpoint=chosen.main_endpoint, horizon=schema.main_horizon_months,
                    data=cohort.description, split=split.design,
                    metrics={n: e.metrics for n, e in evaluations.items()}, family=family, version=version,
                    promoted=decision.promoted, reason=decision.reason, gates=decision.gates,
                    interval=_gate_interval(decision), not_learned=not_learned, gate_table=decision.table))
                if decision.promoted:
                    export_champion(bundle_dir, settings.models_dir, settings.task, version, parent.info.run_id,
                                    cohort.digest)
        mlflow.log_dict({name: round(seconds, 3) for name, seconds in stages.seconds.items()}, "stage_seconds.json")
        say(f"registered {settings.task} version {version} ({family}); "
            f"{'PROMOTED to champion' if decision.promoted else 'not promoted'}: {decision.reason}")
        return TrainingSummary(settings.task, parent.info.run_id, experiment, version, family, decision.promoted,
                               decision.reason, {n: e.metrics for n, e in evaluations.items()},
                               settings.tracking_uri, report)


def _tune_causes(mlflow: Any, task: Task, development: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]],
                 settings: TrainSettings, experiment: str, parent_run_id: str, lineage_tags: dict[str, str],
                 say: Callable[[str], None]) -> dict[str, TuningResult]:
    """The boosted family's settings per cause (Optuna on the tuning folds), each trial a nested MLflow run.

    The causes' studies are independent, so they run in the worker processes side by side, each one trial at a
    time with the run's seed: the same trials as one after another, on both cores. This process logs each cause's
    trials when it is tuned (the workers do not write to the store). A shared study tunes cause by cause here."""
    shared = shared_study(settings.optuna_storage, settings.optuna_study)
    if shared:
        say(f"tuning in the shared study {shared.name}.{settings.task}.<cause> at {shared.shown_storage}")
    targets = task.cause_targets(development)

    def tune(item: tuple[str, Any]) -> TuningResult:
        cause, target = item
        say(f"tuning xgboost survival:cox for {cause} with Optuna ({settings.n_trials} trials, seeded TPE)")
        return tune_xgboost(development, task.schema, target, folds, settings.n_trials, settings.seed,
                            partial(_say_trial, say, cause, settings.n_trials),
                            shared and shared.for_cause(settings.task, cause))

    tuned, client = {}, mlflow.MlflowClient()
    # A cause's trials are logged as soon as it is tuned, while the workers go on with the next causes.
    for cause, result in zip(targets, parallel_map(tune, targets.items(), jobs=1 if shared else None), strict=True):
        tuned[cause] = result
        _log_trials(client, experiment, parent_run_id, cause, result, lineage_tags)
        mlflow.set_tags(result.order_tags(cause))
        mlflow.log_params({f"xgb_{cause}_{k}": v for k, v in result.params.items()})
        mlflow.log_param(f"xgb_{cause}_num_boost_round", result.num_boost_round)
        mlflow.log_metric(f"tuning_cv_harrell_c_{cause}", result.cv_harrell_c)
    return tuned


def _say_trial(say: Callable[[str], None], cause: str, n_trials: int, number: int, params: dict[str, Any],
               score: float, rounds: int) -> None:
    say(f"  {cause} trial {number + 1}/{n_trials}: CV Harrell C {score:.3f} ({rounds} rounds)")


def _log_trials(client: Any, experiment: str, parent_run_id: str, cause: str, result: TuningResult,
                lineage_tags: dict[str, str]) -> None:
    """Each trial a finished run nested under the pipeline's run: three store calls a trial (a run opened with
    `start_run`, its tags, params and metric one call each took about 0.1 s on SQLite; all_hsct has 180 trials)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    tags = resolve_tags({**lineage_tags, "role": "tuning_trial", "family": "xgboost_cox", "cause": cause,
                         MLFLOW_PARENT_RUN_ID: parent_run_id})
    for trial in result.trials:
        run = client.create_run(experiment, tags=tags, run_name=f"tuning {cause} trial {trial.number:02d}")
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in
                                                  {**trial.params, "num_boost_round": trial.num_boost_round}.items()],
                         metrics=[Metric("cv_harrell_c", trial.cv_harrell_c, int(time.time() * 1000), 0)])
        client.set_terminated(run.info.run_id)


def _gate_interval(decision: PromotionDecision) -> tuple[float, float] | None:
    low, high = decision.gates.get("uno_c_lower95"), decision.gates.get("uno_c_upper95")
    return (low, high) if low is not None and high is not None else None


def _run_name(settings: TrainSettings, cohort: Cohort) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return f"{settings.task} {stamp} data {cohort.digest[:8]} seed {settings.seed}"


def _log_family_run(mlflow: Any, experiment: str, settings: TrainSettings, name: str, evaluation: Evaluation,
                    bundle: ModelBundle, lineage_tags: dict[str, str]) -> str:
    role = "baseline" if name == "cox_ph" else "candidate"
    with mlflow.start_run(experiment_id=experiment, run_name=f"{name} ({role})", nested=True) as run:
        mlflow.set_tags({**lineage_tags, "role": role, "family": name, "evaluation": "held-out centres"})
        mlflow.log_metrics({k: v for k, v in evaluation.metrics.items() if np.isfinite(v)})
        for label, reason in evaluation.skipped.items():
            mlflow.set_tag(f"skipped_reason_{label}", reason)
        if name == "cox_ph":
            coefficients = {cause: dict(zip(model.preprocessor.columns, model.coefficients, strict=True))
                            for cause, model in bundle.causes.items()}
            mlflow.log_dict(coefficients, "cox_coefficients.json")
    return run.info.run_id


def _log_plots(mlflow: Any, schema: TaskSchema, chosen: ModelBundle, held_out: pd.DataFrame, folder: Path,
               main_horizon_only: bool = False) -> None:
    """The explanation plots of every endpoint and reliable horizon under `explanations/`, the main one's beeswarm
    also as `plots/shap_summary_<endpoint>_<h>m.png`; calibration, decision-curve and forest plots come from
    training/report.py."""
    explanation_plots(chosen, held_out, folder / "explanations", main_horizon_only)
    mlflow.log_artifacts(str(folder / "explanations"), "explanations")
    h, endpoint = schema.main_horizon_months, chosen.main_endpoint
    main = folder / "explanations" / endpoint / f"{h}m_beeswarm.png"
    if main.exists():
        mlflow.log_artifact(shutil.copy(main, folder / f"shap_summary_{endpoint}_{h}m.png"), "plots")


def _choice_note(scores: dict[str, float]) -> str:
    return "cross-validated Uno's C on the development tuning folds: " + ", ".join(
        f"{f} {v:.3f}" for f, v in scores.items())


def _gate(bundle: ModelBundle, gate_result: GateResult, held_out: pd.DataFrame,
          targets: dict[str, EndpointTarget], settings: TrainSettings, digest: str, gates: PromotionGates,
          baseline: ModelBundle, split_of: tuple[pd.DataFrame, HoldOutSplit, str]) -> PromotionDecision:
    """The evidence gates, then the champion head to head on held-out patients neither model trained on; when
    that is not possible, the boosted model against the Cox baseline fitted on the same data."""
    decision = _against_champion(bundle, dict(gate_result.values), held_out, targets, settings, digest, gates,
                                 baseline, split_of)
    decision.table = gate_result.table
    return decision


def _against_champion(bundle: ModelBundle, values: dict[str, Any], held_out: pd.DataFrame,
                      targets: dict[str, EndpointTarget], settings: TrainSettings, digest: str,
                      gates: PromotionGates, baseline: ModelBundle,
                      split_of: tuple[pd.DataFrame, HoldOutSplit, str]) -> PromotionDecision:
    champion = read_champion(settings.models_dir, settings.task)
    if champion is None:
        return decide(values, None, "no champion yet", gates)
    current, why_not = champion_bundle(settings, champion)
    rows = None
    if current is not None:
        rows, why_not = shared_held_out({**current.lineage, "data_digest": champion.get("data_digest")}, digest,
                                        *split_of)
        if rows is not None and not enough_shared(targets[bundle.main_endpoint], rows):
            rows, why_not = None, (f"only {len(rows)} held-out patients neither model trained on ({why_not}), "
                                   "too few to compare")
    if rows is None:
        # No patients both models never saw: the boosted model must at least not be worse than the Cox baseline
        # fitted on the same data beyond noise (the Cox baseline itself passes this trivially).
        if bundle.family != baseline.family:
            versus = compare_with_champion(bundle, baseline, held_out, targets, settings.seed, gates)
            values.update({"baseline_delta_uno_c": versus["delta_uno_c"],
                           "baseline_delta_uno_c_lower95": versus["delta_uno_c_lower95"],
                           "not_worse_than_cox_baseline_ok": bool(
                               versus["delta_uno_c_lower95"] > gates.min_delta_uno_c_lower95)})
        return decide(values, None, f"champion v{champion['version']}: head-to-head comparison not possible "
                                    f"({why_not}); compared with the Cox baseline on the same data only", gates)
    shared = held_out.iloc[rows].reset_index(drop=True)
    comparison = compare_with_champion(bundle, current, shared, {e: subset_target(t, rows) for e, t in targets.items()},
                                       settings.seed, gates)
    comparison["head_to_head_patients"] = len(rows)
    return decide(values, comparison, f"champion v{champion['version']} compared head to head on {len(rows)} "
                                      f"held-out patients neither trained on ({why_not})", gates)


def champion_bundle(settings: TrainSettings, champion: dict[str, Any]) -> tuple[ModelBundle | None, str]:
    """The serving champion's bundle to compare with, or None and why not: a champion in a format this code
    cannot read must not stop the retraining its own message asks for."""
    try:
        return ModelBundle.load(Path(settings.models_dir) / settings.task / champion["path"], upgrade=True), ""
    except BundleFormatError as exc:
        return None, f"is a bundle this code cannot read ({exc})"
    except FileNotFoundError:
        return None, "its bundle is missing from models/"


def _next_version(mlflow: Any, task: str) -> str:
    """The version number the next registration will get (checked after registering)."""
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{task}'")
    return str(max((int(v.version) for v in versions), default=0) + 1)


def _log_model_card(mlflow: Any, card: dict[str, str], folder: Path) -> None:
    (folder / "model_card.md").write_text(card["markdown"])
    (folder / "model_card.html").write_text(card["html"])
    mlflow.log_artifact(str(folder / "model_card.md"))
    mlflow.log_artifact(str(folder / "model_card.html"))


def _register(mlflow: Any, bundle: ModelBundle, bundle_dir: Path, task: str) -> str:
    """Log the pyfunc (the bundle as its artifact) and register it; returns the new version."""
    from features.tasks import example_patients, get_task
    from training.pyfunc_model import RelapseRiskModel, pyfunc_signature

    bundle.save(bundle_dir)
    example = example_patients(get_task(task), 5)[bundle.feature_names]  # synthetic rows only
    # Optional flags are untyped in the signature (pyfunc_signature): MLflow would turn a null one into False.
    info = mlflow.pyfunc.log_model(
        name="model", python_model=RelapseRiskModel(), artifacts={"bundle": str(bundle_dir)},
        registered_model_name=task, input_example=example, signature=pyfunc_signature(bundle, example),
        pip_requirements=_runtime_requirements(),
        code_paths=[str(Path(__file__).resolve().parents[1] / p) for p in ("features", "risk_model", "tasks",
                                                                                      "training")],
    )
    return str(info.registered_model_version)


def _runtime_requirements() -> list[str]:
    """Pinned versions of what the pyfunc needs (skips MLflow's slow environment inference)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "xgboost-cpu", "scikit-learn")]


def _record_decision(mlflow: Any, decision: PromotionDecision, task: str, version: str, family: str,
                     lineage_tags: dict[str, str]) -> None:
    """Aliases and tags on the registered version and the parent run: `registry_alias` is champion or challenger
    (the version it replaces becomes former_champion or former_challenger), with the gate's decision."""
    client = mlflow.MlflowClient()
    outcome = "promoted" if decision.promoted else "not_promoted"
    for key, value in {**lineage_tags, "family": family, "promotion_decision": outcome,
                       "promotion_reason": decision.reason[:4000]}.items():
        client.set_model_version_tag(task, version, key, value)
    mark_challenger(client, task, version)
    if decision.promoted:
        mark_champion(client, task, version, "make train (passed the gate)")
    mlflow.set_tags({"promotion_decision": outcome, "promotion_reason": decision.reason, "registered_version": version})
    mlflow.log_metrics({f"gate_{k}": float(v) for k, v in decision.gates.items()
                        if isinstance(v, int | float | bool) and np.isfinite(float(v))})
    mlflow.set_tags({f"gate_{row['gate']}": _gate_tag(row) for row in decision.table})
    mlflow.log_text(json.dumps({"promoted": decision.promoted, "reason": decision.reason,
                                "gates": decision.gates, "evidence": decision.table}, indent=1, default=str),
                    "promotion.json")


def _gate_tag(row: dict[str, Any]) -> str:
    """One evidence gate in words: estimate, interval, band, result and source."""
    low, high = row["band"]
    band = f"above {low:g}" if not np.isfinite(high) else f"{low:g} to {high:g}"
    return (f"{row['estimate']:.3f} (95 % CI {row['lower95']:.3f} to {row['upper95']:.3f}), band {band}: "
            f"{'pass' if row['passed'] else 'FAIL'}; {row['source']}")
