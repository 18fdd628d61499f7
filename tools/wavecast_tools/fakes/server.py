"""A small HTTP/1.1 + HTTP/2 server on raw asyncio protocols, for the provider fakes.

Why not hypercorn: the fakes must not be the bottleneck of a throughput benchmark on two cores,
and an ASGI server spends most of its time in layers the fakes do not need (scope dicts, receive/
send coroutines and a task per request). Here a request is parsed by ``h2`` (HTTP/2) or a
hand-written parser (HTTP/1.1), handed to a *synchronous* handler, and its reply written from the
same ``data_received`` call: no task, no coroutine, one ``write`` per read. Added latency uses
``loop.call_later``.

Protocol selection per connection, the way real front ends do it:

- TLS with ALPN ``h2`` -> HTTP/2; ALPN ``http/1.1`` -> HTTP/1.1;
- no ALPN (aioapns sets none) or plaintext -> HTTP/2 if the first bytes are the HTTP/2
  connection preface (prior knowledge, "h2c"), HTTP/1.1 otherwise.

HTTP/2 flow control is honoured in both directions (a reply body waits for window), because a
client that forgets to return window (aioapns does, see the APNs fake) must stall exactly as it
would against the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from wavecast_tools.fakes.h2_speedups import (
    FastH2Connection,
    PlainEncoder,
    install_huffman_cache,
    plain_headers,
)

logger = logging.getLogger(__name__)

ConnectionAction = Literal["answer", "drop", "goaway", "reset"]

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


@dataclass(slots=True)
class Request:
    """A complete request as the handler sees it. Header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    protocol: str
    connection_id: int
    stream_id: int
    monotonic: float
    """``time.monotonic()`` when the request headers arrived."""
    wall: float
    duplicate_header: str | None = None
    """The first header name sent more than once, if any (APNs answers ``DuplicateHeaders``)."""
    peer_port: int | None = None
    """The client's TCP port: which client process sent it can be found from it."""


@dataclass(slots=True)
class Reply:
    """What to send back. ``delay`` postpones it; ``action`` replaces it by a connection fault."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    action: ConnectionAction = "answer"
    sent: Callable[[], None] | None = None
    """Called the moment the answer is written (after any delay)."""


Handler = Callable[[Request], Reply]

_connection_ids = itertools.count(1)

# Every request decodes its headers into fresh strings, and full recording keeps them all. The
# same provider JWT, topic and method repeat on every request, so repeated values are shared
# (one string per distinct value) -- except values that are unique per request anyway.
_UNIQUE_HEADERS = frozenset({":path", "apns-id", "content-length"})
_MAX_SHARED_STRINGS = 4096


class HttpServer:
    """Listens on one host/port (plaintext or TLS) and feeds every request to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        h2_max_concurrent_streams: int = 1000,
    ) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        # The connection-level receive window opened to every client (HTTP/2 starts it at
        # 65,535 bytes whatever the settings say). Wide by default, so 1000 concurrent request
        # bodies never wait for a WINDOW_UPDATE; a test narrows it to make clients wait.
        self.h2_connection_window = 1 << 30
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.shared_strings: dict[str, str] = {}
        self.port = 0

    async def start(self) -> None:
        install_huffman_cache()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.requested_port,
            ssl=self.ssl_context,
            backlog=1024,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            conn.abort()
        await server.wait_closed()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def goaway_all(self) -> None:
        """Send GOAWAY on every HTTP/2 connection and close all connections (maintenance)."""
        for conn in list(self._connections):
            conn.goaway()


class _Stream:
    __slots__ = ("body", "duplicate", "headers", "monotonic", "wall")

    def __init__(
        self, headers: dict[str, str], duplicate: str | None, arrived: tuple[float, float]
    ) -> None:
        self.headers = headers
        self.duplicate = duplicate
        self.body = bytearray()
        self.monotonic, self.wall = arrived


