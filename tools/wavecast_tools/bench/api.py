"""API under load: `POST /v1/devices` and `GET /v1/campaigns/{id}` from a second process.

A real `wavecast api` process (uvicorn; `--api-processes`, default 1, so the driver, the
database and Redis keep the machine's other core) on PostgreSQL and Redis, and
`python -m wavecast_tools.bench.api_driver` in its own process holding `--concurrency` connections,
each sending its next request as soon as the last one is answered. After a 2 s warm-up,
requests answered within the measured `--seconds` are counted: requests/s, and p50/p99 of
their latency (nearest rank, as the driver timed them). Every device registration is a new
token (the inserting path); the campaign read is one campaign. Any non-2xx answer counts as
an error (target 0). The API runs with `WAVECAST_API_RATE_LIMIT=0`: a per-key rate limit
would measure the limiter, not the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

from app.auth.models import Scope
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_most, reported

DESCRIPTION = "API requests/s and p99 under concurrent load from a second process"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api-processes", type=int, default=1)


async def _prepare(settings: Settings) -> tuple[str, uuid.UUID]:
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, 1000, tag="api", platform="android")
        campaign = await stack.start_campaign(runtime, tag="api", per_second=1)
        key = await stack.api_key(runtime, [Scope.devices_write, Scope.campaigns_read])
    finally:
        await runtime.close()
    return key, campaign


def _drive(url: str, key: str, target: str, campaign: uuid.UUID, args: Any) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wavecast_tools.bench.api_driver",
            "--url",
            url,
            "--key",
            "-",
            "--target",
            target,
            "--campaign",
            str(campaign),
            "--concurrency",
            str(args.concurrency),
            "--seconds",
            str(args.seconds),
        ],
        input=key + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    key, campaign = asyncio.run(_prepare(settings))
    work = stack.workdir("api")
    figures: list[Figure] = []
    with stack.api_process(settings, work, processes=args.api_processes) as url:
        for target, name in (
            ("devices", "POST /v1/devices"),
            ("campaign", "GET /v1/campaigns/{id}"),
        ):
            result = _drive(url, key, target, campaign, args)
            figures += [
                reported("api", f"{name} requests/s", result["requests"] / args.seconds, "req/s"),
                reported("api", f"{name} p50", result["p50_ms"], "ms"),
                reported("api", f"{name} p99", result["p99_ms"], "ms"),
                at_most("api", f"{name} non-2xx answers", result["errors"], "req", 0),
            ]
    setup = f"{args.concurrency} connections, {args.api_processes} API process(es)"
    figures.append(reported("api", f"load: {setup}", args.seconds, "s each"))
    return figures
