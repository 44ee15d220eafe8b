"""Who may use ``maskingnet serve`` and what it records: the Host allow-list, an optional API key, CORS
origins and an access log, as ASGI middleware around the service's application.

- **Host allow-list** (always on): a request whose ``Host`` header names another host gets a JSON 421. A
  page on any web site can make a browser resolve its own name to 127.0.0.1 (DNS rebinding) and then read
  the answers of a service listening there as if they were its own; the browser still sends the page's
  host name, so checking it closes that door. Allowed: ``localhost``, ``127.0.0.1``, ``[::1]``, the
  address the service is bound to (unless it is a wildcard such as ``0.0.0.0``) and each ``--allowed-host``
  (``*.example.com`` for its subdomains, ``*`` for any host, e.g. behind a proxy that checks it).
- **API key** (``--api-key`` or ``MASKINGNET_API_KEY``): every request but ``GET /healthz`` must carry it as
  ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time), else a JSON 401.
- **CORS** (``--cors-origin``, repeatable, ``*`` for any): pages of those origins may call the API from a
  browser (Starlette's ``CORSMiddleware``; preflights are answered without the key, as browsers send none).
- **Access log** (``--access-log FILE``, ``-`` for stderr): one line per request, after its answer: client,
  time, request line, status, bytes sent, duration. Headers (and so the key) are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from maskingnet.utils.messages import log_field

HEALTH_PATH = "/healthz"
API_KEY_ENV = "MASKINGNET_API_KEY"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")
KEY_HEADERS = "'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


@dataclass(frozen=True)
class AccessOptions:
    """The service's access settings (see the module docstring); ``bound_host`` is ``--host``."""

    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    access_log: str | None = None

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        key = "set" if self.api_key else None
        return (
            f"AccessOptions(bound_host={self.bound_host!r}, allowed_hosts={self.allowed_hosts!r}, "
            f"api_key={key}, cors_origins={self.cors_origins!r}, access_log={self.access_log!r})"
        )


_HOST_HEADER = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::[0-9]{0,5})?")


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header without port, brackets, trailing dot or case (``[::1]:80``: ``::1``);
    None unless the whole header is a host and an optional port, exactly (``localhost:80@evil.com``,
    ``[::1]evil.com`` and a bare IPv6 address are not)."""
    match = _HOST_HEADER.fullmatch(header.strip().lower())
    if match is None:
        return None
    if match["ip6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ip6"]))
        except ValueError:
            return None
    return match["name"].rstrip(".")


def listed_name(name: str) -> str:
    """An allow-list entry as :func:`host_name` gives it (``[::1]`` or ``::1``: ``::1``)."""
    value = name.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return str(ipaddress.IPv6Address(value)) if ":" in value else value
    except ValueError:
        return value


class HostAllowList:
    """Which ``Host`` names the service answers (see the module docstring)."""

    def __init__(self, bound_host: str, extra: Iterable[str] = ()) -> None:
        names = [*LOCAL_HOSTS, *([] if bound_host in WILDCARD_BINDS else [bound_host]), *extra]
        self.any = "*" in names
        self.exact = {listed_name(name) for name in names if not name.startswith("*")}
        self.suffixes = tuple("." + listed_name(name[2:]) for name in names if name.startswith("*."))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        name = host_name(header) if header else None
        if name is None:
            return False
        return name in self.exact or any(name.endswith(suffix) for suffix in self.suffixes)

    def describe(self) -> str:
        shown = [f"[{name}]" if ":" in name else name for name in sorted(self.exact)]
        return ", ".join(shown + [f"*{suffix}" for suffix in self.suffixes])


def key_matches(expected: str, given: str | None) -> bool:
    """``given`` is the key; constant time in its content, so a wrong key's timing tells nothing."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key is not None else None


async def send_json(send: Any, status: int, code: str, detail: str, headers: Iterable = ()) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def header_map(scope: dict) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


class HostCheck:
    """ASGI middleware: a JSON 421 for a ``Host`` outside the allow-list."""

    def __init__(self, app: Any, allow: HostAllowList) -> None:
        self.app, self.allow = app, allow

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = header_map(scope).get(b"host", b"").decode("latin-1")
            if not self.allow.allows(host):
                detail = (
                    f"Host {host!r} is not served here (allowed: {self.allow.describe()}; "
                    "add names with --allowed-host)"
                )
                await send_json(send, 421, "bad_host", detail, [(b"connection", b"close")])
                return
        await self.app(scope, receive, send)


class ApiKeyCheck:
    """ASGI middleware: a JSON 401 for a request without the key (``GET /healthz`` stays open)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") != HEALTH_PATH:
            if not key_matches(self.key, presented_key(header_map(scope))):
                detail = f"missing or wrong API key: send it as {KEY_HEADERS}"
                await send_json(send, 401, "unauthorized", detail, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class AccessLog:
    """ASGI middleware: one line per request after its answer (or its end), to a file or stderr."""

    def __init__(self, app: Any, target: str) -> None:
        self.app = app
        self.stream: TextIO = sys.stderr if target == "-" else open(target, "a", buffering=1)  # noqa: SIM115
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = {"status": 0, "bytes": 0}

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.write(access_line(scope, answer["status"], answer["bytes"], time.perf_counter() - started))

    def write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def access_line(scope: dict, status: int, sent: int, seconds: float) -> str:
    """``client - - [time] "METHOD /path?query HTTP/1.1" status bytes duration`` (status 0: no answer).

    Every field a client chose (the path is percent-decoded: ``%0a`` is a newline) is escaped by
    :func:`maskingnet.utils.messages.log_field`, so a request writes one line that cannot pass for
    another's."""
    client = log_field(str((scope.get("client") or ("-",))[0]))
    query = scope.get("query_string", b"").decode("latin-1")
    target = scope.get("path", "") + (f"?{query}" if query else "")
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    request = f"{scope.get('method', '-')} {target} HTTP/{scope.get('http_version', '1.1')}"
    return f'{client} - - [{when}] "{log_field(request)}" {status} {sent} {seconds * 1000:.0f}ms'


def protect(app: Any, options: AccessOptions) -> None:
    """Add the middleware of ``options`` to the FastAPI ``app`` (the last added runs first): the access log,
    then the Host check, then CORS, then the key."""
    if options.api_key:
        app.add_middleware(ApiKeyCheck, key=options.api_key)
    if options.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key"],
            expose_headers=["X-Batch-Size"],
            max_age=600,
        )
    app.add_middleware(HostCheck, allow=HostAllowList(options.bound_host, options.allowed_hosts))
    if options.access_log:
        app.add_middleware(AccessLog, target=options.access_log)
