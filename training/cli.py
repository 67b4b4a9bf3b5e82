"""Thin command line over the pipeline: `python -m training.cli train|validate|data-dictionary|tune-worker`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from features.task_schema import SchemaValidationError
from features.tasks import TASKS, TASKS_DIR
from training.config import DEFAULT_TRACKING_URI, PLOT_CHOICES, TrainSettings
from training.mlflow_store import StoreLocationError

HEADLINE = ("uno_c", "harrell_c", "ibs", "auc_{h}m", "brier_{h}m", "cal_slope_{h}m", "cal_oe_{h}m")
# `make train` with no TASK trains these (the registry-data tasks only when asked for by name).
# A plain `make train` trains the tasks whose spec says so (synthetic cohorts); real-data tasks only by name.
DEFAULT_TASKS = tuple(name for name, task in TASKS.items() if task.spec and task.spec.trained_by_default)
DATA_DIR = Path("data")
JOBS_HELP = ("worker processes for refits, validation folds and bootstrap draws, and tuning trials at once "
             "(default: TRAIN_JOBS, else every core; 1 = sequential and reproducible tuning)")
DROP_HELP = ("a predictor the model must not use, e.g. one with the same value for nearly every patient (repeatable, "
             "or comma-separated); the file may leave it out")


def _task_list() -> str:
    return ", ".join(sorted(TASKS))


def public_extract_file(task_name: str, data_dir: Path = DATA_DIR) -> Path | None:
    """Write a real-data task's public extract as a registry file under data/ (git-ignored); None if it has none.

    The file then goes through the same loader, unit conversions and validation as any registry export.
    """
    extract = TASKS[task_name].public_extract
    if extract is None:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / extract.file_name
    extract.load().to_csv(path, index=False)
    return path


def _data_for(task_name: str, data: str | None) -> str | None:
    """The file a task trains on or validates: DATA when given, else the task's public extract (if any). DATA
    naming the public extract's file (data/<task>_mstate_<extract>.csv) writes it first when it is not there
    yet, so the documented command works in a fresh clone."""
    extract = TASKS[task_name].public_extract
    if data and (extract is None or Path(data).exists()
                 or Path(data).resolve() != (DATA_DIR / extract.file_name).resolve()):
        return data
    path = public_extract_file(task_name)
    if path is None:
        return None
    assert extract is not None
    given = "" if data else "no DATA given: "
    print(f"{given}using the public extract {extract.name}, written as a registry file to {path}\n"
          f"  {extract.caveat}", flush=True)
    return str(path)


def _read_options(args: argparse.Namespace) -> dict[str, str | None]:
    return {"separator": args.sep, "decimal": args.decimal, "encoding": args.encoding}


def check_file(task_name: str, data: str, options: dict[str, str | None], drops: tuple[str, ...] = ()
               ) -> object | None:
    """Read and validate a registry file and print the one report `validate` and `train` share: what is usable
    and how it was read (standard output), or every problem (standard error). None when it cannot be used."""
    from features.file_format import RegistryFileError
    from features.registry_file import load_registry_file

    try:
        loaded = load_registry_file(data, TASKS[task_name].schema, drops, **options)
    except SchemaValidationError as error:
        print(f"{error}".replace("; nothing was trained", ""), file=sys.stderr)
        print(f"\nNOT USABLE: {data} cannot be used for {task_name}; fix every problem above "
              f"(the data dictionary: make data-dictionary TASK={task_name})", file=sys.stderr)
        return None
    except FileNotFoundError as error:
        print(f"NOT USABLE: {error}: check the path (DATA= is relative to the project folder)", file=sys.stderr)
        return None
    except (RegistryFileError, ValueError, OSError) as error:
        print(f"NOT USABLE: {data} cannot be read: {error}", file=sys.stderr)
        return None
    print(_usable_report(task_name, data, loaded), flush=True)
    return loaded
def _drops(task_name: str, args: argparse.Namespace) -> tuple[str, ...]:
    """The predictors the model must not use: `--drop-predictor` (repeatable or comma-separated, `DROP=a,b`) and,
    when a task trains on its public extract (by default, or as the file written from it), those the extract cannot
    teach."""
    named = [name.strip() for value in args.drop_predictor or () for name in value.split(",") if name.strip()]
    extract = TASKS[task_name].public_extract
    is_extract = extract is not None and (not args.data or Path(args.data).name == extract.file_name)
    if is_extract and extract.drop_predictors:
        print(f"  {extract.name} does not vary in {', '.join(extract.drop_predictors)}: dropped (not learned from)")
        named += [name for name in extract.drop_predictors if name not in named]
    return tuple(named)


def _study_options(args: argparse.Namespace) -> dict[str, str | None]:
    """A shared Optuna study from --storage/--study, else OPTUNA_STORAGE/OPTUNA_STUDY; both or neither."""
    return {"optuna_storage": args.storage or os.environ.get("OPTUNA_STORAGE") or None,
            "optuna_study": args.study or os.environ.get("OPTUNA_STUDY") or None}


def _study_problem(args: argparse.Namespace) -> str | None:
    from training.tune import shared_study

    try:
        shared_study(*_study_options(args).values())
    except ValueError as error:
        return str(error)
    return None


def _tune_worker(args: argparse.Namespace) -> int:
    from training.tune import StudyMismatchError, shared_study
    from training.tune_worker import run_worker

    options = _study_options(args)
    if not (options["optuna_storage"] and options["optuna_study"]):
        print("tune-worker needs a shared study: STUDY=<name> STORAGE=postgresql://user@host:5432/db "
              "(or OPTUNA_STUDY / OPTUNA_STORAGE)", file=sys.stderr)
        return 2
    data, drops = _data_for(args.task, args.data), _drops(args.task, args)
    if data is not None and check_file(args.task, data, _read_options(args), drops) is None:
        return 2
    shared = shared_study(*options.values(), jobs=args.jobs, seeded=False)
    settings = TrainSettings(task=args.task, data_path=data, n_patients=args.patients, seed=args.seed,
                             n_trials=args.trials, **_read_options(args), drop_predictors=drops, **options)
    try:
        run_worker(settings, shared)
    except StudyMismatchError as error:
        print(f"\n{error}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    if problem := _study_problem(args):
        print(problem, file=sys.stderr)
        return 2
    if (args.data or args.drop_predictor) and not args.task:
        print(f"--data and --drop-predictor need --task (TASK=...): tasks are {_task_list()}", file=sys.stderr)
        return 2
    import logging
    import warnings

    from training.parallel import configure_jobs, configured_jobs

    try:
        configure_jobs(args.jobs)
        configured_jobs()  # TRAIN_JOBS read now: a bad value stops the run before anything is tuned
    except ValueError as error:
        print(f"--jobs / JOBS= / TRAIN_JOBS: {error}", file=sys.stderr)
        return 2
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="mlflow")

    tasks = [args.task] if args.task else [t for t in DEFAULT_TASKS if t in TASKS]
    for task in tasks:
        data, drops = _data_for(task, args.data), _drops(task, args)
        # The same check and report as `make validate`, before anything is tuned or logged.
        if data is not None and check_file(task, data, _read_options(args), drops) is None:
            print("nothing was trained.", file=sys.stderr)
            return 2
        # After the check: the training stack (MLflow, xgboost, lifelines) takes seconds to import, and a refused
        # file should be told at once.
        from training.pipeline import run_training
        settings = TrainSettings(
            task=task, data_path=data, n_patients=args.patients, seed=args.seed, n_trials=args.trials,
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI), **_read_options(args),
            drop_predictors=drops, plots=args.plots, **_study_options(args),
        )
        print(f"=== training {task} ===", flush=True)
        try:
            summary = run_training(settings)
        except SchemaValidationError as error:
            print(f"\n{error}", file=sys.stderr)
            return 2
        except StoreLocationError as error:
            print(f"\nMLflow store: {error}", file=sys.stderr)
            return 2
        _print_summary(summary)
    return 0


def _print_summary(summary: object) -> None:
    from mlflow import MlflowClient

    from features.tasks import get_task

    schema = get_task(summary.task).schema
    h = schema.main_horizon_months
    run = MlflowClient(summary.tracking_uri).get_run(summary.run_id)
    endpoint = schema.main_endpoint
    print(f"\n=== {summary.task}: held-out metrics of the {endpoint} endpoint (data never seen in tuning or "
          f"fitting: {run.data.tags.get('split_design', 'held-out split')}) ===")
    print(f"{'metric':<16}" + "".join(f"{family:>14}" for family in summary.metrics))
    for template in HEADLINE:
        name = template.format(h=h)
        print(f"{name:<16}" + "".join(f"{m.get(name, float('nan')):>14.3f}" for m in summary.metrics.values()))
    low, high = run.data.metrics.get("uno_c_lower95"), run.data.metrics.get("uno_c_upper95")
    if low is not None and high is not None:
        print(f"uno_c of the registered family ({summary.family}): {summary.metrics[summary.family]['uno_c']:.3f}, "
              f"95 % bootstrap interval {low:.3f} to {high:.3f} (held-out predictions, no refit)")
    evidence = sorted((k, v) for k, v in run.data.tags.items() if k.startswith("gate_") and "95 % CI" in v)
    for name, text in evidence:  # the promotion gates: pooled cross-validated estimate, interval, band, result
        print(f"{name}: {text}")
    print(f"registered: {summary.task} version {summary.version} ({summary.family})")
    print(f"promoted to champion: {'yes' if summary.promoted else 'no'} ({summary.reason})")
    print(f"run: {summary.run_id} in experiment {summary.experiment_id} ({summary.tracking_uri})")
    print("open it: make ui, then http://127.0.0.1:5000/#/experiments/"
          f"{summary.experiment_id}/runs/{summary.run_id}\n")


def _validate(args: argparse.Namespace) -> int:
    """Check a registry file against a task's schema without training; 0 when usable, 2 when not."""
    if not args.task:
        print(f"validate needs --task (TASK=...): tasks are {_task_list()}", file=sys.stderr)
        return 2
    data = _data_for(args.task, args.data)
    if data is None:
        print(f"validate needs --data (DATA=file.csv or file.parquet) for {args.task}", file=sys.stderr)
        return 2
    drops = _drops(args.task, args)
    loaded = check_file(args.task, data, _read_options(args), drops)
    if loaded is None:
        return 2
    if drops:
        print(f"  dropped, so not learned from: {', '.join(drops)}")
    return 0


