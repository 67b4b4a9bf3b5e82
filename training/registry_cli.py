"""Move the champion alias by hand, with the same export as `make train` (clarifications §5):

    python -m training.registry_cli promote --task cml_tfr --version 3    # make promote TASK=cml_tfr VERSION=3
    python -m training.registry_cli rollback --task cml_tfr               # make rollback TASK=cml_tfr
    python -m training.registry_cli status --task cml_tfr                 # champion, challenger, history

Both rewrite `models/<task>/<version>/` and `models/<task>/champion.json` atomically, so a running server
picks the new champion up within a second; tags on the registered versions and their runs record who moved it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training.config import DEFAULT_TRACKING_URI


def _client(args: argparse.Namespace):  # noqa: ANN202 - mlflow is imported lazily
    from mlflow import MlflowClient

    return MlflowClient(args.tracking_uri)


def _promote(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from training.mlflow_store import StoreLocationError
    from training.promotion import promote_version

    try:
        result = promote_version(args.task, args.version, args.models_dir, args.tracking_uri)
    except MlflowException as error:
        print(f"{args.task} version {args.version}: {error.message}", file=sys.stderr)
        return 1
    except StoreLocationError as error:
        print(f"MLflow store: {error}", file=sys.stderr)
        return 1
    print(f"{args.task}: version {result['champion']} is now the champion (its gate decision at training: "
          f"{result['gate_decision']}); exported to {Path(args.models_dir) / args.task / result['champion']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from training.mlflow_store import StoreLocationError
    from training.promotion import rollback

    try:
        result = rollback(args.task, args.models_dir, args.tracking_uri)
    except (LookupError, StoreLocationError) as error:
        print(str(error), file=sys.stderr)
        return 1
    print(f"{args.task}: rolled back from version {result['rolled_back_from']} to version {result['champion']}; "
          f"champion history now {','.join(result['history'])}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from training.promotion import champion_history, current_champion, read_champion

    client = _client(args)
    try:
        challenger = str(client.get_model_version_by_alias(args.task, "challenger").version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic exception when the alias is not set
        challenger = None
    print(json.dumps({"task": args.task, "champion": current_champion(client, args.task), "challenger": challenger,
                      "champion_history": champion_history(client, args.task),
                      "served (champion.json)": read_champion(Path(args.models_dir), args.task)}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training.registry_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    parser.add_argument("--models-dir", default="models")
    commands = parser.add_subparsers(dest="command", required=True)
    promote = commands.add_parser("promote", help="make a registered version the champion and export it")
    promote.add_argument("--task", required=True)
    promote.add_argument("--version", required=True)
    promote.set_defaults(handler=_promote)
    back = commands.add_parser("rollback", help="give the champion alias back to the previous champion")
    back.add_argument("--task", required=True)
    back.set_defaults(handler=_rollback)
    status = commands.add_parser("status", help="champion, challenger and champion history of a task")
    status.add_argument("--task", required=True)
    status.set_defaults(handler=_status)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
