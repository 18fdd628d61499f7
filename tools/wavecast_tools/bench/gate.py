"""Gate reaction: from the backend's metric going bad to the campaign paused.

`wavecast bench gate`. A real Prometheus (Debian's `prometheus`) scrapes a small backend
(`wavecast_tools.prometheus.MetricBackend`: one gauge, `backend_error_ratio`) every
`--scrape` seconds; one `wavecast worker` sends a campaign of `--devices` Android devices to
the FCM fake (a process of its own, every request recorded) in two waves, 10 % then 100 %,
with a hold of `--hold` seconds, and a `prometheus` check on the ratio (`lt 0.02`, every
`--interval` seconds, failure_limit 1).

The backend is healthy (0.01) while the first wave is sent. The instant the first wave has
finished (every row final), the benchmark sets the ratio to 0.25 and starts the clock; it
stops when a poll of the database (every 50 ms) first reads the campaign paused: the pause
was committed by then, so the figure is an upper bound by at most one poll.

Figures:
- **metric bad → campaign paused**: target ≤ interval + scrape + 2 s. The check's next run
  comes at most one interval after the change, Prometheus has the new sample at most one
  scrape after it, and the engine ticks every second.
- **provider requests for the next wave**: the FCM fake's requests whose `wavecast_ref`
  is a delivery of the second wave. Target 0. The hold is longer than the reaction, so
  without the check the second wave would have been released at its end: it is the check
  that stopped it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from sqlalchemy import func, select
from sqlmodel import col

from app.campaigns.models import CampaignWave
from app.delivery.models import Delivery
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools import prometheus as prom
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, reported
from wavecast_tools.simulator import ref_of

DESCRIPTION = "wave check reaction: a bad Prometheus metric to the campaign paused"
TAG = "gate"
GOOD, BAD = 0.01, 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--interval", type=int, default=5, help="the check's interval_seconds")
    parser.add_argument("--scrape", type=float, default=1.0, help="Prometheus scrape interval")
    parser.add_argument("--hold", type=int, default=30, help="the first wave's hold, seconds")
    parser.add_argument("--per-second", type=int, default=2_000)


async def _prepare(settings: Settings, devices: int) -> None:
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, devices, tag=TAG, platform="android")
    finally:
        await runtime.close()


async def _wave_finished(runtime: Runtime, campaign_id: uuid.UUID, index: int) -> bool:
    async with runtime.sessionmaker() as session:
        wave = await session.get(CampaignWave, (campaign_id, index))
        return wave is not None and wave.finished_at is not None


async def _waves_of(runtime: Runtime, refs: list[int]) -> dict[int, int]:
    """Provider requests per wave of the deliveries they carried."""
    counts: dict[int, int] = {}
    async with runtime.sessionmaker() as session:
        for start in range(0, len(refs), 10_000):
            rows = await session.execute(
                select(col(Delivery.wave), func.count())
                .where(col(Delivery.id).in_(refs[start : start + 10_000]))
                .group_by(col(Delivery.wave))
            )
            for wave, n in rows:
                counts[int(wave)] = counts.get(int(wave), 0) + int(n)
    return counts


async def _run(
    settings: Settings, args: argparse.Namespace, backend: prom.MetricBackend, url: str
) -> tuple[float, str]:
    runtime = await Runtime.start(settings)
    try:
        check = {
            "name": "backend errors",
            "prometheus": {"url": url, "query": prom.METRIC},
            "pass_when": {"lt": 0.02},
            "interval_seconds": args.interval,
            "failure_limit": 1,
        }
        rollout = {
            "waves": [{"percent": 10, "hold_seconds": args.hold}, {"percent": 100}],
            "checks": [check],
        }
        campaign_id = await stack.start_campaign(
            runtime, tag=TAG, per_second=args.per_second, rollout=rollout
        )
        deadline = time.monotonic() + 600
        while not await _wave_finished(runtime, campaign_id, 0):
            if time.monotonic() > deadline:
                raise SystemExit("wavecast bench gate: the first wave did not finish")
            await asyncio.sleep(0.05)
        backend.set(BAD)
        bad_at = backend.changed_at
        while (status := await stack.campaign_status(runtime, campaign_id)) == "running":
            if time.time() - bad_at > args.hold + 60:
                raise SystemExit("wavecast bench gate: the campaign never paused")
            await asyncio.sleep(0.05)
        reaction = time.time() - bad_at
        # Anything of the next wave would have reached the fake by now.
        await asyncio.sleep(3)
        return reaction, status
    finally:
        await runtime.close()


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    if prom.binary() is None:
        raise SystemExit("wavecast bench gate: prometheus is not installed (apt-get install it)")
    asyncio.run(_prepare(settings, args.devices))
    work = stack.workdir("gate")
    with (
        prom.MetricBackend(GOOD) as backend,
        prom.prometheus_server(backend, work / "prometheus", scrape_seconds=args.scrape) as url,
        stack.fake("fcm", work) as fake,
        stack.workers(settings, 1, work, **fake.env),
    ):
        reaction, status = asyncio.run(_run(settings, args, backend, url))
        refs = [r for r in (ref_of(rec.get("payload")) for rec in fake.records()) if r]
    by_wave = asyncio.run(_count(settings, refs))
    target = args.interval + args.scrape + 2
    setup = f"check every {args.interval} s, scrape every {args.scrape:g} s"
    return [
        at_most("gate", f"metric bad -> campaign paused ({setup})", reaction, "s", target),
        at_most(
            "gate",
            "provider requests for the next wave",
            sum(n for wave, n in by_wave.items() if wave >= 1),
            "req",
            0,
        ),
        reported("gate", "provider requests for the first wave", by_wave.get(0, 0), "req"),
        at_least("gate", f"campaign paused (1 = yes; it was {status})", status == "paused", "", 1),
    ]


async def _count(settings: Settings, refs: list[int]) -> dict[int, int]:
    runtime = await Runtime.start(settings)
    try:
        return await _waves_of(runtime, refs)
    finally:
        await runtime.close()
