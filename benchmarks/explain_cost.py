"""`make bench-explain`: what one patient's explanation costs in process, beside the prediction it rides with.

For each task with a champion in models/: per patient, the prediction without contributions (every endpoint,
curve, intervals from the bootstrap ensemble, warnings), the same with the default contributions, the
contributions alone, and `/explain`'s payload; median and 99th percentile over synthetic patients, one at a time
(as the endpoint sees them). Prints a table; not a timed test.

Usage: python -m benchmarks.explain_cost [--task cml_tfr] [--patients 200] [--models-dir models]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from features.tasks import TASKS
from risk_model.bundle import ModelBundle
from risk_model.prediction import explain_patient, predict_patients
from serving.api import prepare_patients


def synthetic_patients(task: str, count: int) -> list[dict[str, Any]]:
    """Validated, derived predictors of generated patients (no real rows), as the endpoint prepares them."""
    schema = TASKS[task].schema
    cohort = TASKS[task].generate_cohort(count, 2024)
    names = [p.name for p in schema.predictors if p.name in cohort.columns]
    records = cohort[names].astype(object).where(cohort[names].notna(), None).to_dict("records")
    return [predictors for predictors, problems in prepare_patients(schema, records) if not problems]


def per_patient_ms(action: Callable[[dict[str, Any]], Any], patients: list[dict[str, Any]]) -> np.ndarray:
    for patient in patients[:5]:  # warm caches (ensemble weights, event-time grids, background margins)
        action(patient)
    times = []
    for patient in patients:
        start = time.perf_counter()
        action(patient)
        times.append(1000 * (time.perf_counter() - start))
    return np.array(times)


def measure(bundle: ModelBundle, patients: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {
        "prediction without contributions": per_patient_ms(
            lambda p: predict_patients(bundle, [p], with_contributions=False), patients),
        "prediction with default contributions": per_patient_ms(lambda p: predict_patients(bundle, [p]), patients),
        "contributions alone (default endpoint, main horizon)": per_patient_ms(
            lambda p: bundle.contributions([p], bundle.main_horizon_months), patients),
        "`/explain` payload (every predictor, sorted)": per_patient_ms(lambda p: explain_patient(bundle, p),
                                                                       patients),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", choices=sorted(TASKS))
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    tasks = args.task or [t for t in ("cml_tfr", "all_hsct") if (args.models_dir / t / "champion.json").exists()]
    if not tasks:
        print(f"no champion in {args.models_dir}/: run `make train` first")
        return 1
    lines = [f"Per-patient cost in process, {date.today().isoformat()} (one patient at a time):", "",
             "| task | model | step | median (ms) | p99 (ms) |", "|---|---|---|---:|---:|"]
    for task in tasks:
        pointer = json.loads((args.models_dir / task / "champion.json").read_text())
        bundle = ModelBundle.load(args.models_dir / task / pointer["path"])
        identity = f"{bundle.family} v{pointer['version']}, {len(bundle.replicates)} replicates, " \
                   f"{len(bundle.background)} background rows"
        for step, times in measure(bundle, synthetic_patients(task, args.patients)).items():
            lines.append(f"| {task} | {identity} | {step} | {np.median(times):.2f} | "
                         f"{np.percentile(times, 99):.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
