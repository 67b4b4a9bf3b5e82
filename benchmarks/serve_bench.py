"""`make bench`: the same champion bundle served three ways on loopback, measured and compared with the serving
goals (reported aims, never a timed test): issue 18's for cml_tfr and all_hsct (ratio to the bare app, throughput
against `mlflow models serve`, all_hsct's full answer, model time per patient in a 1,000-patient batch), and the
service-wide ones it left standing (cold start, memory per worker, one-patient latency).

Servers (see benchmarks/servers.py): this BentoML service, a bare FastAPI app over the same prediction path
(benchmarks/bare_fastapi_app.py) and `mlflow models serve` of the registry's `models:/<task>@champion`; one at
a time, each started cold. For each: p50/p99 latency at concurrency 1 and 8, throughput at concurrency 8
(saturation on this machine), cold start (process start to the first 200 with a valid answer) and resident
memory of the process tree once measured. For the service also: `/predict?contributions=false` (no explanation),
`/predict` with an explicit `explain`, `/explain`, and the batch route with 1,000 patients (50 with contributions;
both the route's limits) per patient. Model time: `predict_patients` on the same 1,000 validated patients in the
bench's own process (the champion bundle, one BLAS thread as a worker has), the best of a few passes, per patient:
what the batch route spends beyond HTTP and JSON.

Usage: python -m benchmarks.serve_bench [--task cml_tfr] [--quick] [--requests N] [--seconds S] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.load import Call, LoadResult, run_load
from benchmarks.servers import REPO, Server, start_bare, start_mlflow, start_service, task_models_dir
from features.tasks import TASKS

# The tasks a plain `make train` trains (their spec says so), so a fresh clone benchmarks what it has.
DEFAULT_TASKS = tuple(name for name, task in TASKS.items() if task.spec and task.spec.trained_by_default)
CONCURRENCIES = (1, 8)
BATCH_PATIENTS = 1000
MODEL_TIME_PASSES = 5
# The service-wide aims at concurrency 1, one worker, that issue 18 did not replace.
GOALS = {"p50_plain_ms": 3.0, "p50_explained_ms": 6.0, "cold_start_s": 12.0, "worker_mib": 450.0}
# Issue 18 (HARMONY scale), per task: full answer = `/predict` with its default contributions and intervals.
TASK_GOALS: dict[str, dict[str, float]] = {
    "cml_tfr": {"bare_ratio": 1.2, "mlflow_throughput_ratio": 5.0, "batch_model_ms": 0.05},
    "all_hsct": {"p50_full_ms": 4.0, "mlflow_throughput_ratio": 2.0, "batch_model_ms": 0.5},
}
# A task without goals of its own is held to these (the service-wide ratios issue 18 tightened for the two above).
DEFAULT_TASK_GOALS = {"bare_ratio": 1.3, "mlflow_throughput_ratio": 2.5}


@dataclass(frozen=True)
class Settings:
    requests: int
    seconds: float
    warmup_requests: int
    warmup_seconds: float
    quick: bool


@dataclass
class Case:
    key: str
    label: str
    calls: list[Call]
    patients_per_request: int = 1
    results: dict[int, LoadResult] = field(default_factory=dict)
    memory_after: dict[str, float] = field(default_factory=dict)  # the server's memory once the case has run

    def p_ms(self, concurrency: int, q: float) -> float:
        result = self.results.get(concurrency)
        return result.percentile_ms(q) / self.patients_per_request if result else float("nan")

    def throughput(self, concurrency: int) -> float:
        result = self.results.get(concurrency)
        return result.throughput * self.patients_per_request if result else float("nan")


@dataclass
class Measured:
    server: str
    cases: list[Case]
    cold_start_s: float
    memory: dict[str, float]  # at the end
    sample: dict[tuple[str, int], float]  # (endpoint, months) -> probability, for the example patient

    @property
    def single_patient_worker_mib(self) -> float:
        """The largest process's RSS after the last one-patient case (before any batch of many)."""
        singles = [c.memory_after["largest_mib"] for c in self.cases if c.patients_per_request == 1]
        return singles[-1] if singles else float("nan")


# --- patients and requests ----------------------------------------------------------------------------------

