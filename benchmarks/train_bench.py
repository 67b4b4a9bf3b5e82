"""`make bench-train`: time, CPU use and peak memory of each training stage as the cohort grows, and each stage's
growth exponent.

For each synthetic task and cohort size, one fresh process runs the pipeline's own stage functions in the order
`training.pipeline.run_training` calls them (cohort, split, tuning, both families' fits, held-out metrics, interval
refits, explanations, leave-one-centre-out validation, metric bootstrap, subgroups, plots, promotion gate, model
card and registration), timing each one. Tuning is reported per trial as well (its total over the causes divided
by trials x causes). MLflow writes to a temporary store, so nothing reaches mlruns/ or models/; the per-trial and
per-family MLflow logging of `make train` is left out (registration is timed).

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
                                        [--replicates 30] [--draws 200] [--seed 42] [--family auto] [--jobs N]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
class Stages:
    """Consecutive stages: each row has wall and CPU seconds (all threads) and the peak RSS while it ran."""

    sampler: PeakSampler
    say: Callable[[str], None]
    rows: list[dict[str, Any]] = field(default_factory=list)
    _open: dict[str, Any] | None = None

    def begin(self, name: str, **extra: Any) -> None:
        self.end()
        self._open = {"stage": name, **extra, "start_rss_mb": self.sampler.reset() / 2**20,
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

    @contextmanager
    def stage(self, name: str, **extra: Any) -> Iterator[None]:
        self.begin(name, **extra)
        try:
            yield
        finally:
            self.end()

    def wrap(self, function: Callable[..., Any], name: str, then: str | None = None) -> Callable[..., Any]:
        """`function` timed as stage `name`; `then` opens the next stage when it returns (the code after it)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.begin(name)
            try:
                return function(*args, **kwargs)
            finally:
                self.end()
                if then:
                    self.begin(then)

        return timed


# --- one task at one size, in this process --------------------------------------------------------------------

@contextmanager
def report_stages(stages: Stages, draws: int) -> Iterator[None]:
    """`training.report.build_report` as it is, with its validation, bootstrap and subgroup calls timed as stages
    and what follows them (calibration and decision-curve plots) as one more."""
    from training import report

    saved = report.internal_external_validation, report.bootstrap_headline, report.subgroup_table
    report.internal_external_validation = stages.wrap(saved[0], "validation (leave one centre out, both families)")
    report.bootstrap_headline = stages.wrap(saved[1], f"metric bootstrap ({draws} draws)")
    report.subgroup_table = stages.wrap(saved[2], "subgroups", then="calibration and decision-curve plots")
    try:
        yield
    finally:
        stages.end()
        report.internal_external_validation, report.bootstrap_headline, report.subgroup_table = saved


