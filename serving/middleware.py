"""One ASGI middleware in front of every route: request id, body size limit, API keys, audit line and metrics.

- Every response carries `X-Request-ID` (made here, never taken from the client, so it cannot carry a value).
- The body is read here, up to the route's limit (413 past it, whatever Content-Length claims), and replayed to
  the route; the audit digest is computed from it. Bodies are never logged.
- `/v1/...` and `/admin/...` need `Authorization: Bearer <key>` (401 otherwise); health routes stay open.
- An unexpected exception becomes a 500 in the error shape; the log gets its type and place, never its message
  (which could quote a value).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match

from serving.answers import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES
from serving.audit import AuditTrail
from serving.auth import key_id_for
from serving.metrics import service_metrics

PROTECTED_PREFIXES = ("/v1/", "/admin/")
logger = logging.getLogger("serving.requests")


def body_limit(path: str) -> int:
    return MAX_BATCH_BODY_BYTES if path.endswith("/predict-batch") else MAX_BODY_BYTES


def _error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> bytes:
    return json.dumps({"code": code, "message": message, "fields": fields or []}).encode()


class ServiceMiddleware:
    def __init__(self, app: Any, *, keys: dict[str, str], routes: Sequence[BaseRoute],
                 audit: AuditTrail | None = None, clock: Callable[[], float] = time.perf_counter):
        self.app = app
        self.keys = keys  # read at each request: a service may fill it after building the app
        self.routes = routes
        self.audit = audit
        self.clock = clock

    def route_of(self, scope: dict[str, Any]) -> str:
        """The route template a request addresses ("unmatched" for none), never the raw path."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return getattr(route, "path", "unmatched")
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
        limit = body_limit(scope["path"])
        outcome: dict[str, Any] = {"status": 500, "started": False, "recorded": False, "key_id": None,
                                   "body": b"", "too_large": False}

        def record() -> None:
            """Metrics and the audit line, once, before the last byte of the answer leaves."""
            if outcome["recorded"]:
                return
            outcome["recorded"] = True
            seconds = self.clock() - started
            service_metrics().observe_request(route, scope["method"], int(outcome["status"]), seconds)
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

        async def respond(status: int, body: bytes) -> None:
            await send_with_id({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})

        try:
            outcome["body"], outcome["too_large"] = await _read_body(scope, receive, limit)
            if outcome["too_large"]:
                await respond(413, _error_body("request_too_large", f"request body exceeds the limit of {limit} "
                                                                    f"bytes for this route"))
                return
            protected = scope["path"].startswith(PROTECTED_PREFIXES)
            outcome["key_id"] = key_id_for(_header(scope, b"authorization"), self.keys) if protected else None
            if protected and outcome["key_id"] is None:
                await respond(401, _error_body(
                    "unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
                    [{"location": "header.authorization", "reason": "missing or not a known key"}]))
            else:
                await self.app(scope, _replay(outcome["body"], receive), send_with_id)
        except Exception as exc:  # noqa: BLE001 - never let a request end without an answer in the error shape
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename}:{frame.lineno}" if frame else "?"
            logger.error("request %s to %s failed: %s at %s", request_id, route, type(exc).__name__, where)
            if not outcome["started"]:
                await respond(500, _error_body("internal_error", f"the service failed on this request; quote "
                                                                 f"request id {request_id}"))
        finally:
            record()

    def _audit(self, state: dict[str, Any], request_id: str, method: str, route: str, outcome: dict[str, Any],
               seconds: float) -> None:
        assert self.audit is not None
        body, too_large = outcome["body"], outcome["too_large"]
        entry = {"request_id": request_id, "method": method, "route": route, "key_id": outcome["key_id"],
                 "status": outcome["status"], "latency_ms": round(1000 * seconds, 3),
                 "input_digest": None if too_large or not body else self.audit.digest(body),
                 "input_bytes": None if too_large else len(body),
                 **state.get("audit", {})}
        try:
            self.audit.record(entry)
        except OSError as exc:
            logger.error("request %s: audit line not written (%s)", request_id, type(exc).__name__)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope: dict[str, Any], receive: Any, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (partial, True) once it passes `limit` bytes (Content-Length is checked first)."""
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        return b"", True
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Any) -> Any:
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
