"""A tiny HTTP/1.1 server on 127.0.0.1 for wave check tests: it answers whatever the test
last set (a status, a body, a delay) and records the requests it got. Real sockets, so the
sources' httpx client, timeouts and parsing run for real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class LocalServer:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    # Seconds between two halves of the body: a server that drips its answer.
    drip: float = 0.0
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, value: Any, status: int = 200) -> None:
        self.status, self.body = status, json.dumps(value).encode()

    def prometheus_vector(self, *values: str) -> None:
        self.answer(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {"metric": {"job": f"api-{i}"}, "value": [1_765_000_000.0, v]}
                        for i, v in enumerate(values)
                    ],
                },
            }
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            parts = urlsplit(target)
            self.requests.append((parts.path, parse_qs(parts.query)))
            if self.delay:
                await asyncio.sleep(self.delay)
            body = self.body
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            half = len(body) // 2
            writer.write(body[:half])
            await writer.drain()
            if self.drip:
                await asyncio.sleep(self.drip)
            writer.write(body[half:])
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def local_server() -> AsyncIterator[LocalServer]:
    state = LocalServer()
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        server.close()
