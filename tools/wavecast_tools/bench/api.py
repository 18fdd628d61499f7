"""API under load: `POST /v1/devices` and `GET /v1/campaigns/{id}`, Wavecast beside its ceiling.

A real `wavecast api` process (uvicorn; `--api-processes`, default 1, so the driver, the
database and Redis keep the machine's other core) on PostgreSQL and Redis, and beside it the
ceiling (`api_ceiling`): a minimal FastAPI + asyncpg application doing the same SQL, served
by uvicorn the same way, on the same database. `python -m wavecast_tools.bench.api_driver`
in its own process holds `--concurrency` keep-alive connections, each sending its next
request as soon as the last one is answered. After a 2 s warm-up, requests answered within
the measured `--seconds` are counted: requests/s, and p50/p99 of their latency (nearest
rank, as the driver timed them).

The p99 target is read at a paced load (`--paced-rate`, 1,000 requests/s by default, the rate
target, over the same connections; `api_driver --rate`): a service answering that many
requests a second, each request's latency counted from when it was due, so one that waits
behind a slow answer is late by the whole wait. Unpaced, every connection always has a
request at the server, so its latency is the server's queue of `--concurrency` requests at
saturation (about concurrency / rate at the median); that p99 is reported beside the
ceiling's own, which saturates the same way.

Each of `--repeat` rounds measures, per endpoint, Wavecast then the ceiling back to back, so
the two share the machine's state of the moment (the machine is shared); the ratio is taken
within a round and the figures are medians over rounds. Every device registration is a new
token (the inserting path); the campaign read is one campaign. Any non-2xx answer counts as
an error (target 0).

Wavecast runs with its rate limit on (`WAVECAST_API_RATE_LIMIT`, 1,000,000 per key per
second so that it never refuses): the figure is Wavecast as deployed, not with a layer taken
out. The limit is taken from Redis a lease at a time (`app.ops.ratelimit`); at this limit a
lease is bounded by its 0.05 s life, not by the rate, so one round trip serves the requests
of 0.05 s (some 50-100 here). A key limited to the default 500/s is served 25 to a round
trip, and below 40/s one, as before leases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from app.auth.models import Scope
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, median, reported

DESCRIPTION = "API requests/s and p99 under concurrent load, beside a minimal FastAPI + asyncpg"
ENDPOINTS = (("devices", "POST /v1/devices"), ("campaign", "GET /v1/campaigns/{id}"))
# Targets for one API process at 32 connections.
RATIO_TARGET = 0.7
RATE_TARGET = 1_000.0
P99_TARGET_MS = 50.0
# Never reached, so the limiter answers yes; its leases are still taken from Redis.
RATE_LIMIT = "1000000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=RATE_TARGET,
        help="requests/s offered for the p99 target (0: do not run the paced load)",
    )


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


@contextmanager
def serving(command: list[str], env: dict[str, str], log: Path, what: str) -> Iterator[str]:
    """`command` (an HTTP server taking `--port`) on a free port; yields its base URL once
    `/healthz` answers."""
    port = stack._free_port()
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            stack._wait_for(healthy, process, what, within=90)
            yield url
        finally:
            stack._stop([process])


def wavecast_api(settings: Settings, work: Path, processes: int) -> AbstractContextManager[str]:
    command = [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1"]
    env = stack.base_env(settings, WAVECAST_API_RATE_LIMIT=RATE_LIMIT)
    return serving([*command, "--workers", str(processes)], env, work / "api.log", "the API")


def ceiling_api(settings: Settings, work: Path) -> AbstractContextManager[str]:
    command = [sys.executable, "-m", "wavecast_tools.bench.api_ceiling"]
    return serving(command, stack.base_env(settings), work / "ceiling.log", "the ceiling API")


def _drive(
    url: str, key: str, target: str, campaign: uuid.UUID, args: Any, *, rate: float | None = None
) -> dict[str, Any]:
    pace = [] if rate is None else ["--rate", str(rate)]
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
            *pace,
        ],
        input=key + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    # Answered successfully: a server failing fast must not look fast.
    result["rate"] = (result["requests"] - result["errors"]) / args.seconds
    return result


def _side_by_side(
    url: str,
    ceiling_url: str,
    key: str,
    target: str,
    campaign: uuid.UUID,
    args: Any,
    label: str,
    *,
    rate: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wavecast, then the ceiling, under the same load; each side's figures printed."""
    ours = _drive(url, key, target, campaign, args, rate=rate)
    ceiling = _drive(ceiling_url, key, target, campaign, args, rate=rate)
    print(
        f"{label}: Wavecast {ours['rate']:.0f} req/s p99 {ours['p99_ms']:.1f} ms, ceiling "
        f"{ceiling['rate']:.0f} req/s p99 {ceiling['p99_ms']:.1f} ms",
        file=sys.stderr,
        flush=True,
    )
    return ours, ceiling


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    key, campaign = asyncio.run(_prepare(settings))
    work = stack.workdir("api")
    rounds: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {t: [] for t, _ in ENDPOINTS}
    paced: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {t: [] for t, _ in ENDPOINTS}
    rate = args.paced_rate or None
    with (
        wavecast_api(settings, work, args.api_processes) as url,
        ceiling_api(settings, work) as ceiling_url,
    ):
        for number in range(args.repeat):
            for target, name in ENDPOINTS:
                both = (url, ceiling_url, key, target, campaign, args)
                rounds[target].append(_side_by_side(*both, f"round {number + 1} {name}"))
                if rate is not None:
                    label = f"round {number + 1} {name} at {rate:.0f} req/s offered"
                    paced[target].append(_side_by_side(*both, label, rate=rate))
    figures: list[Figure] = []
    for target, name in ENDPOINTS:
        pairs = rounds[target]
        ours_rate = median(o["rate"] for o, _ in pairs)
        ceiling_rate = median(c["rate"] for _, c in pairs)
        figures += [
            at_least("api", f"{name} requests/s", ours_rate, "req/s", RATE_TARGET),
            reported("api", f"{name} p50", median(o["p50_ms"] for o, _ in pairs), "ms"),
            reported("api", f"{name} p99, saturated", median(o["p99_ms"] for o, _ in pairs), "ms"),
            reported("api", f"{name} ceiling requests/s", ceiling_rate, "req/s"),
            reported(
                "api", f"{name} ceiling p99, saturated", median(c["p99_ms"] for _, c in pairs), "ms"
            ),
            at_least(
                "api",
                f"{name} Wavecast / ceiling",
                median(o["rate"] / c["rate"] for o, c in pairs),
                "",
                RATIO_TARGET,
            ),
            at_most("api", f"{name} non-2xx answers", sum(o["errors"] for o, _ in pairs), "req", 0),
            at_most(
                "api",
                f"{name} ceiling non-2xx answers",
                sum(c["errors"] for _, c in pairs),
                "req",
                0,
            ),
        ]
        figures += _paced_figures(name, paced[target], rate)
    setup = (
        f"{args.concurrency} connections, {args.api_processes} API process(es), "
        f"median of {args.repeat} rounds"
    )
    figures.append(reported("api", f"load: {setup}", args.seconds, "s each"))
    return figures


def _paced_figures(
    name: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]], rate: float | None
) -> list[Figure]:
    """The p99 target, read at `rate` requests/s offered; when the paced load was not run
    (`--paced-rate 0`), the target is not shown met, and says so."""
    if rate is None or not pairs:
        return [
            Figure(
                "api", f"{name} p99: paced load not run", 0, "ms", f"<= {P99_TARGET_MS:.0f}", False
            )
        ]
    offered = f"at {rate:,.0f} req/s offered"
    return [
        reported(
            "api",
            f"{name} requests/s answered {offered}",
            median(o["rate"] for o, _ in pairs),
            "req/s",
        ),
        reported("api", f"{name} p50 {offered}", median(o["p50_ms"] for o, _ in pairs), "ms"),
        at_most(
            "api",
            f"{name} p99 {offered}",
            median(o["p99_ms"] for o, _ in pairs),
            "ms",
            P99_TARGET_MS,
        ),
        reported(
            "api", f"{name} ceiling p99 {offered}", median(c["p99_ms"] for _, c in pairs), "ms"
        ),
        at_most(
            "api", f"{name} non-2xx answers {offered}", sum(o["errors"] for o, _ in pairs), "req", 0
        ),
    ]
