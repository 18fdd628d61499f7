"""Load driver for the API benchmark, run as its own process:
`python -m wavecast_tools.bench.api_driver`.

N keep-alive HTTP/1.1 connections, each sending its next request as soon as the previous one
is answered, for a warm-up, then for `--seconds` while every answer's latency is kept. Prints
one JSON object: requests and errors in the measured period, its length, and the latencies'
p50/p99 (ms). A separate process, so the driver's own CPU is not the API's.

With `--rate R` the load is paced instead: request k is due at R per second from the start
(`start + k / R`), and the next free connection sends it at that instant, or at once when it
is late. Its latency runs from when it was due, not from when it left: a server that falls
behind makes the requests queued behind it late, and the late ones count (no coordinated
omission). This is the latency a service answering R requests a second gives its callers;
unpaced, every connection is always waiting on the server, and the latency is the server's
queue of `N` requests at its saturation.

The client is a few lines over asyncio streams (uvloop when installed), not httpx: at a
thousand requests a second and more, httpx spends more CPU per request than the API under
test, and on a two-core machine that CPU comes out of the API's core. Answers are read by
`Content-Length` (FastAPI and Starlette always send it for these endpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from wavecast_tools.bench.report import percentile

# The status counted for a request whose connection closed before its answer.
DROPPED = 599


def device_body(number: int) -> dict[str, Any]:
    """A new device each time: the registration path that inserts."""
    return {
        "token": f"load-{os.getpid()}-{number}",
        "platform": "android",
        "locale": "pl-PL",
        "timezone": "Europe/Warsaw",
        "app_version": "5.12.1",
        "tags": ["premium"],
    }


def request_bytes(method: str, path: str, host: str, key: str, body: bytes | None) -> bytes:
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {key}",
        "Accept: application/json",
    ]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request on a kept-alive connection and read its whole answer; its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def requests_for(target: str, campaign: str, host: str, key: str) -> Callable[[int], bytes]:
    if target == "devices":
        return lambda n: request_bytes(
            "POST", "/v1/devices", host, key, json.dumps(device_body(n)).encode()
        )
    fixed = request_bytes("GET", f"/v1/campaigns/{campaign}", host, key, None)
    return lambda _n: fixed


def due_times(started: float, rate: float | None) -> Callable[[], float | None]:
    """When the next request is due: None unpaced (send at once), else one every 1/rate
    seconds from `started`, in the order connections ask."""
    if rate is None:
        return lambda: None
    if rate <= 0:
        raise ValueError(f"--rate must be positive, not {rate}")
    slots = itertools.count()
    return lambda: started + next(slots) / rate


async def drive(
    url: str,
    key: str,
    target: str,
    campaign: str,
    concurrency: int,
    warmup: float,
    seconds: float,
    rate: float | None = None,
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    make = requests_for(target, campaign, f"{host}:{port}", key)
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    measure_from = started + warmup
    measure_until = measure_from + seconds
    next_due = due_times(started, rate)

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                request = make(next(numbers))
                due = next_due()
                if due is not None and due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                sent = time.perf_counter() if due is None else due
                if sent >= measure_until:
                    return
                try:
                    status = await exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    # The server closed the connection (an error answer's `Connection:
                    # close`, say): counted as an error, and a new connection made.
                    status = DROPPED
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                done = time.perf_counter()
                if measure_from <= sent and done <= measure_until:
                    latencies.append(done - sent)
                    statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    errors = sum(count for status, count in statuses.items() if status >= 300)
    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": {str(status): count for status, count in statuses.items()},
        "seconds": seconds,
        "paced_rate": rate,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wavecast_tools.bench.api_driver")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="API key (or - to read it from stdin)")
    parser.add_argument("--target", choices=("devices", "campaign"), required=True)
    parser.add_argument("--campaign", default="", help="campaign id, for --target campaign")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="pace: requests/s offered")
    args = parser.parse_args(argv)
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    import uvloop

    result = uvloop.run(
        drive(
            args.url,
            key,
            args.target,
            args.campaign,
            args.concurrency,
            args.warmup,
            args.seconds,
            args.rate,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
