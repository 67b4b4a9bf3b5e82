"""A small closed-loop load generator: N threads, each with its own keep-alive HTTP/1.1 connection
(`http.client`, no extra dependency), bounded both in requests and in seconds, whichever ends first."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Call:
    """One request to send: POST `path` with a JSON body (already encoded)."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def post(cls, path: str, payload: Any, headers: dict[str, str] | None = None) -> Call:
        return cls(path, json.dumps(payload).encode(), tuple((headers or {}).items()))


@dataclass
class LoadResult:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)  # successful requests only
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000.0) if self.latencies_s else float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second over the run."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def run_load(host: str, port: int, calls: list[Call], *, concurrency: int, max_requests: int, max_seconds: float,
             timeout: float = 60.0) -> LoadResult:
    """Send `calls` round-robin from `concurrency` threads until `max_requests` were started or `max_seconds`
    passed. A request counts as an error unless it answers 200."""
    result = LoadResult(concurrency)
    counter = itertools.count()
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        latencies: list[float] = []
        errors, samples = 0, []
        start.wait()
        while True:
            index = next(counter)
            if index >= max_requests or time.perf_counter() >= deadline[0]:
                break
            call = calls[index % len(calls)]
            began = time.perf_counter()
            try:
                connection.request("POST", call.path, body=call.body,
                                   headers={"Content-Type": "application/json", **dict(call.headers)})
                response = connection.getresponse()
                body = response.read()
                if response.status == 200 and body:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(f"{response.status}: {body[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                errors += 1
                if len(samples) < 3:
                    samples.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.close()
        with lock:
            result.latencies_s.extend(latencies)
            result.errors += errors
            result.error_samples.extend(samples[: max(0, 3 - len(result.error_samples))])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + max_seconds
    start.wait()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - began
    return result