def _usable_report(task_name: str, data: str, loaded: object) -> str:
    import numpy as np

    from features.registry_file import PSEUDO_ID_COLUMN
    from training.pipeline import events_per_predictor_advice, stratum_event_advice

    task = TASKS[task_name]
    schema, frame = task.schema, loaded.frame
    # An event column may hold cause codes 1..K: count rows with an event, not the sum of the codes.
    events = int(np.sum(frame[schema.event_column].to_numpy(float) > 0))
    codes = "1" if schema.event_codes == 1 else f"1..{schema.event_codes}"
    coded = f"{schema.event_column} = {codes}"
    lines = [f"OK: {data} is usable for {task_name}: {len(frame)} patients, {events} events ({coded})."]
    counts = []
    for name, target in task.endpoint_targets(frame).items():
        code = np.asarray(target.code)
        n = int(np.sum(code == target.event_of_interest)) if target.competing else int(np.sum(code > 0))
        counts.append(f"{name} {n}")
    lines.append(f"  events by endpoint: {', '.join(counts)}")
    lines.append(f"  read as: {loaded.file_format.describe()}")
    lines += [f"  note: {note}" for note in loaded.notes]
    conversions = "; ".join(loaded.unit_conversions) or "none (every column in the schema's units)"
    lines.append(f"  unit conversions applied: {conversions}")
    dropped = f"; {PSEUDO_ID_COLUMN} read and dropped (never stored)" if loaded.had_pseudo_id else ""
    grouping = "; centre and country hold codes (no names, long numbers or dates)" if any(
        name in frame.columns and frame[name].notna().any() for name in schema.grouping_names) else ""
    lines.append(f"  identifiers: no identifier-like column, no dates{grouping}{dropped}")
    centres = frame["centre"].dropna().nunique() if "centre" in frame.columns else 0
    lines.append(f"  centres: {centres}" + ("" if centres >= 3 else " (fewer than 3: training holds out a "
                                                                     "stratified share of patients instead)"))
    for advice in filter(None, [events_per_predictor_advice(frame, schema), *stratum_event_advice(task, frame)]):
        lines.append(f"  advisory: {advice}")
    return "\n".join(lines)


