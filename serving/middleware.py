"""One ASGI middleware in front of every route: request id, body size and time limits, API keys and their roles,
audit line and metrics; and `AppFirst`, which keeps BentoML's router from answering anything but its probes.

- Every response carries `X-Request-ID` (made here, never taken from the client, so it cannot carry a value).
- The body is read here, up to the route's limit (413 past it, whatever Content-Length claims) and within
  `body_timeout_seconds` (408 past it: a client that announces more bytes than it sends cannot hold a request
  open), and replayed to the route; the audit digest is computed from it. Bodies are never logged.
- `/v1/...` needs `Authorization: Bearer <key>` of a key with the role `predict`, `/admin/...` one with `admin`
  (401 without a known key, 403 with a key that lacks the role); `/metrics` is open, needs a key with `metrics`
  or `admin`, or is not served, as `METRICS_ACCESS` says. Health routes stay open.
- Metrics and audit record what the client got: the status sent, 408/413 with the key id when one was sent, 504
  when the server's request timeout cancelled the request, 499 when the client went away before its body was in.
- An unexpected exception becomes a 500 in the error shape; the log gets its type and place, never its message
  (which could quote a value).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Match

from serving.answers import BODY_TIMEOUT_SECONDS, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, REQUEST_TIMEOUT_SECONDS
from serving.audit import AuditTrail
from serving.auth import key_id_for, roles_of
from serving.metrics import service_metrics

PROTECTED_PREFIXES = ("/v1/", "/admin/")
METRICS_PATH = "/metrics"
METRICS_ACCESS_CHOICES = ("open", "key", "off")
NOT_FOUND = "no route at this path (the routes are listed at /docs)"
CLIENT_CLOSED = 499  # the client went away before its body was in: no answer was sent (nginx's code for it)
logger = logging.getLogger("serving.requests")


@dataclass(frozen=True)
class AccessSettings:
    """How /metrics is served and how long a body may take to arrive; `from_env` reads METRICS_ACCESS and
    REQUEST_BODY_TIMEOUT_SECONDS and refuses a value it does not understand (the service then does not start)."""

    metrics: str = "open"
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.metrics not in METRICS_ACCESS_CHOICES:
            raise ValueError(f"METRICS_ACCESS must be one of {', '.join(METRICS_ACCESS_CHOICES)}")
        if not 0 < self.body_timeout_seconds < REQUEST_TIMEOUT_SECONDS:
            raise ValueError(f"REQUEST_BODY_TIMEOUT_SECONDS must be above 0 and below the request timeout "
                             f"({REQUEST_TIMEOUT_SECONDS:g} s)")

    @classmethod
    def from_env(cls) -> AccessSettings:
        timeout = os.environ.get("REQUEST_BODY_TIMEOUT_SECONDS", "").strip()
        try:
            seconds = float(timeout) if timeout else BODY_TIMEOUT_SECONDS
        except ValueError:
            raise ValueError("REQUEST_BODY_TIMEOUT_SECONDS must be a number of seconds") from None
        return cls(metrics=os.environ.get("METRICS_ACCESS", "open").strip().lower() or "open",
                   body_timeout_seconds=seconds)


def body_limit(path: str) -> int:
    return MAX_BATCH_BODY_BYTES if path.endswith("/predict-batch") else MAX_BODY_BYTES


def required_role(path: str, metrics_access: str) -> str | None:
    """The role a key needs for this path (None: the path is open)."""
    if path.startswith("/v1/"):
        return "predict"
    if path.startswith("/admin/"):
        return "admin"
    if path == METRICS_PATH and metrics_access == "key":
        return "metrics"
    return None


def may(role: str, roles: frozenset[str]) -> bool:
    return role in roles or (role == "metrics" and "admin" in roles)


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> bytes:
    return json.dumps({"code": code, "message": message, "fields": fields or []}).encode()


class ServiceMiddleware:
    def __init__(self, app: Any, *, keys: dict[str, str], routes: Sequence[BaseRoute],
                 audit: AuditTrail | None = None, roles: dict[str, frozenset[str]] | None = None,
                 settings: AccessSettings | None = None, clock: Callable[[], float] = time.perf_counter):
        self.app = app
        self.keys = keys  # read at each request: a service may fill it (and roles) after building the app
        self.roles = roles if roles is not None else {}
        self.routes = routes
        self.audit = audit
        self.settings = settings or AccessSettings()
        self.clock = clock
        # (method, path) -> template, only for a path that is itself a route's template: bounded by the routes,
        # whatever paths clients send. Matching every route took ~30 us of each request.
        self._known: dict[tuple[str, str], str] = {}

    def route_of(self, scope: dict[str, Any]) -> str:
        """The route template a request addresses ("unmatched" for none), never the raw path."""
        key = (scope["method"], scope["path"])
        if key in self._known:
            return self._known[key]
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                template = getattr(route, "path", "unmatched")
                if template == scope["path"]:
                    self._known[key] = template
                return template
        return "unmatched"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        route = self.route_of(scope)
        needed = required_role(scope["path"], self.settings.metrics)
        outcome: dict[str, Any] = {"status": 500, "started": False, "recorded": False, "body": b"",
                                   "body_state": "complete", "key_id": None}
        if needed:  # before the body, so that a request refused for its body still records whose it was
            outcome["key_id"] = key_id_for(_header(scope, b"authorization"), self.keys)
        metrics = service_metrics()

        def record() -> None:
            """Metrics and the audit line, once, before the last byte of the answer leaves."""
            if outcome["recorded"]:
                return
            outcome["recorded"] = True
            seconds = self.clock() - started
            metrics.observe_request(route, scope["method"], int(outcome["status"]), seconds)
            if self.audit is not None:
                self._audit(state, request_id, scope["method"], route, outcome, seconds)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                outcome["status"], outcome["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()
            await send(message)

        async def respond(status: int, body: bytes, close: bool = False) -> None:
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send_with_id({"type": "http.response.start", "status": status,
                                "headers": headers + ([(b"connection", b"close")] if close else [])})
            await send_with_id({"type": "http.response.body", "body": body})

        in_progress = metrics.in_progress(route)
        in_progress.inc()
        try:
            outcome["body"], outcome["body_state"] = await _read_body(
                scope, receive, body_limit(scope["path"]), self.settings.body_timeout_seconds)
            if outcome["body_state"] == "disconnected":
                outcome["status"] = CLIENT_CLOSED
                return
            refusal = self._refusal(scope["path"], needed, outcome)
            if refusal:
                await respond(*refusal)
            else:
                await self.app(scope, _replay(outcome["body"], receive), send_with_id)
        except asyncio.CancelledError:
            # BentoML's request timeout cancels the request and answers 504 itself.
            if not outcome["started"]:
                outcome["status"] = 504
            raise
        except Exception as exc:  # noqa: BLE001 - never let a request end without an answer in the error shape
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename}:{frame.lineno}" if frame else "?"
            logger.error("request %s to %s failed: %s at %s", request_id, route, type(exc).__name__, where)
            if not outcome["started"]:
                await respond(500, error_body("internal_error", f"the service failed on this request; quote "
                                                                f"request id {request_id}"))
        finally:
            in_progress.dec()
            record()

    def _refusal(self, path: str, needed: str | None, outcome: dict[str, Any]) -> tuple[int, bytes, bool] | None:
        """(status, error body, close the connection) when the request is refused before its route, else None."""
        body_state, key_id = outcome["body_state"], outcome["key_id"]
        if body_state == "too_large":
            return 413, error_body("request_too_large", f"request body exceeds the limit of {body_limit(path)} "
                                                        "bytes for this route"), False
        if body_state == "timeout":
            seconds = f"{self.settings.body_timeout_seconds:g}"
            where = [{"location": "body", "reason": f"incomplete after {seconds} s"}]
            return 408, error_body("request_timeout", f"the request body did not arrive within {seconds} s "
                                                      "(shorter than its Content-Length?)", where), True
        if path == METRICS_PATH and self.settings.metrics == "off":
            return 404, error_body("not_found", NOT_FOUND), False
        if needed and key_id is None:
            where = [{"location": "header.authorization", "reason": "missing or not a known key"}]
            return 401, error_body("unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
                                   where), False
        if needed and not may(needed, roles_of(key_id, self.roles)):
            roles = "`metrics` or `admin`" if needed == "metrics" else f"`{needed}`"
            where = [{"location": "header.authorization", "reason": f"key lacks the role {roles}"}]
            return 403, error_body("forbidden", f"this key may not use this route: it needs the role {roles} in "
                                                "the API key file", where), False
        return None

    def _audit(self, state: dict[str, Any], request_id: str, method: str, route: str, outcome: dict[str, Any],
               seconds: float) -> None:
        assert self.audit is not None
        body, complete = outcome["body"], outcome["body_state"] == "complete"
        entry = {"request_id": request_id, "method": method, "route": route, "key_id": outcome["key_id"],
                 "status": outcome["status"], "latency_ms": round(1000 * seconds, 3),
                 "input_digest": self.audit.digest(body) if complete and body else None,
                 "input_bytes": len(body) if complete else None,
                 **state.get("audit", {})}
        try:
            self.audit.record(entry)
        except OSError as exc:
            logger.error("request %s: audit line not written (%s)", request_id, type(exc).__name__)


class AppFirst:
    """ASGI middleware for the BentoML service (`Service.add_asgi_middleware(AppFirst, own_app=app)`): every HTTP
    request goes to our app, except GET and HEAD of BentoML's probes (`/livez`, `/healthz`, `/readyz`).

    BentoML's router would otherwise answer `/` with its own index page and unknown paths and wrong methods with
    plain-text errors without a request id; here they get the app's page and its error shape, and are counted
    under the route `unmatched`. (BentoML's own request metrics, which label requests with the raw path, are turned
    off in the service's configuration: see serving/service.py.)"""

    PROBES = frozenset({"/livez", "/healthz", "/readyz"})

    def __init__(self, app: Any, *, own_app: Any) -> None:
        self.app = app
        self.own_app = own_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not (scope["path"] in self.PROBES and scope["method"] in ("GET", "HEAD")):
            await self.own_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope: dict[str, Any], receive: Any, limit: int, timeout: float) -> tuple[bytes, str]:
    """(body, "complete"), or (b"", "too_large" | "timeout" | "disconnected"). Content-Length is checked first;
    the whole body must arrive within `timeout` seconds."""
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        return b"", "too_large"
    if length is None and _header(scope, b"transfer-encoding") is None:
        return await _receive_body(receive, limit)  # no body announced: nothing to wait for (most GETs)
    try:
        async with asyncio.timeout(timeout):
            return await _receive_body(receive, limit)
    except TimeoutError:
        return b"", "timeout"


async def _receive_body(receive: Any, limit: int) -> tuple[bytes, str]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", "disconnected"
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", "too_large"
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), "complete"


def _replay(body: bytes, receive: Any) -> Any:
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
