"""Load driver for the API benchmark, run as its own process:
`python -m wavecast_tools.bench.api_driver`.

N concurrent connections (one httpx client, N tasks, each sending its next request as soon as
the previous one is answered) for a warm-up, then for `--seconds` while every answer's latency
is kept. Prints one JSON object: requests and errors in the measured period, its length,
and the latencies' p50/p99 (ms). A separate process, so the driver's own CPU is not the API's.
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
from collections.abc import Sequence
from typing import Any

import httpx

from wavecast_tools.bench.report import percentile


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


async def drive(
    url: str, key: str, target: str, campaign: str, concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    measure_from = started + warmup
    measure_until = measure_from + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= measure_until:
                return
            if target == "devices":
                answer = await client.post("/v1/devices", json=device_body(next(numbers)))
            else:
                answer = await client.get(f"/v1/campaigns/{campaign}")
            done = time.perf_counter()
            if measure_from <= sent and done <= measure_until:
                latencies.append(done - sent)
                statuses[answer.status_code] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=60,
    ) as client:
        await asyncio.gather(*(one(client) for _ in range(concurrency)))
    errors = sum(count for status, count in statuses.items() if status >= 300)
    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": {str(status): count for status, count in statuses.items()},
        "seconds": seconds,
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
    args = parser.parse_args(argv)
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    result = asyncio.run(
        drive(
            args.url,
            key,
            args.target,
            args.campaign,
            args.concurrency,
            args.warmup,
            args.seconds,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
