"""The API benchmark's load driver against a small HTTP/1.1 server of the test's own: what it
sends, how it reads answers on kept-alive connections, and how it counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from wavecast_tools.bench.api_driver import DROPPED, drive, due_times


class Server:
    """Answers each request with the next status of `statuses`; closes the connection after
    every `close_every`-th answer (0: never)."""

    def __init__(self, statuses: list[int], close_every: int = 0, delay: float = 0.0) -> None:
        self.statuses = statuses
        self.close_every = close_every
        self.delay = delay
        self.requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.rstrip(b"\r\n").split(b"\r\n")
                headers = {}
                for item in rest:
                    name, _, value = item.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                self.requests.append((line, headers, body))
                status = self.statuses[len(self.requests) % len(self.statuses)]
                if self.delay:
                    await asyncio.sleep(self.delay)
                payload = b'{"ok": true}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                answered += 1
                if self.close_every and answered % self.close_every == 0:
                    # Closed before the client's next request is read.
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    servers: list[asyncio.Server] = []

    async def start(server: Server) -> str:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for listening in servers:
        listening.close()


async def test_devices_are_new_tokens_with_the_key_on_kept_alive_connections(serve) -> None:  # type: ignore[no-untyped-def]
    server = Server([201])
    url = await serve(server)
    result = await drive(url, "wck_k", "devices", "", 4, 0.0, 0.5)
    assert result["requests"] > 10 and result["errors"] == 0
    assert result["statuses"] == {"201": result["requests"]}
    assert server.connections == 4
    tokens = set()
    for line, headers, body in server.requests:
        assert line == b"POST /v1/devices HTTP/1.1"
        assert headers[b"authorization"] == b"Bearer wck_k"
        assert headers[b"content-type"] == b"application/json"
        tokens.add(json.loads(body)["token"])
    assert len(tokens) == len(server.requests), "every registration is a new token"
    assert 0 < result["p50_ms"] <= result["p99_ms"]


async def test_campaign_reads_count_non_2xx_answers_as_errors(serve) -> None:  # type: ignore[no-untyped-def]
    server = Server([200, 401])
    url = await serve(server)
    result = await drive(url, "k", "campaign", "c-1", 2, 0.0, 0.5)
    assert {line for line, _, _ in server.requests} == {b"GET /v1/campaigns/c-1 HTTP/1.1"}
    assert result["errors"] == result["statuses"].get("401", 0) > 0


async def test_a_closed_connection_is_an_error_and_a_new_one_is_made(serve) -> None:  # type: ignore[no-untyped-def]
    server = Server([201], close_every=3)
    url = await serve(server)
    result = await drive(url, "k", "devices", "", 1, 0.0, 0.5)
    assert result["statuses"].get(str(DROPPED), 0) > 0
    assert result["errors"] == result["statuses"][str(DROPPED)]
    assert server.connections > 1


def test_paced_requests_are_due_one_per_interval_in_the_order_asked() -> None:
    due = due_times(100.0, 4.0)
    assert [due() for _ in range(5)] == [100.0, 100.25, 100.5, 100.75, 101.0]
    unpaced = due_times(100.0, None)
    assert unpaced() is None and unpaced() is None
    with pytest.raises(ValueError, match="--rate must be positive"):
        due_times(0.0, 0.0)


async def test_a_paced_load_offers_its_rate_to_a_server_that_keeps_up(serve) -> None:  # type: ignore[no-untyped-def]
    server = Server([201], delay=0.002)
    url = await serve(server)
    result = await drive(url, "k", "devices", "", 4, 0.0, 1.0, rate=100.0)
    # 100 requests due in the second; the last few may be answered after it ends.
    assert 90 <= result["requests"] <= 101
    assert result["paced_rate"] == 100.0
    # Sent when due, answered 2 ms later: nothing waits behind anything.
    assert result["p99_ms"] < 30


async def test_a_paced_load_counts_the_wait_behind_a_server_that_falls_behind(serve) -> None:  # type: ignore[no-untyped-def]
    # One connection to a server taking 20 ms an answer (50/s), offered 100/s: each request
    # is due before the one ahead of it is answered, so the queue grows for the whole
    # second, and the latency counted from when each was due grows with it.
    server = Server([201], delay=0.02)
    url = await serve(server)
    paced = await drive(url, "k", "devices", "", 1, 0.0, 1.0, rate=100.0)
    unpaced = await drive(url, "k", "devices", "", 1, 0.0, 1.0)
    assert unpaced["p99_ms"] < 60
    assert paced["p99_ms"] > 200
    assert paced["p50_ms"] > unpaced["p99_ms"]