def bench_patients(task: str, count: int = 8, seed: int = 20261125) -> list[dict[str, Any]]:
    """The request model's OpenAPI example plus valid variations of it (numbers moved within range, categories
    and booleans changed), each passing the request model and the cross-field rules."""
    from features.tasks import get_task
    from serving.api import prepare_patients
    from serving.request_models import patient_request_model

    schema = get_task(task).schema
    model = patient_request_model(schema)
    example = model.model_json_schema()["examples"][0]
    rng = random.Random(seed)
    patients = [example]
    for _ in range(500):
        if len(patients) >= count:
            break
        patient = dict(example)
        for predictor in schema.predictors:
            if predictor.name not in patient or rng.random() < 0.5:
                continue
            value = patient[predictor.name]
            if predictor.kind == "number":
                span = predictor.maximum - predictor.minimum
                moved = value + span * rng.uniform(-0.1, 0.1)
                patient[predictor.name] = round(min(predictor.maximum, max(predictor.minimum, moved)), 2)
            elif predictor.kind == "category":
                patient[predictor.name] = rng.choice(predictor.categories)
            elif predictor.kind == "boolean":
                patient[predictor.name] = not value
        try:
            model.model_validate(patient)
        except ValueError:
            continue
        [(_, problems)] = prepare_patients(schema, [patient])
        if not problems and patient not in patients:
            patients.append(patient)
    return patients


def mlflow_payload(task: str, patients: list[dict[str, Any]]) -> dict[str, Any]:
    """The patients as the pyfunc's input (the predictors, derived ones computed as the service does)."""
    from features.tasks import get_task
    from serving.api import prepare_patients

    rows = [predictors for predictors, _ in prepare_patients(get_task(task).schema, patients)]
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}}


def explain_option(task: str) -> dict[str, Any]:
    """An explanation other than the default one: the last endpoint at the first horizon other than the main."""
    from features.tasks import get_task

    schema = get_task(task).schema
    horizon = next((h for h in schema.horizons_months if h != schema.main_horizon_months), schema.main_horizon_months)
    return {"endpoint": list(schema.endpoint_names)[-1], "horizon_months": float(horizon)}


def service_cases(task: str, patients: list[dict[str, Any]], headers: dict[str, str]) -> list[Case]:
    from serving.answers import MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS

    slug = task.replace("_", "-")
    explain = explain_option(task)
    many = batch_of(patients)
    with_contributions = min(BATCH_PATIENTS, MAX_BATCH_PATIENTS_WITH_CONTRIBUTIONS)
    return [
        Case("predict", "`/predict` (contributions by default, intervals)",
             [Call.post(f"/v1/{slug}/predict", p, headers) for p in patients]),
        Case("predict_explain", f"`/predict` with `explain` ({explain['endpoint']}, {explain['horizon_months']:g} m)",
             [Call.post(f"/v1/{slug}/predict", {**p, "explain": explain}, headers) for p in patients]),
        Case("predict_plain", "`/predict?contributions=false` (intervals, no explanation)",
             [Call.post(f"/v1/{slug}/predict?contributions=false", p, headers) for p in patients]),
        Case("explain", f"`/explain` ({explain['endpoint']}, {explain['horizon_months']:g} m), JSON",
             [Call.post(f"/v1/{slug}/explain", {**p, "explain": explain}, headers) for p in patients]),
        Case("batch_plain", f"`/predict-batch`, {BATCH_PATIENTS:,} patients, no contributions, per patient",
             [Call.post(f"/v1/{slug}/predict-batch", {"patients": many, "include_contributions": False}, headers)],
             BATCH_PATIENTS),
        Case("batch_explained", f"`/predict-batch`, {with_contributions} patients with contributions, per patient",
             [Call.post(f"/v1/{slug}/predict-batch", {"patients": many[:with_contributions],
                                                      "include_contributions": True}, headers)],
             with_contributions),
    ]


