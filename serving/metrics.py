"""Prometheus metrics of the service: per-route latency histograms, requests in progress, predictions per model
version, warnings and reloads, served at the app's `/metrics` (from every worker under BentoML's multiprocess
collector). BentoML's own request metrics are turned off (serving/service.py): they label requests with the raw
path, so every distinct URL a stranger sends would add series for good.

Every label takes a bounded set of values, whatever a client sends: the route template (`unmatched` for none),
the method (`other` past the usual ones), the status, and task, model version and warning code from the bundles.

prometheus_client is imported on first use, never when this module is imported: BentoML's workers set
PROMETHEUS_MULTIPROC_DIR after importing the service module, and prometheus_client picks its multiprocess mode
when it is first imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from risk_model.answers import ExplanationAnswer, PredictionAnswer, StopTimingAnswer

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.request_seconds = Histogram(
            "relapse_risk_request_duration_seconds", "Request latency by route template, method and status",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS)
        self.requests_in_progress = Gauge(
            "relapse_risk_requests_in_progress", "Requests being answered now, by route template", ["route"],
            multiprocess_mode="livesum")
        self._in_progress: dict[str, Any] = {}
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
        method = method if method in METHODS else "other"
        self.request_seconds.labels(route=route, method=method, status=str(status)).observe(seconds)

    def in_progress(self, route: str) -> Any:
        """The gauge of a route (kept: `labels` costs more than the increment, and routes are a bounded set)."""
        gauge = self._in_progress.get(route)
        if gauge is None:
            gauge = self._in_progress[route] = self.requests_in_progress.labels(route=route)
        return gauge

    def count_answers(self, route: str, answers: Sequence[PredictionAnswer | ExplanationAnswer | StopTimingAnswer]
                      ) -> None:
        """One prediction per patient answered (a stop-timing answer with its four options is one patient) and
        the warnings that answer gave about the patient."""
        for answer in answers:
            task, version = answer.task, str(answer.model.version)
            self.predictions.labels(task=task, model_version=version, route=route).inc()
            for warning in answer.warnings:
                self.warnings.labels(task=task, model_version=version, code=warning.code).inc()

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
