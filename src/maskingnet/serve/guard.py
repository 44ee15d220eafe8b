"""Connection limits of ``maskingnet serve``, below the web application: idle or slow sockets cannot starve
the others.

uvicorn alone does not give this (measured with 130 idle sockets against its defaults: every request,
``/healthz`` included, answered a plain-text 503 for as long as they stayed open): nothing bounds the time a
client takes to send a request head (its keep-alive timer runs only between requests, and any byte received
cancels it), and its ``limit_concurrency`` counts idle connections with running requests. So the service
runs uvicorn's h11 protocol (:class:`GuardedH11Protocol`) with three additions:

- **a head deadline**: a connection has ``head_timeout_s`` from its opening, or from the end of its last
  answer, to deliver a complete request head; trickling bytes does not extend it. Past it the connection is
  closed (with a JSON 408 when part of a head had arrived);
- **a request deadline**: from the head to the end of the answer at most ``request_timeout_s`` (a body sent
  slowly, a client that does not read its answer); past it the connection is closed;
- **a connection budget that idle sockets cannot fill**: at most ``max_connections`` open connections; a new
  one at the cap closes the connection idle longest (no request in progress: just opened, between
  requests, or halfway through a head). Only when every connection is busy with a request is a newcomer
  refused, with a JSON 503 (``GET /healthz`` is still answered).

Gaps within a body are bounded by the application (:func:`maskingnet.serve.uploads.bounded_stream`: a JSON
408).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

HEALTH_PATH = "/healthz"
LIMITS_ENV = "MASKINGNET_SERVE_LIMITS"


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server process allows (see the module docstring)."""

    max_connections: int = 128
    head_timeout_s: float = 10.0
    request_timeout_s: float = 120.0


@dataclass
class ConnectionGuard:
    """The open connections of one server process and what was done to keep them within the limits."""

    limits: ConnectionLimits
    open: dict[Any, None] = field(default_factory=dict)
    evicted_idle: int = 0
    refused_busy: int = 0
    head_timeouts: int = 0
    request_timeouts: int = 0

    def admit(self, connection: GuardedH11Protocol) -> bool:
        """Count ``connection`` in; at the cap, close the connection idle longest. False when every other
        connection is busy (the newcomer is to be refused)."""
        self.open[connection] = None
        if len(self.open) <= self.limits.max_connections:
            return True
        idle = [other for other in self.open if other is not connection and other.idle]
        if not idle:
            self.refused_busy += 1
            return False
        min(idle, key=lambda other: other.idle_since).evict()
        self.evicted_idle += 1
        return True

    def leave(self, connection: GuardedH11Protocol) -> None:
        self.open.pop(connection, None)

    def summary(self) -> dict[str, int]:
        """Counters for ``/healthz``."""
        busy = sum(1 for connection in self.open if not connection.idle)
        return {
            "open": len(self.open),
            "busy": busy,
            "max": self.limits.max_connections,
            "evicted_idle": self.evicted_idle,
            "refused_busy": self.refused_busy,
            "head_timeouts": self.head_timeouts,
            "request_timeouts": self.request_timeouts,
        }


_CURRENT: list[ConnectionGuard] = []


def current_guard() -> ConnectionGuard | None:
    """The guard of this server process, once a connection has been made (None before, or in tests that
    run the application without the server)."""
    return _CURRENT[0] if _CURRENT else None


def json_bytes(status: int, reason: str, code: str, detail: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body, closing the connection (written to the socket
    directly when no request was parsed, so h11 has nothing to answer)."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 500: "internal", 503: "busy"}


def error_body(status: int, detail: str) -> bytes:
    return json.dumps({"error": ERROR_CODES.get(status, "error"), "detail": detail}).encode()


def _is_plain_text(headers: Any) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"text/plain") for name, value in headers)


