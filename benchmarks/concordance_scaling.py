"""`make bench-concordance`: time per call of the concordance with its standard error as the cohort grows.

Harrell's C (every comparable pair weighs 1), Uno's C truncated at tau (single event) and Wolbers' C (competing
events), each with its influence-function standard error, as training/evaluate.py computes them; and the former
all-pairs implementation (kept in tests/training/test_concordance.py as the reference) up to --old-max patients.
The growth exponent is the least-squares slope of log(time) on log(patients). Synthetic outcomes, times in days
(many ties), no real rows. Prints a table; a reported figure, not a timed test.

Usage: python -m benchmarks.concordance_scaling [--sizes 5000 20000 180000] [--old-max 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np

from features.tasks import EndpointTarget
from training import evaluate

TAU = 24.0


def cohort(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times in whole days up to 10 years (as months), codes 0 censored / 1 event of interest / 2 competing,
    and a risk score that ranks the events of interest somewhat earlier."""
    rng = np.random.default_rng(seed)
    code = rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2])
    days = np.minimum(np.ceil(rng.exponential(700, n) * np.where(code == 1, 0.6, 1.0)), 3650)
    risk = rng.normal(size=n) + 0.8 * (code == 1)
    return days / 30.4375, code, risk


def calls(n: int) -> dict[str, Callable[[], Any]]:
    time_, code, risk = cohort(n)
    event = (code == 1).astype(int)
    single = EndpointTarget(time_, (code > 0).astype(int))
    competing = EndpointTarget(time_, code, 1, True)
    return {"harrell": lambda: evaluate.harrell_c_with_se(time_, event, risk),
            "uno": lambda: evaluate.concordance_with_se(single, risk, TAU),
            "wolbers": lambda: evaluate.concordance_with_se(competing, risk, TAU)}


@contextmanager
def all_pairs() -> Any:
    """training/evaluate.py as it was: the same weights, every case against every patient."""
    from tests.training.test_concordance import all_pairs_concordance, loop_censoring_survival

    saved = evaluate.weighted_concordance, evaluate._censoring_survival
    evaluate.weighted_concordance, evaluate._censoring_survival = all_pairs_concordance, loop_censoring_survival
    try:
        yield
    finally:
        evaluate.weighted_concordance, evaluate._censoring_survival = saved


def seconds(call: Callable[[], Any], repeats: int) -> float:
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return float(np.median(durations))


def exponent(sizes: list[int], durations: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(durations), 1)[0]) if len(sizes) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 180_000])
    parser.add_argument("--old-max", type=int, default=20_000, help="largest cohort for the all-pairs code")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    start = time.perf_counter()
    calls(50)["wolbers"]()  # numba compiles (or loads its cache) once per process
    print(f"first call (imports, numba compile or cache load): {time.perf_counter() - start:.2f} s; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; median of {args.repeats} calls "
          f"({max(1, args.repeats // 2)} for all pairs)")
    table: dict[tuple[str, str], dict[int, float]] = {}
    for n in args.sizes:
        for name, call in calls(n).items():
            call()
            table.setdefault(("O(n log n)", name), {})[n] = seconds(call, args.repeats)
            if n <= args.old_max:
                with all_pairs():
                    table.setdefault(("all pairs", name), {})[n] = seconds(call, max(1, args.repeats // 2))
    header = " | ".join(f"{n:,} patients" for n in args.sizes)
    print(f"| implementation | C | {header} | growth exponent |")
    print("|---|---|" + "---:|" * (len(args.sizes) + 1))
    for (implementation, name), durations in sorted(table.items()):
        cells = " | ".join(f"{durations[n] * 1000:.1f} ms" if n in durations else "-" for n in args.sizes)
        print(f"| {implementation} | {name} | {cells} | {exponent(list(durations), list(durations.values())):.2f} |")


if __name__ == "__main__":
    main()
