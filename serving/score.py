"""`make score TASK=... DATA=in.csv OUT=out.parquet`: score a whole file offline with the serving champion.

The same prediction path as the endpoint: each patient goes through `risk_model.prediction.predict_patients`
(what `/predict` and `/predict-batch` run), with the champion read from `models/` by the same registry.
The file is read like a registry file (CSV or Parquet; a duration column may declare its unit by suffix; a
column the schema does not know refuses the file, identifier-like ones by name; `patient_pseudo_id` and outcome
columns are allowed and not used). Each row is validated by the task schema on its own: a bad row gets its
reasons in `error` (never its values) and no scores, and the others are scored.

Output (Parquet, or CSV when OUT ends in .csv), one row per input row in order: `row` (1-based data row),
`patient_pseudo_id` (when the file has it), `status` (ok / refused), `error`, `model_name`, `model_version`,
`model_run_id`, `<endpoint>_<months>m` with `_lower` and `_upper`, `risk_group`, `warning_codes` and `warnings`
(`;`-separated); with `--explain` also `pp_base_value` and `pp_<predictor>` (contributions in percentage
points to the default explained probability). Progress goes to standard error.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.predictor_variation import with_optional
from features.registry_file import PSEUDO_ID_COLUMN, convert_units, read_table, unknown_column_problems
from features.task_schema import SchemaValidationError, TaskSchema, validate_frame
from features.tasks import TASKS
from risk_model.answers import PredictionAnswer
from risk_model.prediction import predict_patients
from serving.champions import ChampionRegistry

CHUNK_ROWS = 1000


def validate_rows(chunk: pd.DataFrame, schema: TaskSchema) -> tuple[pd.DataFrame, dict[int, str]]:
    """The rows that pass the schema (typed, derived predictors added; index = position in `chunk`) and, for
    each refused position, its reasons (column and rule, never the value)."""
    predictors = chunk[[c for c in chunk.columns if c in {*schema.predictor_names, *schema.grouping_names}]]
    refused: dict[int, list[str]] = {}
    try:
        return validate_frame(predictors, schema, require_outcome=False).set_axis(range(len(chunk))), {}
    except SchemaValidationError as error:
        whole_file = [p for p in error.problems if p.row is None]
        if whole_file:
            raise SchemaValidationError(schema.task, whole_file) from None
        for problem in error.problems:
            refused.setdefault(problem.row - 1, []).append(f"{problem.column}: {problem.rule}")
    keep = [i for i in range(len(chunk)) if i not in refused]
    clean = validate_frame(predictors.iloc[keep], schema, require_outcome=False) if keep else pd.DataFrame()
    return clean.set_axis(keep) if keep else clean, {row: "; ".join(reasons) for row, reasons in refused.items()}


def _with_known_strata(bundle: Any, positions: list[int], patients: list[dict[str, Any]], refused: dict[int, str]
                       ) -> tuple[list[int], list[dict[str, Any]]]:
    """The patients whose stratum the model has a baseline for; the others are refused (as the endpoint does)."""
    kept = []
    for position, patient in zip(positions, patients, strict=True):
        problems = bundle.unseen_stratum_problems(patient)
        if problems:
            refused[position] = "; ".join(f"{p['location'].removeprefix('body.')}: {p['reason']}" for p in problems)
        else:
            kept.append((position, patient))
    return [k[0] for k in kept], [k[1] for k in kept]


def patient_values(row: dict[str, Any], schema: TaskSchema) -> dict[str, Any]:
    """One validated row as the endpoint sees a patient: floats, booleans, category strings, None if missing."""
    values: dict[str, Any] = {}
    for p in schema.predictors:
        value = row.get(p.name)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            values[p.name] = None
        elif p.kind == "boolean":
            values[p.name] = bool(value)
        elif p.kind == "number":
            values[p.name] = float(value)
        else:
            values[p.name] = str(value)
    return values


def flatten(answer: PredictionAnswer) -> dict[str, Any]:
    row: dict[str, Any] = {"model_name": answer.model.name, "model_version": answer.model.version,
                           "model_run_id": answer.model.run_id}
    for name, endpoint in answer.endpoints.items():
        for h in endpoint.horizons:
            column = f"{name}_{h.months}m"
            row[column], row[f"{column}_lower"], row[f"{column}_upper"] = h.probability, h.lower, h.upper
    row["risk_group"] = answer.risk_group.label
    row["warning_codes"] = ";".join(w.code for w in answer.warnings)
    row["warnings"] = "; ".join(w.message for w in answer.warnings)
    if answer.contributions is not None:
        row["pp_base_value"] = 100.0 * answer.contributions.base_value
        row.update({f"pp_{i.feature}": i.percentage_points for i in answer.contributions.items})
    return row


def score_file(task: str, data: str | Path, out: str | Path, models_dir: str | Path, explain: bool = False,
               chunk_rows: int = CHUNK_ROWS, progress: Any = None) -> pd.DataFrame:
    loaded = ChampionRegistry(models_dir, [task]).get(task)
    if loaded is None:
        raise RuntimeError(f"no champion for {task} in {models_dir}/: run `make train TASK={task}` first")
    # A predictor the champion could not learn from may be left out of the file, as out of a request.
    schema = with_optional(TASKS[task].schema, [item["name"] for item in loaded.bundle.not_learned])
    raw = read_table(data)
    raw.columns = [str(c).strip() for c in raw.columns]
    converted, _ = convert_units(raw, schema)
    problems = unknown_column_problems(converted, schema)
    if problems:
        raise SchemaValidationError(task, problems)
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    total, started, refused_count, rows = len(converted), time.monotonic(), 0, []
    for start in range(0, total, chunk_rows):
        chunk = converted.iloc[start:start + chunk_rows].reset_index(drop=True)
        clean, refused = validate_rows(chunk, schema)
        positions = list(clean.index) if len(clean) else []
        patients = [patient_values(record, schema) for record in clean.to_dict("records")] if positions else []
        positions, patients = _with_known_strata(loaded.bundle, positions, patients, refused)
        answers = dict(zip(positions, predict_patients(loaded.bundle, patients, with_contributions=explain,
                                                       model_identity=loaded.identity), strict=True))
        for i in range(len(chunk)):
            row: dict[str, Any] = {"row": start + i + 1}
            if PSEUDO_ID_COLUMN in chunk.columns:
                row[PSEUDO_ID_COLUMN] = chunk[PSEUDO_ID_COLUMN].iloc[i]
            if i in answers:
                rows.append({**row, "status": "ok", "error": None, **flatten(answers[i])})
            else:
                rows.append({**row, "status": "refused", "error": refused.get(i, "not validated")})
        refused_count += len(refused)
        done = min(start + chunk_rows, total)
        elapsed = time.monotonic() - started
        if total > chunk_rows:
            say(f"scored {done}/{total} rows ({100 * done / total:.0f} %), {refused_count} refused, "
                f"{elapsed:.0f} s elapsed, about {elapsed / done * (total - done):.0f} s to go")
    result = pd.DataFrame(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        result.to_csv(out, index=False)
    else:
        result.to_parquet(out, index=False)
    say(f"{total - refused_count} of {total} rows scored with {task} version {loaded.identity['version']}"
        f"{f', {refused_count} refused (reasons in the error column)' if refused_count else ''}; wrote {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a file offline with the serving champion.")
    parser.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--data", required=True, help="CSV or Parquet, one patient per row")
    parser.add_argument("--out", required=True, help="output .parquet (or .csv)")
    parser.add_argument("--models-dir", default=os.environ.get("MODELS_DIR", "models"))
    parser.add_argument("--explain", action="store_true", help="add contributions (slower)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="patients scored per pass")
    args = parser.parse_args(argv)
    task = args.task.replace("-", "_")
    if task not in TASKS:
        print(f"unknown task {args.task!r}; tasks: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        score_file(task, args.data, args.out, args.models_dir, args.explain, args.chunk_rows)
    except SchemaValidationError as error:
        print(str(error), file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
