"""Prometheus metrics of the service: per-route latency histograms, predictions per model version, warnings
and reloads. On the real server they appear at BentoML's `/metrics` beside its own (which it collects from
every worker); the bare app serves them at its own `/metrics`.

prometheus_client is imported on first use, never when this module is imported: BentoML's workers set
PROMETHEUS_MULTIPROC_DIR after importing the service module, and prometheus_client picks its multiprocess mode
when it is first imported.
"""

from __future__ import annotations

import os
import threading
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.request_seconds = Histogram(
            "relapse_risk_request_duration_seconds", "Request latency by route template, method and status",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS)
        self.predictions = Counter(
            "relapse_risk_predictions", "Patients answered with a probability, one per patient, by task, model "
            "version and route (predict, predict-batch, explain, stop-timing; a refused patient is not counted)",
            ["task", "model_version", "route"])
        self.warnings = Counter(
            "relapse_risk_prediction_warnings", "Warnings given with answers, by task, model version and code",
            ["task", "model_version", "code"])
        self.reloads = Counter(
            "relapse_risk_model_reloads", "Champion checks that loaded a new version or failed to, by task",
            ["task", "outcome"])

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(route=route, method=method, status=str(status)).observe(seconds)

    def count_answers(self, route: str, answers: list[dict[str, Any]]) -> None:
        """One prediction per patient answered (a stop-timing answer with its four options is one patient) and
        the warnings that answer gave about the patient."""
        for answer in answers:
            task, version = answer["task"], str(answer["model"]["version"])
            self.predictions.labels(task=task, model_version=version, route=route).inc()
            for warning in answer["warnings"]:
                self.warnings.labels(task=task, model_version=version, code=warning["code"]).inc()

    def count_reloads(self, reports: list[dict[str, Any]]) -> None:
        for report in reports:
            if report["status"] in ("loaded", "failed"):
                self.reloads.labels(task=report["task"], outcome=report["status"]).inc()


_metrics: ServiceMetrics | None = None
_lock = threading.Lock()


def service_metrics() -> ServiceMetrics:
    """The process's one set of metrics (created on first use)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = ServiceMetrics()
    return _metrics


def exposition() -> tuple[bytes, str]:
    """The metrics text (every worker's when running under BentoML's multiprocess collector) and its type."""
    import prometheus_client

    service_metrics()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
