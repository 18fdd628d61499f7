"""Throttle fidelity: campaigns at R messages/s, two worker processes, the fake's clock.

Two real `wavecast worker` processes send one live campaign per rate in `--rate` (one 100 %
wave, throttle R; defaults 200/s, 1,000/s and 2,000/s) through the real APNs provider (aioapns) to
`wavecast fake apns` (`--provider fcm` for firebase-admin). Every figure comes from the fake's
own request records (the instant each request's bytes were read):

- *max in any 1 s window*: the most requests in any window ``[t, t + 1 s)``, ``t`` sliding over
  the whole run, first and last requests included (target <= 1.05 R);
- *mean of steady 1 s windows*: windows aligned on the first request; the first (send loops
  starting) and the last (partial: the audience ran out) are left out (target >= 0.95 R);
  the lowest steady window is reported beside it;
- *unthrottled steady mean*: then a campaign with the throttle at its maximum, measured the
  same way: what this machine can send with two workers. A rate whose 95 % is above it cannot
  meet the mean target for reasons other than the throttle.

Second part, a new campaign on the FCM fake: once it sends, the fake answers every push
``429 QUOTA_EXCEEDED`` with ``Retry-After`` for a period (50 ms answer latency, as a real
provider takes; it also means a 429'd batch is wholly on the wire before its first answer).
Each 429 answer opens a window ``(answer, answer + Retry-After)``; requests that arrived inside
any window are counted (target 0). FCM, because its errors carry the response headers;
aioapns drops them, so APNs results have no Retry-After to honour.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, reported
from wavecast_tools.bench.timing import (
    Request,
    inside_by_source,
    inside_retry_after,
    sliding_max,
    steady_counts,
)

DESCRIPTION = "throttle fidelity (1 s windows) and Retry-After, two workers, FCM fake"
WORKERS = 2
MAX_RATIO = 1.05
MEAN_RATIO = 0.95
QUOTA_LATENCY = 0.05
UNTHROTTLED = 1_000_000
# A low, a middle and the rate; the machine's unthrottled ceiling with two workers,
# the fake, PostgreSQL and Redis is printed beside them (a busy 2-core machine may not reach
# 2,000/s at all, see docs/benchmarks.md).
DEFAULT_RATES = "200,1000,2000"
# The unthrottled audience: long enough for steady windows at any rate this machine reaches.
CEILING_SECONDS = 8
CEILING_GUESS = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate",
        default=DEFAULT_RATES,
        help=f"campaign throttles to measure, msg/s, comma-separated (default {DEFAULT_RATES})",
    )
    parser.add_argument(
        "--provider",
        choices=("apns", "fcm"),
        default="apns",
        help="fake for the fidelity part (the Retry-After part always uses FCM)",
    )
    parser.add_argument("--quota-rate", type=int, default=200, help="throttle, 429 part")
    parser.add_argument("--seconds", type=int, default=10, help="length of the steady campaign")
    parser.add_argument("--quota-seconds", type=float, default=1.0, help="429 period")
    parser.add_argument("--retry-after", type=int, default=2, help="Retry-After, seconds")


async def _until_done(
    runtime: Runtime,
    campaign_id: uuid.UUID,
    within: float,
    every: Callable[[], object] | None = None,
) -> None:
    """Wait for the campaign to complete, calling ``every`` at each look."""
    deadline = time.monotonic() + within
    while (status := await stack.campaign_status(runtime, campaign_id)) != "completed":
        if status in {"paused", "killed", "cancelled"} or time.monotonic() > deadline:
            raise RuntimeError(f"campaign {campaign_id} is {status}, not completed")
        if every is not None:
            every()
        await asyncio.sleep(0.25)


async def _wait_sends(fake: stack.Fake, since: int, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while fake.last_seq() - since < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} requests reached the fake in {within:.0f}s")
        await asyncio.sleep(0.05)


async def run(settings: Settings, args: argparse.Namespace) -> Result:
    rates = _rates(args.rate)
    work = stack.workdir("throttle")
    runtime = await Runtime.start(settings)
    result = Result()
    try:
        await stack.empty_stores(runtime)
        platform = "ios" if args.provider == "apns" else "android"
        for rate in rates:
            await stack.add_devices(
                runtime, rate * args.seconds, tag=f"steady-{rate}", platform=platform
            )
        await stack.add_devices(
            runtime, CEILING_SECONDS * CEILING_GUESS, tag="ceiling", platform=platform
        )
        quota_rate = args.quota_rate
        quota_devices = int(quota_rate * (3 + args.quota_seconds + args.retry_after))
        await stack.add_devices(runtime, quota_devices, tag="quota", platform="android")
        with (
            stack.fake(args.provider, work, recording="light") as fake,
            stack.workers(settings, WORKERS, work, **fake.env),
        ):
            await stack.workers_alive(runtime.redis, WORKERS)
            for rate in rates:
                since = fake.last_seq()
                steady = await stack.start_campaign(runtime, tag=f"steady-{rate}", per_second=rate)
                await _until_done(runtime, steady, within=args.seconds * 4 + 60)
                result.steady[rate] = [r.start for r in fake.sends(since)]
                fake.forget_records()
            # Side by side: an audience with no throttle to speak of, to tell a missed mean
            # caused by the throttle from one caused by what this machine can send.
            since = fake.last_seq()
            ceiling = await stack.start_campaign(runtime, tag="ceiling", per_second=UNTHROTTLED)
            await _until_done(runtime, ceiling, within=CEILING_SECONDS * 8 + 60)
            result.unthrottled = [r.start for r in fake.sends(since)]
        await stack.empty_stores(runtime, devices=False)
        with (
            stack.fake("fcm", work) as fake,
            stack.workers(settings, WORKERS, work, **fake.env) as procs,
        ):
            await stack.workers_alive(runtime.redis, WORKERS)
            since = fake.last_seq()
            quota = await stack.start_campaign(runtime, tag="quota", per_second=quota_rate)
            await _wait_sends(fake, since, quota_rate, within=60)
            # Which worker holds which connection, to tell whose requests were inside.
            fake_port = urlsplit(fake.url).port or 0
            ports = stack.client_ports(procs, fake_port)
            fake.add_rule(
                error="QUOTA_EXCEEDED",
                seconds=args.quota_seconds,
                retry_after=args.retry_after,
                latency=QUOTA_LATENCY,
            )
            await _until_done(
                runtime,
                quota,
                within=120,
                every=lambda: ports.update(stack.client_ports(procs, fake_port)),
            )
            result.quota = fake.sends(since, ports)
    finally:
        await runtime.close()
    return result


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--rate takes whole numbers separated by commas, not {text!r}") from None
    if not rates or any(rate < 1 for rate in rates):
        raise SystemExit(f"--rate takes rates of at least 1/s, not {text!r}")
    return rates


@dataclass
class Result:
    steady: dict[int, list[float]] = field(default_factory=dict)
    unthrottled: list[float] = field(default_factory=list)
    quota: list[Request] = field(default_factory=list)


def _steady(times: list[float]) -> list[int]:
    windows = steady_counts(times)
    if not windows:
        raise RuntimeError("a campaign was too short to have a steady window")
    return windows


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    result = asyncio.run(run(settings, args))
    ceiling = _steady(result.unthrottled)
    figures = [
        reported(
            "throttle",
            f"unthrottled steady mean ({args.provider}, {WORKERS} workers): this machine's ceiling",
            sum(ceiling) / len(ceiling),
            "req/s",
        )
    ]
    for rate, times in result.steady.items():
        windows = _steady(times)
        name = f"{args.provider}, R={rate:,}/s"
        steady = f"{len(windows)} steady windows"
        figures += [
            reported("throttle", f"requests sent ({name}, {WORKERS} workers)", len(times), "req"),
            at_most(
                "throttle",
                f"max in any 1 s window ({name})",
                sliding_max(times),
                "req",
                MAX_RATIO * rate,
            ),
            at_least(
                "throttle",
                f"mean of {steady} ({name})",
                sum(windows) / len(windows),
                "req/s",
                MEAN_RATIO * rate,
            ),
            reported("throttle", f"lowest of {steady} ({name})", min(windows), "req"),
        ]
    refused = [r for r in result.quota if r.status == 429]
    if not refused or any(r.retry_after is None for r in refused):
        raise RuntimeError("the fake answered no 429 with Retry-After")
    first = min(r.end for r in refused)
    resumed = [r.start for r in result.quota if r.start > first and r.status != 429]
    figures += [
        reported("throttle", f"429 answers (fcm, R={args.quota_rate:,}/s)", len(refused), "req"),
        at_most(
            "throttle",
            "requests inside a Retry-After window",
            len(inside_retry_after(result.quota)),
            "req",
            0,
        ),
        reported(
            "throttle",
            "first 429 answer to first accepted request",
            (min(resumed) - first) if resumed else float("nan"),
            "s",
        ),
    ]
    split = inside_by_source(result.quota)
    if split.own or split.other or split.unknown:
        figures += [
            reported("throttle", "inside: from a worker answered 429 itself", split.own, "req"),
            reported("throttle", "inside: from a worker not answered 429 yet", split.other, "req"),
            reported("throttle", "inside: from a worker not told apart", split.unknown, "req"),
        ]
    return figures