def _data_dictionary(args: argparse.Namespace) -> int:
    from features.data_dictionary import data_dictionary_markdown, write_data_dictionaries

    if args.task:
        print(data_dictionary_markdown(args.task))
        return 0
    for path in write_data_dictionaries():
        print(f"wrote {path}")
    return 0


def _add_format_options(command: argparse.ArgumentParser) -> None:
    """How a CSV file is written, when detection should not decide (Makefile: SEP=, DECIMAL=, ENCODING=)."""
    command.add_argument("--sep", default=None, help="field separator: , ; | or comma, semicolon, tab, pipe "
                                                     "(default: detected)")
    command.add_argument("--decimal", default=None, help="decimal mark: . or , (default: detected)")
    command.add_argument("--encoding", default=None, help="text encoding, e.g. utf-8, cp1252, latin-1 "
                                                          "(default: detected)")


def _draft_task(args: argparse.Namespace) -> int:
    from features.file_format import RegistryFileError
    from features.task_draft import DraftError, draft_task

    try:
        draft, path = draft_task(args.data, args.name, args.time, args.event, args.tasks_dir, args.causes,
                                 **_read_options(args))
    except (DraftError, RegistryFileError, FileNotFoundError) as error:
        print(f"NOT DRAFTED: {error}", file=sys.stderr)
        return 1
    print(draft.text)
    leaking = "".join(f"\n  - {line}" for line in draft.leaking) or " none"
    print(f"LEAKING THE FUTURE (kept out of the predictors until a human confirms):{leaking}\n"
          f"Written to {path}. Review every '# CONFIRM' line, then:\n"
          f"  make validate TASK={args.name} DATA={args.data}\n  make train TASK={args.name} DATA={args.data}")
    return 0


