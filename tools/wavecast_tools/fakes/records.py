"""What a fake received and what it answered.

Recording sits on the hot path of every throughput benchmark, so a record is a slotted object
appended to a list: no copying, no serialisation, no locking. The request body is kept as the
raw bytes and parsed again only when someone reads ``payload``: the fakes parse it to validate
it, but keeping that parse measured ~1 KB more per record, and the raw body is kept anyway. JSON
for the introspection endpoint is only produced when someone asks. Measured with aioapns
traffic: ~1.3 KB per record in ``full`` mode, ~0.75 KB in ``light``.

Thread safety: a fake may run on its own event loop in another thread. The store is only
*mutated* from that loop; readers in other threads take a snapshot with ``records()``, which copies
the list under the GIL in one C call and is therefore consistent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

#: ``full`` keeps headers and bodies; ``light`` keeps only who/when/what-answer (for
#: million-message benchmarks); ``off`` keeps nothing but the counter.
RecordingMode = Literal["full", "light", "off"]

_UNPARSED: Any = object()


@dataclass(slots=True)
class Record:
    """One request received by a fake and the answer it chose.

    Invariant: ``monotonic`` is ``time.monotonic()`` when the request's headers arrived. On Linux
    that clock is system-wide, so it is comparable with ``time.monotonic()`` taken in another
    process on the same machine (the kill-switch benchmark relies on this).
    """

    seq: int
    monotonic: float
    wall: float
    endpoint: str
    """``send`` for a provider push, ``token`` for an OAuth2 exchange, ``other`` otherwise."""
    method: str
    path: str
    token: str | None
    """The device token the request addressed, when it names one."""
    protocol: str
    connection_id: int
    stream_id: int
    peer_port: int | None = None
    """The client's TCP port (see ``server.Request.peer_port``)."""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    status: int = 0
    reason: str | None = None
    """APNs ``reason`` or FCM ``errorCode``/``status`` of an error answer; ``None`` on success."""
    message_id: str | None = None
    """``apns-id`` / FCM message name of a successful answer."""
    action: str = "answer"
    """``answer``, or the connection fault applied: ``drop``, ``goaway`` or ``reset``."""
    rule_id: str | None = None
    delay: float = 0.0
    answered: float | None = None
    """``time.monotonic()`` when the answer was written (None: not answered yet, or a fault)."""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    _payload: Any = _UNPARSED

    @property
    def payload(self) -> Any:
        """The request body parsed as JSON (``None`` when it is not JSON), parsed once."""
        if self._payload is _UNPARSED:
            try:
                self._payload = json.loads(self.body) if self.body else None
            except ValueError:
                self._payload = None
        return self._payload

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view, as served by ``GET /_fake/records``."""
        try:
            body_text: str | None = self.body.decode()
            body_b64 = None
        except UnicodeDecodeError:
            body_text, body_b64 = None, base64.b64encode(self.body).decode()
        return {
            "seq": self.seq,
            "monotonic": self.monotonic,
            "wall": self.wall,
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "token": self.token,
            "protocol": self.protocol,
            "connection_id": self.connection_id,
            "stream_id": self.stream_id,
            "peer_port": self.peer_port,
            "headers": self.headers,
            "payload": self.payload,
            "body": body_text,
            "body_base64": body_b64,
            "status": self.status,
            "reason": self.reason,
            "message_id": self.message_id,
            "action": self.action,
            "rule_id": self.rule_id,
            "delay": self.delay,
            "answered": self.answered,
            "response_headers": dict(self.response_headers),
            "response_body": self.response_body.decode(errors="replace"),
        }


class RecordStore:
    """Append-only list of :class:`Record` with a running sequence number.

    ``seq`` keeps increasing across ``clear()`` so an out-of-process reader polling with
    ``since=`` never sees a number twice.
    """

    def __init__(self, mode: RecordingMode = "full") -> None:
        self.mode: RecordingMode = mode
        self._records: list[Record] = []
        self._next_seq = 1
        self.received = 0
        """Requests counted since start or the last ``clear()``, whatever the mode."""

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1
        self.received += 1
        return seq

    def append(self, record: Record) -> None:
        if self.mode == "off":
            return
        if self.mode == "light":
            record.headers = {}
            record.body = b""
            record.response_headers = []
            record.response_body = b""
        self._records.append(record)

    def records(self, since: int = 0) -> list[Record]:
        """A snapshot of the records with ``seq > since``, oldest first."""
        snapshot = list(self._records)
        if since <= 0 or not snapshot:
            return snapshot
        # seq is strictly increasing, so bisect instead of scanning a million records.
        lo, hi = 0, len(snapshot)
        while lo < hi:
            mid = (lo + hi) // 2
            if snapshot[mid].seq <= since:
                lo = mid + 1
            else:
                hi = mid
        return snapshot[lo:]

    def sends(self) -> list[Record]:
        """Snapshot of the provider pushes only (no token exchanges or stray paths)."""
        return [r for r in self.records() if r.endpoint == "send"]

    def clear(self) -> None:
        self._records = []
        self.received = 0

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def __len__(self) -> int:
        return len(self._records)
