"""`make soak`: this service under steady load (default concurrency 32 for 60 s) on loopback.

Counts errors (must be 0: the exit status is 1 otherwise) and compares the resident memory of the server's process
tree after a warm-up at full concurrency with its memory at the end (goal: growth under 10 %). Requests cycle
through the benchmark's patients on `/predict`, a quarter of them with an explicit `explain`.

Usage: python -m benchmarks.soak [--task cml_tfr] [--concurrency 32] [--seconds 60]
"""

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from benchmarks.load import Call, run_load
from benchmarks.serve_bench import answer_probabilities, bench_patients, explain_option
from benchmarks.servers import REPO, start_service, task_models_dir

GROWTH_GOAL_PERCENT = 10.0
SAMPLE_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cml_tfr")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR", REPO / "models")))
    args = parser.parse_args(argv)
    if not (args.models_dir / args.task / "champion.json").exists():
        print(f"no champion for {args.task} in {args.models_dir}/: run `make train` first", file=sys.stderr)
        return 1
    slug = args.task.replace("_", "-")
    patients = bench_patients(args.task)
    explain = explain_option(args.task)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        server = start_service(task_models_dir(args.models_dir, args.task, workdir), workdir)
        try:
            cold = server.wait_until(lambda s: bool(answer_probabilities(
                s.call(f"/v1/{slug}/predict", patients[0])[1])))
            calls = [Call.post(f"/v1/{slug}/predict", {**p, "explain": explain} if i % 4 == 3 else p, server.headers)
                     for i, p in enumerate(patients * 2)]
            warm = run_load(server.host, server.port, calls, concurrency=args.concurrency,
                            max_requests=10 ** 9, max_seconds=args.warmup_seconds)
            start = server.memory()
            samples: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_memory, args=(server, samples, stop), daemon=True)
            sampler.start()
            result = run_load(server.host, server.port, calls, concurrency=args.concurrency,
                              max_requests=10 ** 9, max_seconds=args.seconds)
            stop.set()
            sampler.join()
            end = server.memory()
        finally:
            server.stop()
    growth = 100.0 * (end["total_mib"] / start["total_mib"] - 1.0)
    worker_growth = 100.0 * (end["largest_mib"] / start["largest_mib"] - 1.0)
    errors = result.errors + warm.errors
    print(f"soak: {args.task}, BentoML service, concurrency {args.concurrency} for {args.seconds:g} s "
          f"(after {args.warmup_seconds:g} s warm-up; first good answer {cold:.1f} s after start)")
    print(f"  requests      {result.ok + result.errors} ({result.throughput:.1f}/s), "
          f"p50 {result.percentile_ms(50):.1f} ms, p99 {result.percentile_ms(99):.1f} ms")
    print(f"  errors        {errors} (warm-up {warm.errors})  {'met' if errors == 0 else 'MISSED'} (must be 0)"
          + (f"  e.g. {result.error_samples or warm.error_samples}" if errors else ""))
    print(f"  RSS start     {start['total_mib']:.0f} MiB process tree ({start['processes']} processes), "
          f"worker {start['largest_mib']:.0f} MiB")
    print(f"  RSS end       {end['total_mib']:.0f} MiB process tree ({end['processes']} processes), "
          f"worker {end['largest_mib']:.0f} MiB")
    print(f"  RSS growth    {growth:+.1f} % (worker {worker_growth:+.1f} %)  "
          f"{'met' if growth < GROWTH_GOAL_PERCENT else 'MISSED'} (goal < {GROWTH_GOAL_PERCENT:g} %)")
    print(f"  RSS every {SAMPLE_SECONDS:g} s (process tree, MiB): {' '.join(f'{m:.0f}' for m in samples)}")
    half = samples[len(samples) // 2:]
    if len(half) >= 2:
        print(f"  second half   {100.0 * (half[-1] / half[0] - 1.0):+.1f} % (a leak keeps growing; warm-up levels off)")
    return 0 if errors == 0 else 1


def _sample_memory(server: Any, samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        samples.append(server.memory()["total_mib"])


if __name__ == "__main__":
    sys.exit(main())