def batch_of(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [patients[i % len(patients)] for i in range(BATCH_PATIENTS)]


def batch_model_ms(task: str, models_dir: Path, patients: list[dict[str, Any]]) -> float:
    """Milliseconds per patient of `predict_patients` (no contributions) on the batch route's patients, in this
    process on the champion bundle: the model's share of a batch answer, without HTTP or JSON."""
    import time

    from benchmarks.bare_fastapi_app import load_champion
    from features.tasks import get_task
    from risk_model.prediction import predict_patients
    from serving.api import prepare_patients
    from serving.champions import one_blas_thread

    one_blas_thread()  # as the service's worker runs
    bundle = load_champion(models_dir, task)
    predictors = [p for p, _ in prepare_patients(get_task(task).schema, batch_of(patients))]
    predict_patients(bundle, predictors[:10], with_contributions=False)  # warm the bundle's caches
    best = math.inf
    for _ in range(MODEL_TIME_PASSES):
        start = time.perf_counter()
        predict_patients(bundle, predictors, with_contributions=False)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(predictors)


def bare_cases(patients: list[dict[str, Any]]) -> list[Case]:
    return [Case("predict", "`/predict` (contributions, intervals)", [Call.post("/predict", p) for p in patients]),
            Case("predict_plain", "`/predict?contributions=false`",
                 [Call.post("/predict?contributions=false", p) for p in patients])]


def mlflow_cases(task: str, patients: list[dict[str, Any]]) -> list[Case]:
    return [Case("invocations", "`/invocations`, 1 patient (probabilities at the horizons only)",
                 [Call.post("/invocations", mlflow_payload(task, [p])) for p in patients])]


# --- answers --------------------------------------------------------------------------------------------------

def answer_probabilities(answer: Any) -> dict[tuple[str, int], float]:
    """(endpoint, months) -> probability from a service-shaped answer ({} when it is not one)."""
    try:
        return {(name, int(h["months"])): float(h["probability"]) for name, endpoint in answer["endpoints"].items()
                for h in endpoint["horizons"] if h["probability"] is not None}
    except (KeyError, TypeError, ValueError):
        return {}


def mlflow_probabilities(answer: Any) -> dict[tuple[str, int], float]:
    try:
        [row] = answer["predictions"]
        result = {}
        for column, value in row.items():
            name, months = column.rsplit("_", 1)
            if value is not None:
                result[(name, int(months.removesuffix("m")))] = float(value)
        return result
    except (KeyError, TypeError, ValueError):
        return {}


def _valid(probabilities: dict[tuple[str, int], float]) -> bool:
    return bool(probabilities) and all(0.0 <= p <= 1.0 for p in probabilities.values())


# --- measuring ------------------------------------------------------------------------------------------------

def measure(server: Server, cases: list[Case], probe: tuple[str, Any], read: Any, settings: Settings) -> Measured:
    """Cold start to the first valid answer of `probe`, then each case warmed up and run at each concurrency,
    then the process tree's memory. Stops the server."""
    path, body = probe
    sample: dict[tuple[str, int], float] = {}

    def good(s: Server) -> bool:
        status, answer = s.call(path, body, timeout=30)
        if status == 200 and _valid(read(answer)):
            sample.update(read(answer))
            return True
        if 400 <= status < 500:  # the server is up but refuses the probe: waiting will not help
            raise RuntimeError(f"{s.name} answered {status} to {path}: {str(answer)[:500]}")
        return False

    try:
        cold = server.wait_until(good)
        _progress(f"  {server.name}: first good answer after {cold:.1f} s")
        for case in cases:
            warm = run_load(server.host, server.port, case.calls, concurrency=1,
                            max_requests=settings.warmup_requests, max_seconds=settings.warmup_seconds)
            if warm.errors:
                raise RuntimeError(f"{server.name} {case.key}: warm-up errors {warm.error_samples}\n"
                                   f"{server.log_tail()}")
            for concurrency in CONCURRENCIES:
                result = run_load(server.host, server.port, case.calls, concurrency=concurrency,
                                  max_requests=settings.requests, max_seconds=settings.seconds)
                case.results[concurrency] = result
                _progress(f"  {server.name} {case.key} c={concurrency}: {result.ok} ok, {result.errors} errors, "
                          f"p50 {result.percentile_ms(50):.1f} ms" + (f" {result.error_samples[:1]}"
                                                                       if result.errors else ""))
            case.memory_after = server.memory()
        memory = server.memory()
    finally:
        server.stop()
    return Measured(server.name, cases, cold, memory, sample)


def bench_task(task: str, models_dir: Path, settings: Settings) -> dict[str, Any]:
    pointer = json.loads((models_dir / task / "champion.json").read_text())
    patients = bench_patients(task)
    slug = task.replace("_", "-")
    measured: dict[str, Measured] = {}
    _progress(f"{task}: model time of a {BATCH_PATIENTS:,}-patient batch, in process")
    model_ms = batch_model_ms(task, models_dir, patients)
    with tempfile.TemporaryDirectory(prefix=f"bench-{task}-") as tmp:
        workdir = Path(tmp)
        only_task = task_models_dir(models_dir, task, workdir)
        _progress(f"{task}: service")
        service = start_service(only_task, workdir)
        measured["service"] = measure(service, service_cases(task, patients, service.headers),
                                      (f"/v1/{slug}/predict", patients[0]), answer_probabilities, settings)
        _progress(f"{task}: bare FastAPI")
        measured["bare"] = measure(start_bare(only_task, task, workdir), bare_cases(patients),
                                   ("/predict", patients[0]), answer_probabilities, settings)
        _progress(f"{task}: mlflow models serve")
        measured["mlflow"] = measure(start_mlflow(task, workdir), mlflow_cases(task, patients),
                                     ("/invocations", mlflow_payload(task, patients[:1])), mlflow_probabilities,
                                     settings)
    return {"task": task, "pointer": pointer, "registry_run_id": registry_champion_run_id(task),
            "patients": len(patients), "measured": measured, "batch_model_ms": model_ms}


def registry_champion_run_id(task: str) -> str | None:
    """The run id behind `models:/<task>@champion` in a SQLite registry (None when it cannot be read)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    path = path if path.is_absolute() else REPO / path
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT v.run_id FROM registered_model_aliases a JOIN model_versions v "
                             "ON v.name = a.name AND v.version = a.version WHERE a.name = ? AND a.alias = ?",
                             (task, "champion")).fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None


# --- the report ---------------------------------------------------------------------------------------------

def _ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rate(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _status(met: bool | None) -> str:
    return "–" if met is None else "**met**" if met else "**missed**"


def _at_most(value: float, limit: float) -> bool | None:
    return None if math.isnan(value) else value <= limit


def _at_least(value: float, limit: float) -> bool | None:
    return None if math.isnan(value) else value >= limit


def task_report(report: dict[str, Any]) -> str:
    task, measured = report["task"], report["measured"]
    pointer = report["pointer"]
    lines = [f"### {task} (champion version {pointer['version']}, run {pointer['run_id']})", ""]
    registry = report["registry_run_id"]
    if registry and registry != pointer["run_id"]:
        lines += [f"Note: the registry's `{task}@champion` is run {registry}, not the exported champion: "
                  "`mlflow models serve` served a different model.", ""]
    names = {"service": "BentoML service", "bare": "bare FastAPI", "mlflow": "`mlflow models serve`"}
    lines += ["| server | case | p50 c=1 (ms) | p99 c=1 (ms) | p50 c=8 (ms) | p99 c=8 (ms) | "
              "throughput c=8 (/s) | requests c=1 / c=8 | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, m in measured.items():
        for case in m.cases:
            counts = " / ".join(str(case.results[c].ok + case.results[c].errors) for c in CONCURRENCIES)
            errors = sum(r.errors for r in case.results.values())
            unit = " patients" if case.patients_per_request > 1 else ""
            lines.append(f"| {names[key]} | {case.label} | {_ms(case.p_ms(1, 50))} | {_ms(case.p_ms(1, 99))} | "
                         f"{_ms(case.p_ms(8, 50))} | {_ms(case.p_ms(8, 99))} | {_rate(case.throughput(8))}{unit} | "
                         f"{counts} | {errors} |")
    lines += ["", "| server | cold start (s) | worker RSS after one-patient cases (MiB) | worker RSS at the end (MiB) "
                  "| RSS of the process tree at the end (MiB) | processes |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, m in measured.items():
        lines.append(f"| {names[key]} | {m.cold_start_s:.1f} | {m.single_patient_worker_mib:.0f} | "
                     f"{m.memory['largest_mib']:.0f} | {m.memory['total_mib']:.0f} | {m.memory['processes']} |")
    lines += ["", *consistency(measured), "", *goals_table(measured, task, report["batch_model_ms"]), ""]
    return "\n".join(lines)


def consistency(measured: dict[str, Measured]) -> list[str]:
    reference = measured["service"].sample
    differences = {}
    for key in ("bare", "mlflow"):
        other = measured[key].sample
        shared = set(reference) & set(other)
        differences[key] = (max((abs(reference[k] - other[k]) for k in shared), default=float("nan")), len(shared))
    same = all(n > 0 and d < 1e-9 for d, n in differences.values())
    detail = "; ".join(f"{key}: max |Δ| {d:.1e} over {n} probabilities" for key, (d, n) in differences.items())
    return [f"Same probabilities for the example patient from all three: {'yes' if same else '**no**'} ({detail})."]


def goals_table(measured: dict[str, Measured], task: str, batch_model_ms: float) -> list[str]:
    """The task's issue-18 goals, then the service-wide ones; each with the figure it is judged on."""
    return ["| goal | figure | status |", "|---|---|---|",
            *(f"| {goal} | {figure} | {_status(met)} |"
              for goal, figure, met in [*task_goal_rows(measured, task, batch_model_ms), *service_goal_rows(measured)])]


def task_goal_rows(measured: dict[str, Measured], task: str, batch_model_ms: float
                   ) -> list[tuple[str, str, bool | None]]:
    goals = TASK_GOALS.get(task, DEFAULT_TASK_GOALS)
    source = "issue 18" if task in TASK_GOALS else "service-wide"
    service = {c.key: c for c in measured["service"].cases}
    bare = {c.key: c for c in measured["bare"].cases}
    [mlflow] = measured["mlflow"].cases
    full = service["predict"].p_ms(1, 50)
    rows = []
    if "p50_full_ms" in goals:
        rows.append((f"{source}: full answer p50 at c=1 ≤ {goals['p50_full_ms']:g} ms",
                     f"{_ms(full)} ms (`/predict`: contributions, intervals)", _at_most(full, goals["p50_full_ms"])))
    if "bare_ratio" in goals:
        ratio = full / bare["predict"].p_ms(1, 50)
        ratio_plain = service["predict_plain"].p_ms(1, 50) / bare["predict_plain"].p_ms(1, 50)
        rows += [(f"{source}: full answer p50 within {goals['bare_ratio']:g}× the bare FastAPI app",
                  f"{ratio:.2f}× (`/predict`)", _at_most(ratio, goals["bare_ratio"])),
                 (f"{source}: p50 within {goals['bare_ratio']:g}× the bare FastAPI app, no explanations",
                  f"{ratio_plain:.2f}× (`?contributions=false` on both)", _at_most(ratio_plain, goals["bare_ratio"]))]
    throughput = service["predict"].throughput(8) / mlflow.throughput(8)
    throughput_plain = service["predict_plain"].throughput(8) / mlflow.throughput(8)
    rows += [(f"{source}: throughput ≥ {goals['mlflow_throughput_ratio']:g}× `mlflow models serve`",
              f"{throughput:.2f}× (`/predict` at c=8)", _at_least(throughput, goals["mlflow_throughput_ratio"])),
             (f"{source}: throughput ≥ {goals['mlflow_throughput_ratio']:g}× `mlflow models serve`, no explanations",
              f"{throughput_plain:.2f}× (`/predict?contributions=false` at c=8)",
              _at_least(throughput_plain, goals["mlflow_throughput_ratio"]))]
    if "batch_model_ms" in goals:
        rows.append((f"{source}: {BATCH_PATIENTS:,}-patient batch ≤ {goals['batch_model_ms']:g} ms of model time "
                     "per patient", f"{batch_model_ms:.3f} ms (in process; over HTTP "
                                    f"{_ms(service['batch_plain'].p_ms(1, 50))} ms at c=1)",
                     _at_most(batch_model_ms, goals["batch_model_ms"])))
    return rows


def service_goal_rows(measured: dict[str, Measured]) -> list[tuple[str, str, bool | None]]:
    service = {c.key: c for c in measured["service"].cases}
    plain, explained = service["predict_plain"].p_ms(1, 50), service["predict"].p_ms(1, 50)
    chosen_explain = service["predict_explain"].p_ms(1, 50)
    cold, worker = measured["service"].cold_start_s, measured["service"].memory["largest_mib"]
    worker_single = measured["service"].single_patient_worker_mib
    return [
        (f"service-wide: p50 at c=1 without explanations ≤ {GOALS['p50_plain_ms']:g} ms",
         f"{_ms(plain)} ms (`/predict?contributions=false`)", _at_most(plain, GOALS["p50_plain_ms"])),
        (f"service-wide: p50 at c=1 with explanations and intervals ≤ {GOALS['p50_explained_ms']:g} ms",
         f"{_ms(explained)} ms (`/predict`, default explanation)", _at_most(explained, GOALS["p50_explained_ms"])),
        (f"service-wide: p50 at c=1 with a chosen explanation ≤ {GOALS['p50_explained_ms']:g} ms",
         f"{_ms(chosen_explain)} ms (`/predict` with `explain`)", _at_most(chosen_explain, GOALS["p50_explained_ms"])),
        (f"service-wide: cold start ≤ {GOALS['cold_start_s']:g} s", f"{cold:.1f} s",
         _at_most(cold, GOALS["cold_start_s"])),
        (f"service-wide: ≤ {GOALS['worker_mib']:g} MiB per worker",
         f"{worker:.0f} MiB at the end, after the batch cases ({worker_single:.0f} MiB after the one-patient cases)",
         _at_most(worker, GOALS["worker_mib"])),
    ]


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cores} cores ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}; "
            f"load average at start {load}")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def render(reports: list[dict[str, Any]], settings: Settings, started: datetime) -> str:
    packages = ("bentoml", "fastapi", "uvicorn", "mlflow", "xgboost-cpu")
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    header = [
        f"## Serving benchmark, {started:%Y-%m-%d %H:%M}" + (" (quick run)" if settings.quick else ""),
        "",
        f"- Machine: {machine_line()}.",
        f"- Versions: {versions}.",
        f"- Load: closed loop on loopback, one keep-alive HTTP/1.1 connection per client thread (the client runs "
        f"on the same cores); per case and concurrency at most {settings.requests} requests and "
        f"{settings.seconds:g} s, after {settings.warmup_requests} warm-up requests. Throughput is at concurrency 8 "
        "(saturation here). One server at a time, each started cold with one worker.",
        "- Cold start: process start to the first 200 with a valid answer. Memory: RSS of the server's largest "
        "process (the worker) after the one-patient cases and at the end (after the batch cases), and RSS summed "
        "over its process tree at the end.",
        "- `mlflow models serve` runs the registry's pyfunc, which computes the probabilities at the horizons only "
        "(no curves, intervals, risk group, contributions or warnings).",
        "",
    ]
    return "\n".join(header + [task_report(r) for r in reports])


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_out(started: datetime, quick: bool) -> Path:
    """benchmarks/results/<date>[-quick].md, or with the start time when that day already has one: a second run
    the same day must not overwrite the first (they may hold other code or champions)."""
    folder = REPO / "benchmarks" / "results"
    suffix = "-quick" if quick else ""
    out = folder / f"{started:%Y-%m-%d}{suffix}.md"
    return folder / f"{started:%Y-%m-%d-%H%M}{suffix}.md" if out.exists() else out


