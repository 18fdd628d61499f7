"""The application's one ASGI middleware: what happens to every request before FastAPI routes
it, and to every answer after.

Outside in, as five middlewares did it before:

1. security headers on every answer (`app.ops.security_headers`);
2. request metrics: count and latency by method, route template and status
   (`app.ops.middleware.RequestMetrics`);
3. the rate limit (`app.ops.ratelimit`): every request but a keyed API request is charged
   before it is handled; a keyed one is charged by authentication, or to its address
   afterwards when it never got that far; `/healthz`, `/readyz`, `/metrics` and static files
   are free;
4. the body's size and time caps (`app.ops.middleware.BodyLimit`);
5. what each route takes: OPTIONS, and 415 for a body the route does not take
   (`app.ops.middleware.RouteMethods`).

One layer instead of five: each was a coroutine frame of its own on every request, and three
of them wrapped `send` again, so every message of every answer went through three closures.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem_response
from app.ops.metrics import RATE_LIMITED
from app.ops.middleware import BodyLimit, RequestMetrics, RouteMethods
from app.ops.ratelimit import (
    PENDING,
    Pending,
    address_bucket,
    bucket_for,
    exempt,
    limiter_of,
    too_many,
)
from app.ops.security_headers import SecurityHeaders


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        environment: str,
        limit_for: Callable[[str], int],
        timeout: float = 15.0,
        min_rate: float = 65_536,
    ) -> None:
        self.app = app
        self.headers = SecurityHeaders(environment)
        self.metrics = RequestMetrics()
        self.body = BodyLimit(limit_for, timeout, min_rate)
        self.methods = RouteMethods()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        fixed, authenticated = self.headers.for_path(path)
        stamp = self.headers.stamp
        # The answer's status (500 when none started: the application raised, and the
        # server's error middleware, outside this one, answers 500), and whether it started.
        status = 500
        started = [False]

        async def edge_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                started[0] = True
                stamp(message, fixed, authenticated)
            await send(message)

        try:
            limiter = limiter_of(scope)
            if limiter is None or not limiter.enabled or exempt(path):
                await self._handle(scope, receive, edge_send, started)
                return
            bucket = bucket_for(scope)
            if bucket is None:
                pending = Pending()
                scope[PENDING] = pending
                await self._handle(scope, receive, edge_send, started)
                if not pending.charged:
                    # Too late to refuse this one; the address pays for it from the next
                    # request on.
                    await limiter.check(address_bucket(scope))
                return
            retry_after = await limiter.check(bucket)
            if retry_after is None:
                await self._handle(scope, receive, edge_send, started)
                return
            RATE_LIMITED.labels(bucket.split(":", 1)[0]).inc()
            await problem_response(too_many(retry_after, bucket))(scope, receive, edge_send)
        finally:
            route = scope.get("route")
            self.metrics.record(
                scope["method"],
                getattr(route, "path", "unmatched"),
                status,
                time.perf_counter() - start,
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, started: list[bool]
    ) -> None:
        limit = self.body.limit_for(scope["path"])
        if await self.body.refused(scope, send, limit) or await self.methods.answered(scope, send):
            return
        await self.body.run(self.app, scope, receive, send, limit, started)
