"""The worker's /metrics endpoint: Prometheus text on WAVECAST_WORKER_METRICS_PORT.

A small asyncio server on the worker's own event loop, so a scrape can read the gauges from
the database (`app.ops.worker_metrics.refresh_gauges`) at most once every
GAUGES_MAX_AGE_SECONDS, however many scrapers there are. It lives as long as the process, not
as one arq worker: `workers.main.serve` builds a new arq worker each time Redis comes back, and
hands it the server to lend its database to (`attach`).

Metrics are never a reason to stop delivery: a port that cannot be bound is logged once, as
an ERROR naming the setting, and the worker runs without the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.types import utcnow
from app.ops.worker_metrics import REGISTRY, refresh_gauges
from app.settings import Settings

log = logging.getLogger("wavecast.worker")

# A scrape reads the gauges again when they are older than this; every scrape in between
# (several Prometheus servers, a dashboard's refresh) answers from the values in hand.
GAUGES_MAX_AGE_SECONDS = 5.0
# A gauge read that takes longer (a database under load) is given up; the scrape answers the
# values it had, and the next one tries again.
GAUGES_TIMEOUT_SECONDS = 2.0
# A client has this long to send its request line and headers.
REQUEST_TIMEOUT_SECONDS = 5.0
PATH = "/metrics"


class MetricsServer:
    """Serves the worker's registry over HTTP/1.1 (GET /metrics, one request per connection)."""

    def __init__(
        self, port: int, *, host: str = "0.0.0.0", max_age: float = GAUGES_MAX_AGE_SECONDS
    ) -> None:
        self.port = port
        self.host = host
        self.max_age = max_age
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._server: asyncio.Server | None = None
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    def attach(self, sessionmaker: async_sessionmaker[AsyncSession] | None) -> None:
        """The database to read the gauges from; None while there is none (between arq
        workers), when scrapes answer the last values read."""
        self._sessionmaker = sessionmaker

    async def start(self) -> None:
        """Raises OSError when the port cannot be bound."""
        self._server = await asyncio.start_server(self._answer, self.host, self.port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                request = await reader.readuntil(b"\r\n\r\n")
            method, target, _version = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            if path != PATH:
                await _reply(writer, "404 Not Found", "text/plain", b"not found\n")
            elif method not in ("GET", "HEAD"):
                await _reply(writer, "405 Method Not Allowed", "text/plain", b"GET only\n")
            else:
                await self._fresh_gauges()
                body = generate_latest(REGISTRY)
                await _reply(writer, "200 OK", CONTENT_TYPE_LATEST, body, head=method == "HEAD")
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # not a request we answer
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _fresh_gauges(self) -> None:
        async with self._reading:
            stale = self._read_at is None or time.monotonic() - self._read_at >= self.max_age
            if self._sessionmaker is None or not stale:
                return
            try:
                async with asyncio.timeout(GAUGES_TIMEOUT_SECONDS):
                    async with self._sessionmaker() as session:
                        await refresh_gauges(session, utcnow())
            except (TimeoutError, SQLAlchemyError, OSError) as exc:
                log.warning("could not read the metrics' gauges", extra={"error": str(exc)})
            # Also after a failure: a database in trouble is asked again in max_age, not by
            # every scrape.
            self._read_at = time.monotonic()


async def _reply(
    writer: asyncio.StreamWriter, status: str, content_type: str, body: bytes, *, head: bool = False
) -> None:
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
    )
    if not head:
        writer.write(body)
    await writer.drain()


async def start_metrics_server(settings: Settings) -> MetricsServer | None:
    """The worker's endpoint on settings.worker_metrics_port, or None: the port is 0 (off), or
    it could not be bound (logged; the worker runs on without it)."""
    if settings.worker_metrics_port == 0:
        return None
    server = MetricsServer(settings.worker_metrics_port)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "the worker's metrics endpoint is off: port %s (WAVECAST_WORKER_METRICS_PORT) "
            "cannot be bound (%s); delivery goes on without it. Give each worker on this "
            "machine a port of its own, or 0 to turn the endpoint off",
            settings.worker_metrics_port,
            exc.strerror or exc,
            extra={"port": settings.worker_metrics_port},
        )
        return None
    log.info("serving metrics", extra={"port": settings.worker_metrics_port, "path": PATH})
    return server