class _Connection(asyncio.Protocol):
    """One client connection; speaks HTTP/1.1 or HTTP/2 (decided on the first bytes)."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.id = next(_connection_ids)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.mode: Literal["sniff", "h1", "h2"] = "sniff"
        self.buffer = bytearray()
        # HTTP/1.1 state: one request at a time, so replies stay in order.
        self.h1_busy = False
        self.h1_head_time: tuple[float, float] | None = None
        self.h1_continue_sent = False
        # HTTP/2 state.
        self.h2: h2.connection.H2Connection | None = None
        self.streams: dict[int, _Stream] = {}
        self.arrived = (time.monotonic(), time.time())
        self.peer_port: int | None = None
        self.pending_bodies: dict[int, tuple[bytes, int]] = {}
        self.last_answered_stream = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.server._connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer_port = peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            self._start_h2()
        elif alpn == "http/1.1":
            self.mode = "h1"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.mode == "h2":
            self._h2_receive(data)
            return
        if self.mode == "sniff":
            self.buffer += data
            prefix = bytes(self.buffer[: len(_H2_PREFACE)])
            if not _H2_PREFACE.startswith(prefix):
                self.mode = "h1"
            elif len(prefix) < len(_H2_PREFACE):
                return
            else:
                data, self.buffer = bytes(self.buffer), bytearray()
                self._start_h2()
                self._h2_receive(data)
                return
            self._h1_parse()
            return
        self.buffer += data
        if not self.h1_busy:
            self._h1_parse()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- shared ----------------------------------------------------------------------------

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def goaway(self) -> None:
        if self.h2 is not None and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(
                    error_code=ErrorCodes.NO_ERROR, last_stream_id=self.last_answered_stream
                )
            self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _dispatch(self, request: Request) -> Reply:
        try:
            return self.server.handler(request)
        except Exception:
            logger.exception("fake handler failed on %s %s", request.method, request.path)
            return Reply(500, [("content-type", "text/plain")], b"fake handler error\n")

    def _flush(self) -> None:
        if self.h2 is not None and self.transport is not None and not self.closed:
            data = self.h2.data_to_send()
            if data:
                self.transport.write(data)

    # -- HTTP/2 ----------------------------------------------------------------------------

    def _start_h2(self) -> None:
        self.mode = "h2"
        # Header validation/normalisation is off both ways: inbound it re-checks what every real
        # client's h2 stack validated on the way out, outbound our headers are fixed and known
        # good; together it cost ~20% of the fake's CPU.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = FastH2Connection(config=config)
        conn.encoder = PlainEncoder()
        codes = h2.settings.SettingCodes
        # Set before initiate_connection() so the very first SETTINGS frame carries them: a
        # client that opens 1000 streams at once must not be refused for racing our ACK.
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: self.server.h2_max_concurrent_streams,
                codes.MAX_HEADER_LIST_SIZE: 64 * 1024,
                codes.INITIAL_WINDOW_SIZE: 1 << 20,
            },
        )
        conn.initiate_connection()
        # The connection window is not covered by INITIAL_WINDOW_SIZE (see h2_connection_window).
        if self.server.h2_connection_window > 65535:
            conn.increment_flow_control_window(self.server.h2_connection_window - 65535)
        self.h2 = conn
        self._flush()

    def _h2_receive(self, data: bytes) -> None:
        conn = self.h2
        assert conn is not None
        # Requests are stamped when their bytes were read, not when this loop reaches them:
        # answering the earlier requests of the same read (validation, records, rules) would
        # otherwise make later ones look later, and bunch, by the fake's own work.
        self.arrived = (time.monotonic(), time.time())
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            logger.info("HTTP/2 protocol error on connection %d; closing", self.id)
            self._flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._h2_request(event)
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id or 0)
                if stream is not None and event.data is not None:
                    stream.body += event.data
                if event.flow_controlled_length and event.stream_id:
                    with contextlib.suppress(h2.exceptions.StreamClosedError):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
            elif isinstance(event, h2.events.StreamEnded):
                self._h2_complete(event.stream_id or 0)
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id or 0, None)
                self.pending_bodies.pop(event.stream_id or 0, None)
            elif isinstance(event, h2.events.WindowUpdated):
                self._h2_resume_bodies()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._flush()
                self.closed = True
                if self.transport is not None:
                    self.transport.close()
                return
        self._flush()

    def _h2_request(self, event: h2.events.RequestReceived) -> None:
        raw = event.headers or []
        headers: dict[str, str] = {}
        duplicate: str | None = None
        shared = self.server.shared_strings
        for name, value in raw:
            key = shared.setdefault(str(name), str(name))
            if key in headers and duplicate is None and key != "cookie":
                duplicate = key
            text = str(value)
            if key not in _UNIQUE_HEADERS:
                text = shared.setdefault(text, text)
            headers[key] = text
        if len(shared) > _MAX_SHARED_STRINGS:
            shared.clear()
        self.streams[event.stream_id or 0] = _Stream(headers, duplicate, self.arrived)

    def _h2_complete(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        headers = stream.headers
        request = Request(
            method=headers.get(":method", ""),
            path=headers.get(":path", ""),
            headers=headers,
            body=bytes(stream.body),
            protocol="h2",
            connection_id=self.id,
            peer_port=self.peer_port,
            stream_id=stream_id,
            monotonic=stream.monotonic,
            wall=stream.wall,
            duplicate_header=stream.duplicate,
        )
        reply = self._dispatch(request)
        if reply.delay > 0:
            asyncio.get_running_loop().call_later(
                reply.delay, self._h2_reply_later, stream_id, reply
            )
        else:
            self._h2_reply(stream_id, reply)

    def _h2_reply_later(self, stream_id: int, reply: Reply) -> None:
        self._h2_reply(stream_id, reply)
        self._flush()

    def _h2_reply(self, stream_id: int, reply: Reply) -> None:
        conn = self.h2
        if conn is None or self.closed:
            return
        if reply.action == "drop":
            self.abort()
            return
        if reply.action == "goaway":
            self.goaway()
            return
        try:
            if reply.action == "reset":
                conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                return
            headers = [(":status", str(reply.status)), *reply.headers]
            if reply.body:
                headers.append(("content-length", str(len(reply.body))))
            conn.send_headers(stream_id, plain_headers(headers), end_stream=not reply.body)
            if reply.body:
                self._h2_send_body(stream_id, reply.body, 0)
            self.last_answered_stream = max(self.last_answered_stream, stream_id)
            if reply.sent is not None:
                reply.sent()
        except h2.exceptions.StreamClosedError:
            pass  # the client reset the stream while the reply was delayed
        except h2.exceptions.ProtocolError:
            logger.debug("could not answer stream %d on connection %d", stream_id, self.id)

    def _h2_send_body(self, stream_id: int, body: bytes, offset: int) -> None:
        conn = self.h2
        assert conn is not None
        while offset < len(body):
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                self.pending_bodies[stream_id] = (body, offset)
                return
            end = min(len(body), offset + window)
            conn.send_data(stream_id, body[offset:end], end_stream=end == len(body))
            offset = end
        self.pending_bodies.pop(stream_id, None)

    def _h2_resume_bodies(self) -> None:
        for stream_id, (body, offset) in list(self.pending_bodies.items()):
            try:
                self._h2_send_body(stream_id, body, offset)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.pending_bodies.pop(stream_id, None)

    # -- HTTP/1.1 --------------------------------------------------------------------------

    def _h1_parse(self) -> None:
        while not self.h1_busy and not self.closed and self.buffer:
            buf = self.buffer
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buf) > _MAX_HEAD:
                    self._h1_fail(431)
                return
            if self.h1_head_time is None:
                self.h1_head_time = (time.monotonic(), time.time())
            lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._h1_fail(400)
                return
            method, path, version = parts
            headers: dict[str, str] = {}
            duplicate: str | None = None
            shared = self.server.shared_strings
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._h1_fail(400)
                    return
                key = name.strip().lower()
                key = shared.setdefault(key, key)
                text = value.strip()
                if key not in _UNIQUE_HEADERS:
                    text = shared.setdefault(text, text)
                if key in headers:
                    duplicate = duplicate or key
                    headers[key] = f"{headers[key]}, {text}"
                else:
                    headers[key] = text
            start = head_end + 4
            if headers.get("transfer-encoding", "").lower() == "chunked":
                parsed = _parse_chunked(buf, start)
                if parsed is None:
                    self._h1_maybe_continue(headers)
                    return
                body, consumed = parsed
            else:
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    self._h1_fail(400)
                    return
                if length > _MAX_BODY or length < 0:
                    self._h1_fail(413)
                    return
                if len(buf) - start < length:
                    self._h1_maybe_continue(headers)
                    return
                body, consumed = bytes(buf[start : start + length]), start + length
            del buf[:consumed]
            monotonic, wall = self.h1_head_time
            self.h1_head_time = None
            self.h1_continue_sent = False
            connection = headers.get("connection", "").lower()
            keep_alive = connection != "close" and (
                version == "HTTP/1.1" or connection == "keep-alive"
            )
            request = Request(
                method=method,
                path=path,
                headers=headers,
                body=body,
                protocol="http/1.1",
                connection_id=self.id,
                peer_port=self.peer_port,
                stream_id=0,
                monotonic=monotonic,
                wall=wall,
                duplicate_header=duplicate,
            )
            self.h1_busy = True
            reply = self._dispatch(request)
            if reply.delay > 0:
                asyncio.get_running_loop().call_later(
                    reply.delay, self._h1_reply, reply, keep_alive
                )
                return
            self._h1_reply(reply, keep_alive)

    def _h1_maybe_continue(self, headers: dict[str, str]) -> None:
        # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits a second otherwise.
        if headers.get("expect", "").lower() == "100-continue" and not self.h1_continue_sent:
            self.h1_continue_sent = True
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _h1_reply(self, reply: Reply, keep_alive: bool) -> None:
        if self.closed or self.transport is None:
            return
        if reply.action != "answer":
            # No HTTP/1.1 equivalent of GOAWAY or RST_STREAM: the connection just goes away.
            self.abort()
            return
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {reply.status} {phrase}"]
        lines.extend(f"{name}: {value}" for name, value in reply.headers)
        lines.append(f"content-length: {len(reply.body)}")
        if not keep_alive:
            lines.append("connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body)
        if reply.sent is not None:
            reply.sent()
        if not keep_alive:
            self.closed = True
            self.transport.close()
            return
        self.h1_busy = False
        if self.buffer:
            self._h1_parse()

    def _h1_fail(self, status: int) -> None:
        if self.transport is not None:
            phrase = HTTPStatus(status).phrase
            head = f"HTTP/1.1 {status} {phrase}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            self.transport.write(head.encode())
            self.transport.close()
        self.closed = True


def _parse_chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``; ``None`` while it is incomplete."""
    body = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            size = 0
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            # Skip trailers up to the empty line.
            while trailer_end >= 0 and trailer_end != pos:
                pos = trailer_end + 2
                trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2
