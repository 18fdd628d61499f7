"""What every protocol fake shares: lifecycle, records, fault rules and introspection.

Introspection lives on the fake's own port under ``/_fake/`` so an out-of-process test or
benchmark needs nothing but the URL (over HTTP/1.1 or HTTP/2, plaintext or TLS):

==========  =============================  ==================================================
``GET``     ``/_fake/records``             ``?since=SEQ&limit=N&endpoint=send`` ->
                                           ``{"records": [...], "last_seq": N, "received": N}``
``DELETE``  ``/_fake/records``             forget the records
``GET``     ``/_fake/rules``               ``{"rules": [...]}`` with how often each fired
``POST``    ``/_fake/rules``               one rule object or a list -> ``{"rules": [...]}``
``DELETE``  ``/_fake/rules[/ID]``          remove every rule, or one
``POST``    ``/_fake/reset``               forget records and rules
``POST``    ``/_fake/goaway``              GOAWAY/close every open connection (maintenance)
``GET``     ``/_fake/config``              what this fake is (URLs, project, topics...)
``GET``     ``/_fake/stats``               counters only, cheap enough to poll
==========  =============================  ==================================================

Introspection requests are not recorded and never hit fault rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from wavecast_tools.fakes.faults import FaultRule, RuleBook
from wavecast_tools.fakes.records import Record, RecordingMode, RecordStore
from wavecast_tools.fakes.server import HttpServer, Reply, Request
from wavecast_tools.fakes.tls import TlsFiles

JSON_HEADERS = [("content-type", "application/json; charset=UTF-8")]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def json_reply(status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(status, [*JSON_HEADERS, *headers], json.dumps(data).encode())


class ProtocolFake(ABC):
    """A fake provider endpoint. Subclasses implement :meth:`handle` and :meth:`error_names`.

    Run it either on the caller's loop (``await fake.start()`` / ``await fake.stop()``, or
    ``async with fake:``) or on a private loop in a background thread
    (``with fake.running_in_thread():``). The thread form is needed whenever the client under
    test makes *blocking* calls to the fake from the event-loop thread, which google-auth does
    for its OAuth2 token exchange (see :mod:`wavecast_tools.fakes.fcm`).
    """

    kind: str = "fake"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        alpn: tuple[str, ...] = ("h2", "http/1.1"),
        recording: RecordingMode = "full",
        h2_max_concurrent_streams: int = 1000,
        plain_port: int | None = None,
    ) -> None:
        self.tls = tls
        self.store = RecordStore(recording)
        self.rulebook = RuleBook(self.error_names())
        self.server = HttpServer(
            self._handle,
            host=host,
            port=port,
            ssl_context=tls.server_context(alpn) if tls is not None else None,
            h2_max_concurrent_streams=h2_max_concurrent_streams,
        )
        # A TLS fake may also listen in plaintext (same handler, same records and rules): for
        # clients that cannot be told to trust the fake CA, and for cheap introspection.
        self.plain_server: HttpServer | None = None
        if tls is not None and plain_port is not None:
            self.plain_server = HttpServer(
                self._handle,
                host=host,
                port=plain_port,
                h2_max_concurrent_streams=h2_max_concurrent_streams,
            )
        self._thread_stop: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    # -- provider behaviour ----------------------------------------------------------------

    @abstractmethod
    def error_names(self) -> Iterable[str]:
        """Names a :class:`FaultRule` may use as ``error``."""

    @abstractmethod
    def handle(self, request: Request) -> Reply:
        """Answer one provider request (everything outside ``/_fake/``)."""

    def describe(self) -> dict[str, Any]:
        """Extra facts for ``GET /_fake/config``."""
        return {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.server.start()
        if self.plain_server is not None:
            await self.plain_server.start()

    async def stop(self) -> None:
        if self.plain_server is not None:
            await self.plain_server.stop()
        await self.server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self, timeout: float = 10.0) -> Iterator[Self]:
        """Serve from a new event loop in a daemon thread for the duration of the block."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            stopped: asyncio.Future[None] = loop.create_future()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._thread_stop = (loop, stopped)
            ready.set()
            try:
                await stopped
            finally:
                await self.stop()

        thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name=f"{self.kind}-fake", daemon=True
        )
        thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.kind} fake did not start within {timeout}s")
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            if self._thread_stop is not None:
                loop, stopped = self._thread_stop
                self._thread_stop = None
                loop.call_soon_threadsafe(_resolve, stopped)
            thread.join(timeout)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:41234`` (valid once started)."""
        return f"{self.server.scheme}://{self.server.host}:{self.server.port}"

    @property
    def plain_url(self) -> str | None:
        """A plaintext base URL: :attr:`url` itself without TLS, the side listener with it."""
        if self.tls is None:
            return self.url
        if self.plain_server is None:
            return None
        return f"http://{self.plain_server.host}:{self.plain_server.port}"

    # -- records ---------------------------------------------------------------------------

    def records(self, since: int = 0) -> list[Record]:
        return self.store.records(since)

    def sends(self) -> list[Record]:
        return self.store.sends()

    def clear(self) -> None:
        self.store.clear()

    def new_record(self, request: Request, endpoint: str, token: str | None) -> Record:
        return Record(
            seq=self.store.next_seq(),
            monotonic=request.monotonic,
            wall=request.wall,
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            token=token,
            protocol=request.protocol,
            connection_id=request.connection_id,
            stream_id=request.stream_id,
            peer_port=request.peer_port,
            headers=request.headers,
            body=request.body,
        )

    def finish(self, record: Record, reply: Reply) -> Reply:
        """Store ``record`` with the answer ``reply`` carries, and return ``reply``."""
        record.status = reply.status if reply.action == "answer" else 0
        record.action = reply.action
        record.delay = reply.delay
        if reply.action == "answer":
            reply.sent = functools.partial(_answered, record)
        if self.store.mode == "full":
            record.response_headers = reply.headers
            record.response_body = reply.body
        self.store.append(record)
        return reply

    # -- rules -----------------------------------------------------------------------------

    def add_rule(self, rule: FaultRule | None = None, /, **fields: Any) -> FaultRule:
        """Add ``rule``, or a rule built from keyword fields (see :class:`FaultRule`)."""
        return self.rulebook.add(rule if rule is not None else FaultRule(**fields))

    def remove_rule(self, rule_id: str) -> bool:
        return self.rulebook.remove(rule_id)

    def clear_rules(self) -> None:
        self.rulebook.clear()

    def rules(self) -> tuple[FaultRule, ...]:
        return self.rulebook.rules()

    def reset(self) -> None:
        self.clear()
        self.clear_rules()

    def goaway_all(self) -> None:
        """GOAWAY (HTTP/2) or close (HTTP/1.1) every open connection, as a server restart does."""
        self.server.goaway_all()
        if self.plain_server is not None:
            self.plain_server.goaway_all()

    # -- dispatch --------------------------------------------------------------------------

    def _handle(self, request: Request) -> Reply:
        if request.path.startswith("/_fake/"):
            return self._introspect(request)
        return self.handle(request)

    def _introspect(self, request: Request) -> Reply:
        parts = urlsplit(request.path)
        path, query = parts.path, parse_qs(parts.query)
        method = request.method
        try:
            if path == "/_fake/records" and method == "GET":
                since = int(query.get("since", ["0"])[0])
                limit = int(query.get("limit", ["0"])[0])
                endpoint = query.get("endpoint", [None])[0]
                selected = self.store.records(since)
                if endpoint:
                    selected = [r for r in selected if r.endpoint == endpoint]
                if limit > 0:
                    selected = selected[:limit]
                return json_reply(
                    200,
                    {
                        "records": [r.to_json() for r in selected],
                        "last_seq": self.store.last_seq,
                        "received": self.store.received,
                    },
                )
            if path == "/_fake/records" and method == "DELETE":
                self.clear()
                return json_reply(200, {"cleared": True})
            if path == "/_fake/stats" and method == "GET":
                return json_reply(
                    200,
                    {
                        "received": self.store.received,
                        "recorded": len(self.store),
                        "last_seq": self.store.last_seq,
                        "connections": self.server.connection_count
                        + (self.plain_server.connection_count if self.plain_server else 0),
                    },
                )
            if path == "/_fake/rules" and method == "GET":
                return json_reply(200, {"rules": [r.to_json() for r in self.rules()]})
            if path == "/_fake/rules" and method == "POST":
                data = json.loads(request.body or b"null")
                items = data if isinstance(data, list) else [data]
                if not all(isinstance(item, dict) for item in items):
                    raise ValueError("a rule is a JSON object")
                added = [self.add_rule(FaultRule.from_json(item)) for item in items]
                return json_reply(200, {"rules": [r.to_json() for r in added]})
            if path == "/_fake/rules" and method == "DELETE":
                self.clear_rules()
                return json_reply(200, {"cleared": True})
            if path.startswith("/_fake/rules/") and method == "DELETE":
                removed = self.remove_rule(path.removeprefix("/_fake/rules/"))
                return json_reply(200 if removed else 404, {"removed": removed})
            if path == "/_fake/reset" and method == "POST":
                self.reset()
                return json_reply(200, {"reset": True})
            if path == "/_fake/goaway" and method == "POST":
                loop = asyncio.get_running_loop()
                # After this reply is written, not before: the caller must get its answer.
                loop.call_soon(self.goaway_all)
                return json_reply(200, {"connections": self.server.connection_count})
            if path == "/_fake/config" and method == "GET":
                return json_reply(
                    200,
                    {"kind": self.kind, "url": self.url, "plain_url": self.plain_url}
                    | self.describe(),
                )
        except (ValueError, TypeError) as exc:
            return json_reply(400, {"error": str(exc)})
        return json_reply(404, {"error": f"no introspection route {method} {path}"})


def _answered(record: Record) -> None:
    record.answered = time.monotonic()
