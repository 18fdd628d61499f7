"""What the application's one middleware (`app.ops.edge.Edge`) does to each request: body
size and time caps, the media types and methods each route takes, and request metrics."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops.metrics import HTTP_LATENCY, HTTP_REQUESTS


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing lets it through and
    the problem handler answers 413 instead of a generic parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than the {limit}-byte limit for this endpoint"
        )


class BodyTimedOut(HTTPException):
    """Raised from `receive` when the body arrives too slowly (see `BodyLimit`)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive in time ({seconds:g} s, plus time for its size); "
            "send it again",
            headers={"Connection": "close"},
        )


def _problem_body(status: int, title: str, detail: str, **members: Any) -> bytes:
    return json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **members}
    ).encode()


async def send_problem(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A problem+json answer sent before the application read the whole body; the
    connection is closed after it, so the unread rest of the body cannot be taken as the
    next request."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> bytes:
    return _problem_body(
        413,
        "Request body too large",
        f"the request body is larger than the {limit}-byte limit for this endpoint",
        errors=[{"field": "body", "message": f"larger than {limit} bytes"}],
    )


def _has_body(scope: Scope) -> bool:
    """Whether the request carries a body: a non-zero length, a chunked one, or (HTTP/2
    needs neither) a declared type."""
    headers: dict[bytes, bytes] = dict(scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        return length != b"0"
    return b"transfer-encoding" in headers or b"content-type" in headers


class BodyLimit:
    """Refuse bodies over a size limit, whether or not they declare a Content-Length, and
    bodies that arrive too slowly (run by `app.ops.edge.Edge`).

    The limit is counted while streaming, so a client cannot make the service buffer more
    than the limit by lying about (or omitting) the length. A body must arrive within
    `timeout` seconds plus one second per `min_rate` bytes received, so a client trickling
    a byte a second cannot hold a connection (and its slot in the server) open, while a
    large import at any reasonable speed is never cut off.
    """

    def __init__(
        self,
        limit_for: Callable[[str], int],
        timeout: float = 15.0,
        min_rate: float = 65_536,
    ) -> None:
        self.limit_for = limit_for
        self.timeout = timeout
        self.min_rate = min_rate

    async def refused(self, scope: Scope, send: Send, limit: int) -> bool:
        """Whether the request was refused for the length it declares (413)."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_problem(send, 413, _too_large(limit))
            return True
        return False

    async def run(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        started: list[bool],
    ) -> None:
        """`app` with the body capped at `limit`; `started[0]` is whether an answer has
        begun (kept by the caller's `send`), as a refusal can only be sent before one has."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal seen, complete
            if complete:
                return await receive()
            allowed = start + self.timeout + seen / self.min_rate - loop.time()
            try:
                async with asyncio.timeout(allowed):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut(self.timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        try:
            await app(scope, limited_receive, send)
        except BodyTooLarge:
            if not started[0]:
                await send_problem(send, 413, _too_large(limit))
        except BodyTimedOut as exc:
            if not started[0]:
                await send_problem(send, 408, _problem_body(408, "Request timeout", exc.detail))


JSON = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def media_type(header: bytes | None) -> str:
    if not header:
        return ""
    return header.decode("latin-1").split(";", 1)[0].strip().lower()


def _takes(accepted: Sequence[str], received: str) -> bool:
    if received in accepted:
        return True
    # FastAPI parses any application/*+json body as JSON.
    return JSON in accepted and received.startswith("application/") and received.endswith("+json")


@dataclass(frozen=True)
class _Entry:
    path: re.Pattern[str]
    methods: frozenset[str]
    accepted: tuple[str, ...] | None  # None: the route takes no body


def _accepted(route: APIRoute) -> tuple[str, ...] | None:
    declared = (route.openapi_extra or {}).get("requestBody", {}).get("content")
    if declared:
        return tuple(str(t).lower() for t in declared)
    if route.body_field is None:
        return None
    if isinstance(route.body_field.field_info, params.Form):
        return FORM_TYPES
    return (JSON,)


def _entries(routes: Iterable[BaseRoute]) -> list[_Entry]:
    entries: list[_Entry] = []
    for route in routes:
        if isinstance(route, APIRoute):
            entries.append(
                _Entry(route.path_regex, frozenset(route.methods or ()), _accepted(route))
            )
        elif hasattr(route, "original_router"):  # an included router: its routes, full paths
            entries += _entries(route.original_router.routes)
        elif isinstance(route, Mount):
            continue  # static files and sub-applications answer for themselves
        else:
            regex = getattr(route, "path_regex", None)
            methods = getattr(route, "methods", None)
            if regex is not None and methods:
                entries.append(_Entry(regex, frozenset(methods), None))
    return entries


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Every method some route answers at `path` (not only the first route's), plus
    OPTIONS, which `RouteMethods` answers for all of them; empty when no route matches."""
    found = {m for e in _entries(routes) if e.path.match(path) for m in e.methods}
    return sorted(found | {"OPTIONS"}) if found else []


_UNKNOWN = object()
# Paths carry ids: the table of what each takes is bounded.
_MAX_REMEMBERED = 4096


class RouteMethods:
    """What a route takes, answered before the route runs (by `app.ops.edge.Edge`).

    - OPTIONS: 204 with `Allow` listing every method served at the path.
    - A body in a media type the route does not take: 415 naming the type received and
      the ones accepted (`Accept-Post` / `Accept-Patch` say it too), instead of a
      validation error about a body the route never tried to read as such.

    Only requests with a body, or OPTIONS, look the route up; the table is built once, from
    the application's routes, on the first such request.
    """

    def __init__(self, prefix: str = "/v1/") -> None:
        self.prefix = prefix
        self._table: list[_Entry] | None = None
        # What each (method, path) takes, found once: a POST to a fixed path (every app's
        # device registration) would otherwise match every route's pattern each time.
        self._accepted: dict[tuple[str, str], tuple[str, ...] | None] = {}

    def _routes(self, scope: Scope) -> list[_Entry]:
        if self._table is None:
            self._table = _entries(scope["app"].router.routes)
        return self._table

    async def answered(self, scope: Scope, send: Send) -> bool:
        """Whether the request was answered here (OPTIONS, or 415)."""
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS":
            allow = allowed_methods(scope["app"].router.routes, path)
            if allow:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", ", ".join(allow).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return True
        elif path.startswith(self.prefix) and _has_body(scope):
            refusal = self._refusal(scope, method, path)
            if refusal is not None:
                await send_problem(send, 415, *refusal)
                return True
        return False

    def _accepted_by(self, scope: Scope, method: str, path: str) -> tuple[str, ...] | None:
        found = self._accepted.get((method, path), _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        accepted = next(
            (e.accepted for e in self._routes(scope) if method in e.methods and e.path.match(path)),
            None,
        )
        if len(self._accepted) >= _MAX_REMEMBERED:
            self._accepted.clear()
        self._accepted[(method, path)] = accepted
        return accepted

    def _refusal(
        self, scope: Scope, method: str, path: str
    ) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The 415 body and headers when the route does not take the body's type."""
        accepted = self._accepted_by(scope, method, path)
        if accepted is None:
            return None
        received = media_type(dict(scope["headers"]).get(b"content-type"))
        if _takes(accepted, received):
            return None
        said = f"sent as {received}" if received else "sent without a Content-Type"
        detail = f"the body is {said}; this endpoint takes {', '.join(accepted)}"
        body = _problem_body(
            415,
            "Unsupported media type",
            detail,
            instance=path,
            errors=[{"field": "body", "message": detail}],
            received=received or None,
            accepted=list(accepted),
        )
        headers = []
        if method in ("POST", "PATCH"):
            headers.append((f"accept-{method.lower()}".encode(), ", ".join(accepted).encode()))
        return body, headers


class RequestMetrics:
    """Each answer counted and timed by method, route template and status (recorded by
    `app.ops.edge.Edge`)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        counter, latency = self._series(method, path, status)
        counter.inc()
        latency.observe(seconds)

    def _series(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        """The request's two series, looked up by their labels once (`labels` takes a lock
        and builds the label tuple on every call). Routes and methods are few."""
        key = (method, path, status)
        series = self._known.get(key)
        if series is None:
            series = self._known[key] = (
                HTTP_REQUESTS.labels(method, path, str(status)),
                HTTP_LATENCY.labels(method, path),
            )
        return series
