"""`make bench-train`: time, CPU use and peak memory of each training stage as the cohort grows, and each stage's
growth exponent.

For each synthetic task and cohort size, one fresh process runs `make train`'s own run
(`training.pipeline.run_training`) and watches the stages it names (training/stages.py: cohort, split, tuning,
both families' fits, the proportional-hazards check, held-out metrics, the family choice, leave-one-centre-out
validation, interval refits, explanations, metric bootstrap, subgroups, plots, comparators, promotion gate, model
card and registration). MLflow logging is inside the stages that do it, as in `make train`. Tuning is reported
per trial as well (its total divided by trials x causes). MLflow writes to a temporary store, so nothing reaches
mlruns/ or models/.

Work runs in this process and, with more than one job (`--jobs`, `JOBS=`, default every core), in the pool's worker
processes: CPU and memory count both (the workers' CPU while alive, read from /proc).

Memory: the resident set size (RSS) of the process and its workers together, sampled every 10 ms by a thread
reading /proc; a stage's figure is the peak RSS while it ran (it includes what earlier stages still hold: the
cohort, the models), and the whole run's peak is the larger of that and the process's own `ru_maxrss`. RSS sees
native allocations (xgboost, BLAS) that tracemalloc misses, and sampling adds no overhead to the timed code; a
peak shorter than 10 ms can be missed.
The growth exponent is the least-squares slope of log(seconds) on log(patients) over the sizes (1 = linear,
2 = quadratic); with the fixed costs of small cohorts it understates the growth of large ones.

Usage: python -m benchmarks.train_bench [--task cml_tfr] [--sizes 2000 20000 180000] [--trials 10]
                                        [--replicates 30] [--draws 200] [--seed 42] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.cli import DEFAULT_TASKS as TASKS  # the synthetic tasks a plain `make train` trains

DEFAULT_SIZES = (2_000, 20_000, 180_000)
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_SECONDS = 0.01
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- measuring one stage ------------------------------------------------------------------------------------

def worker_pids() -> list[int]:
    """This process's children: the pool's worker processes (training/parallel.py), alive now."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _rss_of(pid: str | int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except OSError:  # a worker that has just stopped
        return 0


def rss_bytes() -> int:
    """Resident memory of this process and its pool workers together."""
    return _rss_of("self") + sum(_rss_of(pid) for pid in worker_pids())


def workers_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) so far of each live worker process."""
    seconds = {}
    for pid in worker_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


class PeakSampler:
    """The largest RSS seen since the last `reset`, from a daemon thread."""

    def __init__(self) -> None:
        self.peak, self._stop = rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, rss_bytes())

    def reset(self) -> int:
        self.peak = rss_bytes()
        return self.peak

    def read(self) -> int:
        self.peak = max(self.peak, rss_bytes())
        return self.peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class StageRows:
    """Watches the run's consecutive stages: each row has wall and CPU seconds (all threads and the pool's
    workers) and the peak RSS while it ran."""

    sampler: PeakSampler
    say: Callable[[str], None]
    rows: list[dict[str, Any]] = field(default_factory=list)
    _open: dict[str, Any] | None = None

    def begin(self, name: str) -> None:
        self.end()
        self._open = {"stage": name, "start_rss_mb": self.sampler.reset() / 2**20,
                      "_wall": time.perf_counter(), "_cpu": time.process_time(), "_workers": workers_cpu_seconds()}

    def end(self) -> None:
        row, self._open = self._open, None
        if row is None:
            return
        row["seconds"] = time.perf_counter() - row.pop("_wall")
        before = row.pop("_workers")
        workers = sum(now - before.get(pid, 0.0) for pid, now in workers_cpu_seconds().items())
        row["cpu_seconds"] = time.process_time() - row.pop("_cpu") + workers
        row["peak_rss_mb"] = self.sampler.read() / 2**20
        self.rows.append(row)
        self.say(f"  {row['stage']}: {row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB")


# --- one task at one size, in this process --------------------------------------------------------------------

def run_stages(task_name: str, n: int, trials: int, replicates: int, draws: int, seed: int, scratch: Path,
               say: Callable[[str], None], **settings_fields: Any) -> tuple[list[dict[str, Any]], str]:
    """`make train`'s own run (training.pipeline.run_training) on a synthetic cohort, into a scratch store, each of
    its stages watched: one row per stage, and the registered family. `settings_fields`: further TrainSettings
    fields (a test's quicker run, e.g. n_folds=2); the benchmark passes none, so it measures `make train`'s."""
    from features.tasks import get_task
    from training.config import TrainSettings
    from training.pipeline import run_training
    from training.promotion import load_gates
    from training.stages import Stages

    settings = TrainSettings(task=task_name, n_patients=n, seed=seed, n_trials=trials, n_replicates=replicates,
                             tracking_uri=f"sqlite:///{scratch / 'mlflow.db'}", models_dir=scratch / "models",
                             data_dir=scratch / "data", quiet=True, **settings_fields)
    stages = StageRows(PeakSampler(), say)
    try:
        summary = run_training(settings, replace(load_gates(), bootstrap_draws=draws), Stages(watcher=stages))
    finally:
        stages.end()
        stages.sampler.stop()
    tuning = next(r for r in stages.rows if r["stage"].startswith("tuning"))
    causes = len(get_task(task_name).spec.causes)  # one study per cause
    per_trial = {k: tuning[k] / (trials * causes) for k in ("seconds", "cpu_seconds")}
    stages.rows.insert(stages.rows.index(tuning), {**tuning, **per_trial, "stage": "tuning, per trial"})
    return stages.rows, summary.family


# --- driving the sizes, each in a fresh process -------------------------------------------------------------

def worker(args: argparse.Namespace) -> None:
    """One task at one size: the stage rows and the process's peak RSS, as JSON to --json-out."""
    import logging
    import signal
    import warnings

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still remove the scratch directory
    for name, value in (("MLFLOW_LOGGING_LEVEL", "WARNING"), ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
                        ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true")):
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        rows, family = run_stages(args.task[0], args.sizes[0], args.trials, args.replicates, args.draws,
                                  args.seed, Path(scratch), lambda message: print(message, flush=True))
    peak = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB on Linux
                *(row["peak_rss_mb"] for row in rows)])
    Path(args.json_out).write_text(json.dumps({"rows": rows, "family": family, "process_peak_rss_mb": peak}))