def run_stages(task_name: str, n: int, trials: int, replicates: int, draws: int, seed: int, scratch: Path,
               say: Callable[[str], None], family: str = "auto") -> tuple[list[dict[str, Any]], str]:
    """The stages of `run_training`, in its order, each timed: one row per stage, and the registered family
    (`family` forces it; "auto" lets the pipeline choose, which may differ between cohort sizes)."""
    import mlflow

    from features.tasks import get_task
    from training import pipeline
    from training.config import TrainSettings
    from training.evaluate import evaluate_bundle
    from training.explain import explanation_plots
    from training.model_card import ModelCardInputs, build_model_card
    from training.promotion import load_gates
    from training.replicates import fit_replicates
    from training.report import build_report
    from training.splits import hold_out_centres, tuning_folds
    from training.tune import tune_xgboost

    settings = TrainSettings(task=task_name, n_patients=n, seed=seed, n_trials=trials, n_replicates=replicates,
                             tracking_uri=f"sqlite:///{scratch / 'mlflow.db'}", models_dir=scratch / "models",
                             data_dir=scratch / "data", quiet=True)
    gates = replace(load_gates(), bootstrap_draws=draws)
    task = get_task(task_name)
    schema = task.schema
    stages = Stages(PeakSampler(), say)
    stage = stages.stage
    try:
        with stage("cohort (generate, validate, digest)"):
            cohort = pipeline.load_cohort(settings, schema)
        frame = cohort.frame
        with stage("split and tuning folds"):
            split = hold_out_centres(frame, schema.event_column, settings.held_out_fraction, seed)
            development = frame.iloc[split.development].reset_index(drop=True)
            held_out = frame.iloc[split.held_out].reset_index(drop=True)
            folds = tuning_folds(development, schema.event_column, settings.n_folds, seed)
        targets = task.cause_targets(development)
        with stage("tuning (all causes)", trials=trials * len(targets)):
            tuned = {cause: tune_xgboost(development, schema, target, folds, trials, seed)
                     for cause, target in targets.items()}
        with stage("fit both families"):
            fitted = {family: pipeline.fit_family(family, task, development, tuned, seed)
                      for family in ("cox_ph", "xgboost_cox")}
        with stage("bundle extras (background, cut-points, OOD)"):
            bundles = {family: pipeline.complete_bundle(bundle, development, schema, seed)
                       for family, bundle in fitted.items()}
        held_out_targets = task.endpoint_targets(held_out)
        with stage("held-out metrics, both families"):
            evaluations = {name: evaluate_bundle(b, held_out, held_out_targets) for name, b in bundles.items()}
        if family == "auto":
            with stage("family choice on development (tuning-fold refits)"):
                family = pipeline.choose_on_development(task, development, folds, tuned, settings)[0]
        chosen = bundles[family]
        with stage(f"interval refits ({replicates})"):
            chosen.replicates = fit_replicates(chosen, task, development, tuned, seed, replicates)
        with stage("explanations (plots of 200 patients)"):
            explanation_plots(chosen, held_out, scratch / "explanations")
        with report_stages(stages, draws):
            report = build_report(task, frame, held_out, held_out_targets, bundles, family,
                                  pipeline.refit_for_validation(task, tuned, settings), gates, seed,
                                  lambda _: None, scratch)
        mlflow.set_tracking_uri(settings.tracking_uri)
        experiment = mlflow.create_experiment(f"bench_{task_name}", artifact_location=(scratch / "art").as_uri())
        with stage("promotion gate (no champion: absolute gates)"):
            gate_result, _ = pipeline.gate_families(bundles, family, report.validation, held_out, held_out_targets,
                                                    gates)
            decision = pipeline._gate(chosen, gate_result, held_out, held_out_targets, settings, cohort.digest, gates,
                                      bundles["cox_ph"], (frame, split, schema.event_column))
        with stage("model card and registration"), mlflow.start_run(experiment_id=experiment) as run:
            chosen.lineage = {"run_id": run.info.run_id, "data_digest": cohort.digest, "version": "1"}
            chosen.model_card = build_model_card(ModelCardInputs(
                schema=schema, version="1", run_id=run.info.run_id, family=family, git_commit=pipeline.git_commit(),
                data_source=cohort.description, data_digest=cohort.digest, frame=frame, split_design=split.design,
                n_development=len(development), n_held_out=len(held_out), n_trials=trials,
                tuned={c: {**r.params, "rounds": r.num_boost_round} for c, r in tuned.items()},
                metrics={name: e.metrics for name, e in evaluations.items()}, intervals=report.intervals,
                validation=report.validation, subgroups=report.subgroups, decision=decision, gates=gates,
                decision_curves=report.usefulness, synthetic=True))
            pipeline._register(mlflow, chosen, scratch / "bundle", task_name)
    finally:
        stages.end()
        stages.sampler.stop()
    tuning = next(r for r in stages.rows if r["stage"] == "tuning (all causes)")
    per_trial = {k: tuning[k] / tuning["trials"] for k in ("seconds", "cpu_seconds")}
    stages.rows.insert(stages.rows.index(tuning), {**tuning, **per_trial, "stage": "tuning, per trial"})
    return stages.rows, family


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
                                  args.seed, Path(scratch), lambda message: print(message, flush=True), args.family)
    peak = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB on Linux
                *(row["peak_rss_mb"] for row in rows)])
    Path(args.json_out).write_text(json.dumps({"rows": rows, "family": family, "process_peak_rss_mb": peak}))


def measure(task: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "benchmarks.train_bench", "--worker", "--task", task, "--sizes", str(n),
                   "--trials", str(args.trials), "--replicates", str(args.replicates), "--draws", str(args.draws),
                   "--seed", str(args.seed), "--family", args.family, "--json-out", out.name]
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
        note += (" (it differs between sizes, so the refits, explanations and registration compare different "
                 "models: `--family` fixes it)")
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
    parser.add_argument("--family", choices=("auto", "cox_ph", "xgboost_cox"), default="auto",
                        help="the registered family (auto: the pipeline's choice on the held-out C)")
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