def main(argv: list[str] | None = None) -> int:
    from features.tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", choices=sorted(TASKS),
                        help="task to benchmark (repeatable; default: cml_tfr and all_hsct, those with a champion)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few requests, seconds per case)")
    parser.add_argument("--requests", type=int, help="at most this many requests per case and concurrency")
    parser.add_argument("--seconds", type=float, help="at most this many seconds per case and concurrency")
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR", REPO / "models")))
    parser.add_argument("--out", type=Path, help="markdown file to write (default benchmarks/results/<date>.md, "
                                                 "<date>-quick.md with --quick; with the start time when that "
                                                 "file exists)")
    args = parser.parse_args(argv)
    settings = Settings(requests=args.requests or (200 if args.quick else 5000),
                        seconds=args.seconds or (3.0 if args.quick else 20.0),
                        warmup_requests=5 if args.quick else 50, warmup_seconds=3.0 if args.quick else 10.0,
                        quick=args.quick)
    tasks = args.task or [t for t in DEFAULT_TASKS if (args.models_dir / t / "champion.json").exists()]
    missing = [t for t in tasks if not (args.models_dir / t / "champion.json").exists()]
    if not tasks or missing:
        print(f"no champion in {args.models_dir}/ for {', '.join(missing or DEFAULT_TASKS)}: run `make train` first",
              file=sys.stderr)
        return 1
    started = datetime.now()
    reports = [bench_task(task, args.models_dir, settings) for task in tasks]
    text = render(reports, settings, started)
    print(text)
    out = args.out or default_out(started, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