def _add_study_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--storage", default=None, help="shared Optuna study: RDB storage URL, e.g. "
                                                         "postgresql://user@host:5432/optuna (default: in memory)")
    command.add_argument("--study", default=None, help="shared Optuna study name (one study per task and cause)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, evaluate, register and promote a task's model")
    train.add_argument("--task", choices=sorted(TASKS), default=None)
    train.add_argument("--data", help="registry file (.csv or .parquet); default: the synthetic cohort, or the "
                                      "public extract of a real-data task")
    train.add_argument("--patients", type=int, default=None, help="synthetic cohort size")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--trials", type=int, default=30, help="Optuna trials")
    _add_format_options(train)
    train.add_argument("--drop-predictor", action="append", metavar="NAME", help=DROP_HELP)
    train.add_argument("--jobs", type=int, default=None, help=JOBS_HELP)
    train.add_argument("--plots", choices=PLOT_CHOICES, default="all",
                       help="figures drawn: all (every endpoint and reliable horizon, the default), main (the main "
                            "horizon only) or none (a quicker look at a file; tables, metrics and card unchanged)")
    _add_study_options(train)
    train.set_defaults(handler=_train)
    worker = commands.add_parser("tune-worker", help="join the task's shared Optuna studies and run tuning trials "
                                                     "(the trainer's data, seed and options)")
    worker.add_argument("--task", choices=sorted(TASKS), required=True)
    worker.add_argument("--data", help="the trainer's registry file (default: the same synthetic cohort)")
    worker.add_argument("--patients", type=int, default=None, help="synthetic cohort size (as the trainer's)")
    worker.add_argument("--seed", type=int, default=42, help="the trainer's seed (the folds depend on it)")
    worker.add_argument("--trials", type=int, default=30, help="the budget, if this worker creates the study")
    worker.add_argument("--jobs", type=int, default=1, help="trial threads in this worker")
    _add_format_options(worker)
    worker.add_argument("--drop-predictor", action="append", metavar="NAME", help=DROP_HELP)
    _add_study_options(worker)
    worker.set_defaults(handler=_tune_worker)
    validate = commands.add_parser("validate", help="check a registry file against a task's schema, train nothing")
    validate.add_argument("--task", choices=sorted(TASKS), default=None)
    validate.add_argument("--data", help="registry file (.csv or .parquet); default for a real-data task: its "
                                         "public extract")
    _add_format_options(validate)
    validate.add_argument("--drop-predictor", action="append", metavar="NAME", help=DROP_HELP)
    validate.set_defaults(handler=_validate)
    dictionary = commands.add_parser("data-dictionary", help="print a task's data dictionary; without --task, "
                                                             "write every task's to docs/data-dictionary/")
    dictionary.add_argument("--task", choices=sorted(TASKS), default=None)
    dictionary.set_defaults(handler=_data_dictionary)
    draft = commands.add_parser("task", help="draft tasks/<name>/task.toml from a registry file, for review")
    draft.add_argument("--name", required=True, help="the new task's name (lower-case letters, digits, _)")
    draft.add_argument("--data", required=True, help="registry file (.csv or .parquet)")
    draft.add_argument("--time", required=True, help="the follow-up time column (unit by suffix: _days, _months, "
                                                     "_years; none = months)")
    draft.add_argument("--event", required=True, help="the event column: 0 = censored, 1 = the event, or cause "
                                                      "codes 1..K for competing risks")
    draft.add_argument("--causes", default=None, help="competing risks with a 0/1 EVENT column: the column that "
                                                      "names each event's cause (labels or codes)")
    draft.add_argument("--tasks-dir", type=Path, default=TASKS_DIR, help="where the task folder is written")
    _add_format_options(draft)
    draft.set_defaults(handler=_draft_task)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
