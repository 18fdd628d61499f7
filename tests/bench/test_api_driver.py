"""The API benchmark's load driver against a small HTTP/1.1 server of the test's own: what it
sends, how it reads answers on kept-alive connections, and how it counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from wavecast_tools.bench.api_driver import DROPPED, drive


class Server:
    """Answers each request with the next status of `statuses`; closes the connection after
    every `close_every`-th answer (0: never)."""

    def __init__(self, statuses: list[int], close_every: int = 0) -> None:
        self.statuses = statuses
        self.close_every = close_every
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
