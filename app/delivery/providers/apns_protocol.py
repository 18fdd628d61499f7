"""aioapns's HTTP/2 protocol with its stream bookkeeping redone (aioapns 4.0).

What the library's own protocol gets wrong, and what this one does instead:
- it never returns flow-control credit for the response bodies it reads. Every refusal
  (410 Unregistered, 400 BadDeviceToken...) carries a ~50-byte JSON body, so after ~1,200
  of them the connection's 64 KiB receive window is spent: the server can no longer send a
  body, and every later refusal on that connection hangs until the request times out. Here
  each DATA frame is acknowledged as it is read (`acknowledge_received_data`), so a
  connection lives through any number of refusals;
- it forgets a stream's id→request mapping only for answers with a body: every 200 leaves
  an entry behind for the life of the connection (a slow leak in a worker sending millions).
  Here every stream's state is dropped when the stream ends, whatever the answer;
- an answer with no body or no `reason` never resolves its request (it hangs until our
  timeout); here the stream's end resolves it with its status;
- a stream reset by the server (RST_STREAM) is ignored, its request hangs and its channel is
  never given back; here the request fails with `ConnectionClosed` and the channel returns;
- a request we stop waiting for (our timeout cancels it) stays in its maps, keeps its
  channel, and when the late answer arrives `set_result` on the cancelled future raises in
  `data_received`, which closes the connection and fails every other request on it. Here a
  cancelled request is forgotten and its stream reset (CANCEL), and a late answer is dropped;
- it sends a body whether or not the server's flow-control window can take it. When it cannot
  (a server that opens only HTTP/2's default 64 KiB connection window, or sends its
  WINDOW_UPDATE late: ~60 concurrent 1 KiB bodies are enough), h2 raises FlowControlError after
  the headers went out, the pool gives up (`MaxAttemptsExceeded`), and the half-open stream
  keeps its channel. Here a request waits for the credit before it opens its stream.

And what it costs per request, which the library spends on every push (measured on the
delivery benchmark, where the client's CPU sets the send rate):
- h2 re-validates and normalises every header list we build; ours are fixed and known good,
  so that is off (`LEAN_H2`). Normalising would also mark `authorization` never-indexed,
  re-sending the ~200-byte provider JWT Huffman-coded on every request; here the headers that
  repeat (host, topic, push type, priority, the JWT) enter the HPACK table once per
  connection and cost a byte or two after that, while the values unique to a request (the
  path, `apns-id`, the expiration) are sent as literals that never enter the table, and no
  literal is Huffman-coded (pure-Python Huffman costs more CPU than the bytes it saves);
- the body is JSON-encoded once per batch (`Payload`), not once per request, and it is the
  compact encoding the payload-size check measured (aioapns' `json.dumps` adds spaces, so a
  payload just under Apple's 4 KiB limit could go out over it);
- h2 counted the open streams by scanning all of them on every request (`FastH2Connection`);
- every request was written to the TLS transport on its own (a TLS record and a system call
  each) and re-armed the inactivity timer; here writes made during one pass of the event loop
  go out as one, and the timer is re-armed only when it fires.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, cast

import hpack
from aioapns.common import NotificationRequest, NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import StreamClosedError

from app.delivery.providers.h2_lean import FastH2Connection, PlainEncoder

# Outbound headers are built below from fixed names and checked values; inbound answers are
# still validated (they come from the network).
LEAN_H2 = H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


@dataclass(frozen=True, slots=True)
class Payload:
    """A notification body encoded once (compact JSON, as `payloads.size` measures it)."""

    body: bytes


def reason_of(body: bytes) -> tuple[str | None, int | None]:
    """Apple's `{"reason": ..., "timestamp": ...}` body; (None, None) when absent or not JSON."""
    if not body:
        return None, None
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    reason = data.get("reason")
    timestamp = data.get("timestamp")
    return (
        str(reason) if reason else None,
        timestamp if isinstance(timestamp, int) else None,
    )