def measure(task: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "benchmarks.train_bench", "--worker", "--task", task, "--sizes", str(n),
                   "--trials", str(args.trials), "--replicates", str(args.replicates), "--draws", str(args.draws),
                   "--seed", str(args.seed), "--json-out", out.name]
        subprocess.run(command, check=True)
        return json.loads(Path(out.name).read_text())


def exponent(sizes: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) on log(patients); NaN with fewer than two sizes."""
    pairs = [(n, v) for n, v in zip(sizes, values, strict=True) if v > 0]
    if len(pairs) < 2:
        return float("nan")
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def table(task: str, sizes: list[int], results: dict[int, dict[str, Any]]) -> list[str]:
    """One markdown table per task: per size the seconds, CPU use (100 % = one core busy) and peak RSS."""
    names = list(dict.fromkeys(row["stage"] for n in sizes for row in results[n]["rows"]))  # every size's, in order
    by = {n: {row["stage"]: row for row in results[n]["rows"]} for n in sizes}
    head = " | ".join(f"{n:,}: s | {n:,}: CPU | {n:,}: peak MB" for n in sizes)
    lines = [f"### {task}", "", f"| stage | {head} | time exponent |", "|---|" + "---:|" * (3 * len(sizes) + 1)]
    for name in names:
        cells, seconds = [], []
        for n in sizes:
            row = by[n].get(name)
            if row is None:
                cells.append("- | - | -")
                continue
            seconds.append(row["seconds"])
            cpu = 100 * row["cpu_seconds"] / row["seconds"] if row["seconds"] > 0 else float("nan")
            cells.append(f"{_seconds(row['seconds'])} | {cpu:.0f} % | {row['peak_rss_mb']:,.0f}")
        present = [n for n in sizes if name in by[n]]
        lines.append(f"| {name} | {' | '.join(cells)} | {_exponent(present, seconds)} |")
    totals = [sum(r["seconds"] for r in results[n]["rows"] if r["stage"] != "tuning, per trial") for n in sizes]
    cells = " | ".join(f"{_seconds(t)} | | {results[n]['process_peak_rss_mb']:,.0f}" for n, t in zip(sizes, totals,
                                                                                                     strict=True))
    lines.append(f"| **total** (peak: process and workers) | {cells} | {_exponent(sizes, totals)} |")
    families = {n: results[n]["family"] for n in sizes}
    note = f"Registered family: {', '.join(f'{n:,} patients {f}' for n, f in families.items())}"
    if len(set(families.values())) > 1:
        note += (" (the pipeline chose differently between sizes, so the refits, explanations and registration "
                 "time different models)")
    return [*lines, "", note + ".", ""]


def _exponent(sizes: list[int], values: list[float]) -> str:
    value = exponent(sizes, values)
    return f"{value:.2f}" if np.isfinite(value) else "-"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def header(args: argparse.Namespace) -> list[str]:
    from training.parallel import configured_jobs
    from training.pipeline import git_commit

    stamp = time.strftime("%Y-%m-%d %H:%M")
    return [f"## Training stages by cohort size, {stamp}", "",
            f"- Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; load "
            f"average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}; commit {git_commit()}.",
            f"- Settings: {args.trials} tuning trials per cause, {args.replicates} interval refits, {args.draws} "
            f"bootstrap draws, seed {args.seed}; synthetic cohorts; each task and size in a fresh process, the "
            "stages in `run_training`'s order in that process; "
            f"{configured_jobs()} worker processes and tuning threads (`--jobs`, `JOBS=`).",
            "- Seconds: wall clock. CPU: CPU time of all threads and worker processes over wall time (100 % = one "
            "core busy). Peak MB: the resident set size of the process and its workers sampled every "
            f"{SAMPLE_SECONDS * 1000:.0f} ms while the stage ran "
            "(it includes what earlier stages still hold). Time exponent: least-squares slope of log(seconds) on "
            "log(patients) (1 = linear, 2 = quadratic).", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--trials", type=int, default=10, help="tuning trials per cause")
    parser.add_argument("--replicates", type=int, default=30, help="bootstrap refits behind the intervals")
    parser.add_argument("--draws", type=int, default=200, help="metric bootstrap draws")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes and tuning threads (training/parallel.py; default: TRAIN_JOBS, else "
                             "every core)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from training.parallel import configure_jobs

    configure_jobs(args.jobs)  # the stage workers inherit it through the environment
    if args.worker:
        worker(args)
        return
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: subprocess.run stops the worker too
    sizes = sorted(set(args.sizes))
    lines = header(args)
    for task in args.task:
        results = {}
        for n in sizes:
            print(f"=== {task}, {n:,} patients ===", flush=True)
            results[n] = measure(task, n, args)
        lines += table(task, sizes, results)
    text = "\n".join(lines)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"train-{time.strftime('%Y-%m-%d')}.md"
    with path.open("a") as out:  # several runs on one day add up in one file
        out.write(text + "\n")
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
