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
  cancelled request is forgotten and its stream reset (CANCEL), and a late answer is dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aioapns.common import NotificationRequest, NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import StreamClosedError


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
        self._statuses: dict[int, str] = {}
        self._bodies: dict[int, bytes] = {}

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        try:
            result: NotificationResult = await super().send_notification(request)
        except asyncio.CancelledError:
            self._abandon(request.notification_id)
            raise
        return result

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
            elif isinstance(event, RemoteSettingsChanged):
                # h2 keys the settings by int; aioapns annotates SettingCodes (an IntEnum).
                self.on_remote_settings_changed(cast(Any, event.changed_settings))
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