def json_errors(app: Any) -> Any:
    """``app`` whose every error answer is JSON: an exception before the answer started gets a JSON 500 (in
    place of uvicorn's plain-text one), and plain-text error answers from the layers below the service's
    own handlers (Starlette's and uvicorn's 500 and 503) are rewritten as ``{"error", "detail"}``."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        started = False
        held: list[Any] = []  # the start and body chunks of a plain-text error answer, until its end

        async def send_json_errors(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400 and _is_plain_text(message.get("headers", [])):
                    held.append(message)
                    return
            elif message["type"] == "http.response.body" and held:
                held.append(message)
                if not message.get("more_body"):
                    start, *chunks = held
                    held.clear()
                    detail = b"".join(chunk.get("body", b"") for chunk in chunks).decode("utf-8", "replace")
                    await _send_json(send, start["status"], detail.strip()[:1000], start.get("headers", []))
                return
            await send(message)

        try:
            await app(scope, receive, send_json_errors)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when its graceful shutdown times out: a JSON 503 to the
            # client, rather than a 500 and a traceback per request in the log
            if not started:
                detail = "the service is shutting down; retry shortly"
                await _send_json(send, 503, detail, [(b"connection", b"close")])
        except Exception:
            if not started:
                await _send_json(send, 500, "Internal Server Error", [(b"connection", b"close")])
            raise

    return wrapped


async def _send_json(send: Any, status: int, detail: str, headers: Any) -> None:
    body = error_body(status, detail)
    replaced = (b"content-type", b"content-length")
    kept = [(name, value) for name, value in headers if name.lower() not in replaced]
    kept += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})


def refusing(app: Any, detail: str) -> Any:
    """``app`` for a connection admitted over the cap: a JSON 503 for everything but the health check."""

    async def refuse(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") == HEALTH_PATH:
            await app(scope, receive, send)
            return
        body = json.dumps({"error": "busy", "detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refuse


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the connection budget of the module docstring.

    ``limits`` is set on a subclass by :func:`guarded_protocol`; worker processes started by uvicorn read
    them from the service's configuration in the environment instead (:func:`limits_from_env`).
    """

    limits: ClassVar[ConnectionLimits | None] = None
    guard: ClassVar[ConnectionGuard | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.guard is None:
            cls.guard = ConnectionGuard(cls.limits or limits_from_env())
            _CURRENT[:] = [cls.guard]
        self.app = json_errors(self.app)
        self.idle_since = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: Any = None
        self._partial_head = False

    @property
    def idle(self) -> bool:
        """No request in progress (just opened, between requests, or halfway through a head)."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            detail = f"all {self.guard.limits.max_connections} connections are busy; retry shortly"
            self.app = refusing(self.app, detail)
        self._await_head()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: a JSON 400 (uvicorn's own is plain text)."""
        status = 400
        self.transport.write(json_bytes(status, "Bad Request", ERROR_CODES[status], msg))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.leave(self)
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.get_protocol() is not self:  # upgraded (websocket): no longer ours to time
            self.guard.leave(self)
            self._cancel_timer()
            return
        if self._waiting_for is _REQUEST:
            return
        if self.cycle is not self._waiting_for:  # a head arrived: a request is under way
            self._await_answer()
        else:
            self._partial_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if self.transport.is_closing():
            return
        if self.idle:
            self._await_head()
        else:
            self._await_answer()

    def evict(self) -> None:
        """Close this idle connection to make room for a new one (it stops counting at once)."""
        self.guard.leave(self)
        self._cancel_timer()
        self.transport.close()

    def _await_head(self) -> None:
        self._cancel_timer()
        self.idle_since = self.loop.time()
        self._waiting_for, self._partial_head = self.cycle, False
        self._timer = self.loop.call_later(self.guard.limits.head_timeout_s, self._head_overdue)

    def _await_answer(self) -> None:
        self._cancel_timer()
        self._waiting_for = _REQUEST
        self._timer = self.loop.call_later(self.guard.limits.request_timeout_s, self._request_overdue)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_overdue(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self.idle:
            return
        self.guard.head_timeouts += 1
        if self._partial_head:
            detail = f"no complete request head within {self.guard.limits.head_timeout_s:g} s"
            self.transport.write(json_bytes(408, "Request Timeout", "timeout", detail))
        self.transport.close()

    def _request_overdue(self) -> None:
        self._timer = None
        if not self.transport.is_closing() and not self.idle:
            self.guard.request_timeouts += 1
            self.transport.close()


_REQUEST = object()
"""Marks a connection waiting for its answer to complete (``_waiting_for``), not for a head."""


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for uvicorn's ``http=`` with these limits and a guard of its own."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "guard": None})


def limits_to_env(limits: ConnectionLimits) -> None:
    """Pass ``limits`` to the worker processes uvicorn is about to start (they inherit the environment)."""
    os.environ[LIMITS_ENV] = json.dumps(dataclasses.asdict(limits))


def limits_from_env() -> ConnectionLimits:
    """The limits :func:`limits_to_env` left in the environment, else the defaults."""
    text = os.environ.get(LIMITS_ENV)
    return ConnectionLimits(**json.loads(text)) if text else ConnectionLimits()
