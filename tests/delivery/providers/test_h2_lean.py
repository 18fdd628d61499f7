"""The HTTP/2 cost cuts (app.delivery.providers.h2_lean) and the APNs request path built on
them (apns_protocol.ApnsProtocol): same protocol on the wire, less work per request."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from aioapns.common import NotificationRequest, PushType
from hypothesis import given, settings
from hypothesis import strategies as st

from app.delivery.providers.apns_protocol import LEAN_H2, ApnsProtocol, Payload
from app.delivery.providers.h2_lean import FastH2Connection, PlainEncoder


def _pair(client_cls: type[h2.connection.H2Connection], limit: int) -> tuple[Any, Any]:
    """A client and a server connection joined in memory; the server allows `limit` streams."""
    client = client_cls(config=h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    server.local_settings = h2.settings.Settings(
        client=False,
        initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit},
    )
    client.initiate_connection()
    server.initiate_connection()
    _exchange(client, server)
    return client, server


def _exchange(client: Any, server: Any) -> list[h2.events.Event]:
    events = []
    for _ in range(4):
        events += server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return events


REQUEST = [(":method", "POST"), (":scheme", "https"), (":path", "/x"), (":authority", "a")]


def _run(client_cls: type[h2.connection.H2Connection], ops: list[str], limit: int) -> list[str]:
    """Open streams and let the server finish the oldest open one; what happened each step."""
    client, server = _pair(client_cls, limit)
    next_id = 1
    open_ids: list[int] = []
    outcomes = []
    for op in ops:
        if op == "open":
            try:
                client.send_headers(next_id, REQUEST, end_stream=True)
            except h2.exceptions.TooManyStreamsError:
                outcomes.append("refused")
                continue
            open_ids.append(next_id)
            next_id += 2
            _exchange(client, server)
            outcomes.append("opened")
        elif open_ids:
            stream_id = open_ids.pop(0)
            server.send_headers(stream_id, [(":status", "200")], end_stream=True)
            _exchange(client, server)
            outcomes.append("finished")
    # Closed streams are forgotten at the latest when the table reaches the limit.
    assert len(client.streams) <= max(limit, len(open_ids))
    return outcomes


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["open", "open", "finish"]), max_size=60),
    limit=st.integers(min_value=1, max_value=6),
)
def test_fast_connection_enforces_the_stream_limit_exactly_as_h2_does(
    ops: list[str], limit: int
) -> None:
    assert _run(FastH2Connection, ops, limit) == _run(h2.connection.H2Connection, ops, limit)


def test_fast_connection_refuses_the_stream_over_the_limit() -> None:
    outcomes = _run(FastH2Connection, ["open"] * 4 + ["finish", "open", "open"], 3)
    assert outcomes == ["opened"] * 3 + ["refused", "finished", "opened", "refused"]


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20),
            st.text(min_size=0, max_size=60),
        ),
        max_size=10,
    )
)
def test_plain_encoder_round_trips_and_never_huffman_codes(headers: list[tuple[str, str]]) -> None:
    block = PlainEncoder().encode(headers)
    decoded = hpack.Decoder().decode(block)
    assert decoded == headers
    # Every literal travels raw: its bytes are in the block as they are.
    assert all(value.encode() in block for _name, value in headers)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None


class _Auth:
    def get_header(self) -> str:
        return "bearer " + "J" * 200


async def _connected() -> tuple[ApnsProtocol, _Transport, h2.connection.H2Connection]:
    """Our protocol on a recording transport, past the server's SETTINGS."""
    loop = asyncio.get_running_loop()
    protocol = ApnsProtocol("com.example.wavecast", loop, None, _Auth())
    transport = _Transport()
    protocol.connection_made(transport)
    server = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    protocol.data_received(server.data_to_send())
    await asyncio.sleep(0)
    return protocol, transport, server


async def test_requests_go_out_together_with_repeating_headers_indexed() -> None:
    protocol, transport, server = await _connected()
    server.receive_data(b"".join(transport.writes))
    sent_before = len(transport.writes)

    body = Payload(b'{"aps":{"alert":{"title":"T","body":"B"}}}')
    tasks = [
        asyncio.ensure_future(
            protocol.send_notification(
                NotificationRequest(
                    device_token=f"{i:064x}",
                    message=body,  # type: ignore[arg-type]
                    push_type=PushType.ALERT,
                    time_to_live=60,
                    priority=10,
                )
            )
        )
        for i in range(3)
    ]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # Three requests, one write to the transport.
    assert len(transport.writes) == sent_before + 1
    events = server.receive_data(b"".join(transport.writes[sent_before:]))
    requests = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    bodies = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
    assert [dict(r.headers)[b":path"] for r in requests] == [
        f"/3/device/{i:064x}".encode() for i in range(3)
    ]
    assert bodies == [body.body] * 3
    first = dict(requests[0].headers)
    assert first[b"authorization"] == b"bearer " + b"J" * 200
    assert first[b"apns-push-type"] == b"alert"
    assert first[b"apns-priority"] == b"10"
    assert b"apns-expiration" in first
    # Per-request values never enter the table; the JWT does, once per connection.
    assert all(
        isinstance(h, hpack.NeverIndexedHeaderTuple)
        for r in requests
        for h in r.headers
        if h[0] in (b":path", b"apns-id", b"apns-expiration")
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_the_request_path_skips_h2s_header_rework() -> None:
    assert LEAN_H2.client_side
    assert not LEAN_H2.validate_outbound_headers
    assert not LEAN_H2.normalize_outbound_headers
    # Answers come from the network: still validated.
    assert LEAN_H2.validate_inbound_headers


@pytest.mark.parametrize("count", [1, 50])
async def test_the_header_block_shrinks_once_the_jwt_is_indexed(count: int) -> None:
    protocol, transport, _server = await _connected()
    sizes = []
    tasks = []
    for i in range(count + 1):
        start = len(b"".join(transport.writes))
        tasks.append(
            asyncio.ensure_future(
                protocol.send_notification(
                    NotificationRequest(
                        device_token=f"{i:064x}",
                        message=Payload(b"{}"),  # type: ignore[arg-type]
                    )
                )
            )
        )
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        sizes.append(len(b"".join(transport.writes)) - start)
    # The first request carries the 207-byte JWT; later ones refer to it by index.
    assert all(size < sizes[0] - 150 for size in sizes[1:])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
