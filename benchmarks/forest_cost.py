"""A boosted champion's answers in process, every member's trees walked together in one compiled pass
(risk_model/forest.py) against one `inplace_predict` call per member (the path before it).

For the task's champion in models/: per one-patient answer (with the default contributions, and without), per
patient of a 1,000-patient batch without contributions, and the members' margins alone for one patient; old and
new calls interleaved, median over the calls. Prints a table; not a timed test.

Usage, from the repository with PYTHONPATH=.:
    python -m benchmarks.forest_cost [--task cml_tfr] [--calls 80] [--batch 1000] [--batch-calls 10]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.explain_cost import synthetic_patients
from risk_model.bundle import ModelBundle
from risk_model.prediction import predict_patients


def _booster_margins(bundle: ModelBundle, cause: str, count: int, encoded: np.ndarray) -> np.ndarray:
    """The path before the compiled forest: each member's booster predicts on its own."""
    ensemble = bundle._ensemble()
    return np.stack([m[cause].margin_encoded(encoded, ensemble["encoding"]) for m in ensemble["members"][:count]])


def _timed(action: Callable[[], Any], old: bool) -> float:
    forest = ModelBundle._forest_margins
    if old:
        ModelBundle._forest_margins = _booster_margins  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        action()
        return 1000 * (time.perf_counter() - start)
    finally:
        ModelBundle._forest_margins = forest  # type: ignore[method-assign]


def compare(
    make: Callable[[ModelBundle, int], Callable[[], Any]], old: ModelBundle, new: ModelBundle, calls: int
) -> tuple[float, float]:
    """Median ms of the old and the new path, calls interleaved (warm-up first: compiled forests, grids)."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for call in range(calls + 2):
        for is_old, bundle in ((True, old), (False, new)):
            elapsed = _timed(make(bundle, call), is_old)
            if call >= 2:
                times[is_old].append(elapsed)
    return float(np.median(times[True])), float(np.median(times[False]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cml_tfr")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batch-calls", type=int, default=10)
    args = parser.parse_args(argv)
    pointer_path = args.models_dir / args.task / "champion.json"
    if not pointer_path.exists():
        print(f"no champion in {args.models_dir}/{args.task}: run `make train TASK={args.task}` first")
        return 1
    folder = args.models_dir / args.task / json.loads(pointer_path.read_text())["path"]
    old, new = ModelBundle.load(folder), ModelBundle.load(folder)
    if old.family != "xgboost_cox":
        print(f"the {args.task} champion is {old.family}: this compares boosted members only")
        return 1
    patients = synthetic_patients(args.task, args.batch + args.calls + 200)
    one = patients[args.batch :]
    batch = patients[: args.batch]
    rows = [
        (
            "one-patient answer, default contributions",
            compare(lambda b, i: lambda: predict_patients(b, [one[i]]), old, new, args.calls),
            1,
        ),
        (
            "one-patient answer, no contributions",
            compare(lambda b, i: lambda: predict_patients(b, [one[i]], with_contributions=False), old, new, args.calls),
            1,
        ),
        (
            "one patient, every member's margins alone",
            compare(
                lambda b, i: lambda: b.member_margins(b.encode([one[i]]), with_replicates=True), old, new, args.calls
            ),
            1,
        ),
        (
            f"{args.batch}-patient batch, no contributions, per patient",
            compare(
                lambda b, i: lambda: predict_patients(b, batch, with_contributions=False), old, new, args.batch_calls
            ),
            args.batch,
        ),
        (
            f"{args.batch}-patient batch, every member's margins alone, per patient",
            compare(
                lambda b, i: lambda: b.member_margins(b.encode(batch), with_replicates=True), old, new, args.batch_calls
            ),
            args.batch,
        ),
    ]
    boosters = [m[c].loaded_booster() for m in new._ensemble()["members"] for c in new.causes]
    trees = sum(int(b.num_boosted_rounds()) for b in boosters)
    print(
        f"{args.task} champion ({new.family}, {len(new.replicates)} replicates, {len(boosters)} boosters, "
        f"{trees} trees); load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores\n"
    )
    print("| in process | per-member `inplace_predict` (ms) | compiled forest (ms) | ratio |\n|---|---:|---:|---:|")
    for label, (before, after), per in rows:
        print(f"| {label} | {before / per:.3f} | {after / per:.3f} | {before / after:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