class ApnsProtocol(APNsTLSClientProtocol):
    """One HTTP/2 connection to APNs (the module docstring lists what differs from aioapns)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = FastH2Connection(config=LEAN_H2)
        self.conn.encoder = PlainEncoder()
        self._statuses: dict[int, str] = {}
        self._bodies: dict[int, bytes] = {}
        self._flush_pending = False
        self._last_active = 0.0
        self._credit: asyncio.Future[None] | None = None

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        """Send one push; `request.message` may be a `Payload` (encoded once per batch)."""
        try:
            return await self._send(request)
        except asyncio.CancelledError:
            self._abandon(request.notification_id)
            raise

    async def _send(self, request: NotificationRequest) -> NotificationResult:
        headers: list[Any] = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            hpack.NeverIndexedHeaderTuple(b":path", b"/3/device/" + request.device_token.encode()),
            (b"host", self.APNS_SERVER.encode()),
            hpack.NeverIndexedHeaderTuple(b"apns-id", request.notification_id.encode()),
            (b"apns-topic", (request.apns_topic or self.apns_topic).encode()),
        ]
        if request.time_to_live is not None:
            expiration = str(int(time.time()) + request.time_to_live).encode()
            headers.append(hpack.NeverIndexedHeaderTuple(b"apns-expiration", expiration))
        if request.priority is not None:
            headers.append((b"apns-priority", str(request.priority).encode()))
        if request.collapse_key is not None:
            headers.append((b"apns-collapse-id", request.collapse_key.encode()))
        if request.push_type is not None:
            headers.append((b"apns-push-type", request.push_type.value.encode()))
        if self.auth_provider:
            headers.append((b"authorization", self.auth_provider.get_header().encode()))
        message: Any = request.message
        body = (
            message.body
            if isinstance(message, Payload)
            else json.dumps(message, ensure_ascii=False).encode()
        )
        stream_id = await self._channel_for(len(body))
        try:
            self.before_start()
        except BaseException:
            self.free_channels.release()
            raise
        self.conn.send_headers(stream_id=stream_id, headers=headers)
        self.conn.send_data(stream_id=stream_id, data=body, end_stream=True)
        self.flush()
        future: asyncio.Future[NotificationResult] = self.loop.create_future()
        self.requests[request.notification_id] = future
        self.request_streams[stream_id] = request.notification_id
        return await future

    def before_start(self) -> None:
        """The last look before a request's headers are written, once it holds its stream:
        raise to keep it off the wire (its channel goes back). Nothing awaits between here
        and the write."""

    async def _channel_for(self, size: int) -> int:
        """A stream id whose stream the server's flow-control windows let carry `size` bytes.

        Between taking the channel and opening its stream nothing may await: h2 refuses a
        stream id lower than one already opened. So the credit is awaited holding no channel,
        and a channel whose credit was spent by others while it was awaited goes back (its
        stream id is skipped, which HTTP/2 allows).
        """
        while True:
            while not self._fits(size):
                if self.transport is None or self.transport.is_closing():
                    raise ConnectionClosed("connection closed while waiting for flow control")
                if self._credit is None or self._credit.done():
                    self._credit = self.loop.create_future()
                await asyncio.shield(self._credit)
            stream_id = await self.free_channels.acquire()
            if self._fits(size):
                return stream_id
            self.free_channels.release()

    def _fits(self, size: int) -> bool:
        window = min(
            self.conn.outbound_flow_control_window,
            self.conn.remote_settings.initial_window_size,
        )
        return size <= window

    def _credit_given(self) -> None:
        if self._credit is not None and not self._credit.done():
            self._credit.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._credit_given()  # its waiters see the closed transport and fail

    def flush(self) -> None:
        """Write what h2 has queued at the end of this pass of the event loop, once."""
        self._last_active = self.loop.time()
        if self.inactivity_timer is None:
            self.inactivity_timer = self.loop.call_later(self.INACTIVITY_TIME, self._idle_check)
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        if self.transport is None or self.transport.is_closing():
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def refresh_inactivity_timer(self) -> None:
        self._last_active = self.loop.time()
        if self.inactivity_timer is None:
            self.inactivity_timer = self.loop.call_later(self.INACTIVITY_TIME, self._idle_check)

    def _idle_check(self) -> None:
        """Close a connection nothing was written to for INACTIVITY_TIME, as aioapns does."""
        idle = self.loop.time() - self._last_active
        if idle >= self.INACTIVITY_TIME:
            self.inactivity_timer = None
            self.close()
        else:
            self.inactivity_timer = self.loop.call_later(
                self.INACTIVITY_TIME - idle, self._idle_check
            )

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                headers = dict(event.headers or [])
                self._statuses[event.stream_id] = bytes(headers.get(b":status", b"")).decode()
            elif isinstance(event, DataReceived):
                # Give the credit back at once: nothing here buffers more than one body.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._bodies[event.stream_id] = self._bodies.get(event.stream_id, b"") + bytes(
                    event.data or b""
                )
            elif isinstance(event, StreamEnded):
                self._finish(event.stream_id, None)
            elif isinstance(event, StreamReset):
                self._finish(
                    event.stream_id, ConnectionClosed(f"stream reset by APNs ({event.error_code})")
                )
            elif isinstance(event, WindowUpdated):
                self._credit_given()
            elif isinstance(event, RemoteSettingsChanged):
                # h2 keys the settings by int; aioapns annotates SettingCodes (an IntEnum).
                self.on_remote_settings_changed(cast(Any, event.changed_settings))
                self._credit_given()
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        self.flush()

    def _finish(self, stream_id: int, error: Exception | None) -> None:
        status = self._statuses.pop(stream_id, "")
        body = self._bodies.pop(stream_id, b"")
        notification_id = self.request_streams.pop(stream_id, None)
        if notification_id is None:
            return  # abandoned (timed out): its channel was given back then
        self.request_statuses.pop(notification_id, None)
        future = self.requests.pop(notification_id, None)
        self.free_channels.release()
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
            return
        reason, timestamp = reason_of(body) if status != "200" else (None, None)
        future.set_result(
            NotificationResult(notification_id, status, description=reason, timestamp=timestamp)
        )

    def _abandon(self, notification_id: str) -> None:
        """Forget a request nobody waits for any more, and cancel its stream on the wire."""
        self.requests.pop(notification_id, None)
        self.request_statuses.pop(notification_id, None)
        stream_id = next((s for s, n in self.request_streams.items() if n == notification_id), None)
        if stream_id is None:
            return  # cancelled before its stream was opened, or already finished
        del self.request_streams[stream_id]
        self._statuses.pop(stream_id, None)
        self._bodies.pop(stream_id, None)
        self.free_channels.release()
        try:
            self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        except StreamClosedError:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
