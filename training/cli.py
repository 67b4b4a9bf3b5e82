"""Thin command line over the pipeline: `python -m training.cli train [--task ...] [--data ...]`."""

from __future__ import annotations

import argparse
import os
import sys

from features.task_schema import SchemaValidationError
from features.tasks import TASKS
from training.config import DEFAULT_TRACKING_URI, TrainSettings

HEADLINE = ("uno_c", "harrell_c", "ibs", "auc_{h}m", "brier_{h}m", "cal_slope_{h}m", "cal_oe_{h}m")
# `make train` with no TASK trains these (the registry-data tasks only when asked for by name).
DEFAULT_TASKS = ("cml_tfr", "all_hsct")


def _train(args: argparse.Namespace) -> int:
    if args.data and not args.task:
        print(f"--data needs --task (TASK=...): tasks are {', '.join(sorted(TASKS))}", file=sys.stderr)
        return 2
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="mlflow")
    from training.pipeline import run_training

    tasks = [args.task] if args.task else [t for t in DEFAULT_TASKS if t in TASKS]
    for task in tasks:
        settings = TrainSettings(
            task=task, data_path=args.data, n_patients=args.patients, seed=args.seed, n_trials=args.trials,
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
        )
        print(f"=== training {task} ===", flush=True)
        try:
            summary = run_training(settings)
        except SchemaValidationError as error:
            print(f"\n{error}", file=sys.stderr)
            return 2
        _print_summary(summary)
    return 0


def _print_summary(summary: object) -> None:
    from features.tasks import get_task

    h = get_task(summary.task).schema.main_horizon_months
    print(f"\n=== {summary.task}: held-out metrics of the relapse endpoint (centres never seen in tuning or "
          "fitting) ===")
    print(f"{'metric':<16}" + "".join(f"{family:>14}" for family in summary.metrics))
    for template in HEADLINE:
        name = template.format(h=h)
        print(f"{name:<16}" + "".join(f"{m.get(name, float('nan')):>14.3f}" for m in summary.metrics.values()))
    print(f"registered: {summary.task} version {summary.version} ({summary.family})")
    print(f"promoted to champion: {'yes' if summary.promoted else 'no'} ({summary.reason})")
    print(f"run: {summary.run_id} in experiment {summary.experiment_id} ({summary.tracking_uri})")
    print("open it: make ui, then http://127.0.0.1:5000/#/experiments/"
          f"{summary.experiment_id}/runs/{summary.run_id}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, evaluate, register and promote a task's model")
    train.add_argument("--task", choices=sorted(TASKS), default=None)
    train.add_argument("--data", help="registry file (.csv or .parquet); default: the synthetic cohort")
    train.add_argument("--patients", type=int, default=None, help="synthetic cohort size")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--trials", type=int, default=30, help="Optuna trials")
    train.set_defaults(handler=_train)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
