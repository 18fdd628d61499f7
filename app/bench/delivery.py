"""Delivery overhead: a campaign through Wavecast next to a bare client loop, same fake.

For FCM and for APNs: start the protocol fake in its own process (HTTP/2 over TLS, as the
real services speak), then `--repeat` times, back to back: send the tokens with a bare loop of
the client library (FCM: `send_each_async` in batches of 500, once one call after another and
once with as many calls in flight as the campaign has send loops, the faster counting; APNs: aioapns
with as many requests in flight and connections as the APNs provider uses), then as an
unthrottled one-wave campaign through the engine, the ledger and the providers (four send
loops, as a worker runs them). Prints the medians of both rates and of the side-by-side ratios
(exits 1 when Wavecast is below 90 % of the bare loop), and where the send loops' time went:
the share of their wall time in each sender stage (claim, throttle, checks, provider, record)
and, inside the provider stage, building payloads.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol
from firebase_admin import credentials, messaging
from sqlalchemy import text

from app.auth.principal import SYSTEM
from app.bench.report import Figure, at_least, median, reported
from app.campaigns import service as campaigns
from app.campaigns.control import Control
from app.campaigns.schemas import CampaignCreate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.providers import apns as apns_provider
from app.delivery.sender import STAGES, SenderDeps, pump
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from workers.providers import real_providers

TARGET_RATIO = 0.90
PUMPS = 4
DEFAULT_DEVICES = 20_000
TOPIC = "com.example.wavecast"


@contextmanager
def fake_process(kind: str, *args: str) -> Iterator[dict[str, Any]]:
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fake",
            kind,
            "--port",
            "0",
            "--recording",
            "light",
            "--ready-file",
            str(ready),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the {kind} fake did not start")
            time.sleep(0.05)
        yield json.loads(ready.read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Side:
    """One provider's figures over the repeated runs."""

    provider: str
    # (bare msg/s, wavecast msg/s), one pair per repetition, measured back to back.
    pairs: list[tuple[float, float]] = field(default_factory=list)
    # FCM: the two bare loops of each repetition (one call in flight, PUMPS in flight).
    bare_variants: list[tuple[float, float]] = field(default_factory=list)
    # Sender stage -> seconds summed over every send loop, and the loops' summed wall time.
    stages: dict[str, float] = field(default_factory=dict)
    loop_seconds: float = 0.0
    payload_seconds: float = 0.0

    @property
    def bare(self) -> float:
        return median(b for b, _ in self.pairs)

    @property
    def ours(self) -> float:
        return median(o for _, o in self.pairs)

    @property
    def ratio(self) -> float:
        # The median of the side-by-side ratios: load drifting between repetitions (a shared
        # machine) cancels within each pair.
        return median(o / b for b, o in self.pairs)


async def bare_fcm(account: Path, url: str, tokens: list[str], calls_in_flight: int) -> float:
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(account)), name=f"bare-{os.getpid()}-{time.time()}"
    )
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{app.project_id}/messages:send"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Message.token -> fid
        batches = [
            [
                messaging.Message(
                    token=t, notification=messaging.Notification(title="Statement", body="Ready")
                )
                for t in tokens[i : i + 500]
            ]
            for i in range(0, len(tokens), 500)
        ]
    await messaging.send_each_async(batches[0][:1], app=app)  # token exchange, warm pool
    calls = asyncio.Semaphore(calls_in_flight)

    async def one(batch: list[messaging.Message]) -> None:
        async with calls:
            answer = await messaging.send_each_async(batch, app=app)
        assert answer.failure_count == 0, answer.responses[0].exception

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in batches))
    elapsed = time.perf_counter() - started
    await service._async_client.aclose()
    return len(tokens) / elapsed


async def bare_apns(info: dict[str, Any], tokens: list[str]) -> float:
    client = APNs(
        key=await asyncio.to_thread(Path(info["key_file"]).read_text),
        key_id=info["key_id"],
        team_id=info["team_id"],
        topic=TOPIC,
        use_sandbox=False,
        ssl_context=ssl.create_default_context(cafile=info["ca_file"]),
        max_connections=apns_provider.MAX_CONNECTIONS,
    )
    parts = urlsplit(info["url"])
    client.pool.protocol_class = type(
        "BareApns",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port},
    )
    limit = asyncio.Semaphore(apns_provider.CONCURRENCY)

    async def one(token: str) -> None:
        async with limit:
            result = await client.send_notification(
                NotificationRequest(
                    device_token=token,
                    message={"aps": {"alert": {"title": "Statement", "body": "Ready"}}},
                    push_type=PushType.ALERT,
                )
            )
            assert result.is_successful, result.description

    await one(tokens[0])
    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tokens))
    rate = len(tokens) / (time.perf_counter() - started)
    client.pool.close()
    return rate


async def through_wavecast(
    settings: Settings,
    registrations: list[DeviceRegistration],
    side: Side,
    profile: Path | None,
) -> float:
    runtime = await Runtime.start(settings)
    control = Control(runtime.redis)
    providers = real_providers(settings)
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DELETE FROM delivery"))
            await conn.execute(text("DELETE FROM campaign_wave"))
            await conn.execute(text("DELETE FROM campaign"))
            await conn.execute(text("DELETE FROM device"))
            # The benchmark owns its database and Redis db: a switch left engaged (by a test
            # run sharing them, say) would refuse the campaign.
            await conn.execute(text("UPDATE kill_switch SET engaged = false"))
        await runtime.redis.flushdb()
        now = utcnow()
        rows = [devices_service.registration_row(r, now) for r in registrations]
        for start in range(0, len(rows), 10_000):
            async with unit_of_work(runtime.sessionmaker) as session:
                await devices_service.register_many(session, rows[start : start + 10_000])
        body = CampaignCreate.model_validate(
            {
                "name": "bench",
                "kind": "live",
                "content": {"title": "Your statement is ready", "body": "Log in to see it."},
                "audience": {"rules": {"everyone": True}},
                "rollout": {"waves": [{"percent": 100}]},
                "throttle": {"per_second": 1_000_000},
            }
        )
        async with unit_of_work(runtime.sessionmaker) as session:
            campaign = await campaigns.create(session, settings, SYSTEM, body)
            campaign = await campaigns.start(
                session, settings, SYSTEM, campaign.id, override_reason=None, reason="bench"
            )
        await control.publish_campaign(campaign)
        deps = SenderDeps(settings, runtime.sessionmaker, control, providers.route, "bench")
        await engine.tick(runtime.sessionmaker, control, settings)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        reports = []
        # As a worker does: send loops run again while rows are open (a row whose request
        # timed out comes back after its backoff), so the rate counts retries too.
        while time.perf_counter() - started < 3600:
            round_ = await asyncio.gather(
                *(pump(deps, campaign.id, budget_seconds=3600) for _ in range(PUMPS))
            )
            reports += round_
            # The engine releases a wave in chunks (its first 5,000 rows, then more each
            # tick), as a worker's ticks do while the send loops run.
            await engine.tick(runtime.sessionmaker, control, settings)
            async with runtime.engine.connect() as conn:
                still_open = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM delivery "
                            "WHERE status IN ('queued', 'retrying', 'sending')"
                        )
                    )
                ).scalar_one()
            if not still_open:
                break
            if not any(r.batches for r in round_):
                await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        if profiler and profile:
            profiler.disable()
            await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(profiler.dump_stats, profile / f"{side.provider}.pstats")
        async with runtime.engine.connect() as conn:
            sent = (
                await conn.execute(text("SELECT count(*) FROM delivery WHERE status = 'sent'"))
            ).scalar_one()
        assert sent == len(registrations), f"only {sent} of {len(registrations)} sent"
        side.loop_seconds += PUMPS * elapsed
        for report in reports:
            for stage, seconds in report.seconds.items():
                side.stages[stage] = side.stages.get(stage, 0.0) + seconds
        side.payload_seconds += sum(
            p.payload_seconds for p in providers.by_platform.values() if p.name == side.provider
        )
        return len(registrations) / elapsed
    finally:
        await providers.aclose()
        await runtime.close()


async def run(
    settings: Settings, count: int, only: set[str], profile: Path | None, repeat: int
) -> list[Side]:
    sides = []
    work = Path(tempfile.mkdtemp(prefix="wavecast-bench-"))
    account = work / "service-account.json"
    if "fcm" in only:
        with fake_process(
            "fcm", "--tls", "--cert-dir", str(work / "tls"), "--service-account", str(account)
        ) as fcm:
            # Read by httpx when each client is built: both sides trust the fake's CA alike.
            os.environ["SSL_CERT_FILE"] = fcm["ca_file"]
            tokens = [f"bench-{i}" for i in range(count)]
            real = settings.model_copy(
                update={
                    "provider": ProviderMode.real,
                    "fcm_credentials": account,
                    "fcm_endpoint": fcm["url"],
                }
            )
            devices = [DeviceRegistration(token=t, platform="android") for t in tokens]
            side = Side("fcm")
            for i in range(repeat):
                # The baseline is the faster of two simple loops with the library's own
                # client: one call after another, and as many calls in flight as the
                # campaign side has send loops.
                sequential = await bare_fcm(account, fcm["url"], tokens, 1)
                parallel = await bare_fcm(account, fcm["url"], tokens, PUMPS)
                side.bare_variants.append((sequential, parallel))
                ours = await through_wavecast(real, devices, side, profile if i == 0 else None)
                side.pairs.append((max(sequential, parallel), ours))
            sides.append(side)
    if "apns" in only:
        with fake_process(
            "apns",
            "--environment",
            "production",
            "--lenient-environment",
            "--cert-dir",
            str(work / "tls"),
            "--key-file",
            str(work / "AuthKey.p8"),
        ) as apns:
            tokens = [f"{i:064x}" for i in range(count)]
            real = settings.model_copy(
                update={
                    "provider": ProviderMode.real,
                    "apns_key": Path(apns["key_file"]),
                    "apns_key_id": apns["key_id"],
                    "apns_team_id": apns["team_id"],
                    "apns_topic": TOPIC,
                    "apns_production_url": apns["url"],
                    "apns_ca_file": Path(apns["ca_file"]),
                }
            )
            devices = [
                DeviceRegistration(token=t, platform="ios", apns_environment="production")
                for t in tokens
            ]
            side = Side("apns")
            for i in range(repeat):
                bare = await bare_apns(apns, tokens)
                ours = await through_wavecast(real, devices, side, profile if i == 0 else None)
                side.pairs.append((bare, ours))
            sides.append(side)
    return sides


DESCRIPTION = "campaign send rate vs a bare client loop, FCM and APNs fakes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="per provider")
    parser.add_argument(
        "--repeat", type=int, default=3, help="bare/wavecast pairs per provider (medians)"
    )
    parser.add_argument(
        "--only", choices=("fcm", "apns"), action="append", help="one provider (repeatable)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of the first Wavecast run to DIR/<provider>.pstats",
    )


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    figures = []
    only = set(args.only or ("fcm", "apns"))
    for side in asyncio.run(run(settings, args.devices, only, args.profile, args.repeat)):
        name = side.provider
        if side.bare_variants:
            figures += [
                reported(
                    "delivery",
                    f"{name} bare loop, 1 call in flight",
                    median(s for s, _ in side.bare_variants),
                    "msg/s",
                ),
                reported(
                    "delivery",
                    f"{name} bare loop, {PUMPS} calls in flight",
                    median(p for _, p in side.bare_variants),
                    "msg/s",
                ),
            ]
        figures += [
            reported("delivery", f"{name} bare loop", side.bare, "msg/s"),
            reported("delivery", f"{name} through wavecast", side.ours, "msg/s"),
            at_least("delivery", f"{name} ratio", side.ratio, "x", TARGET_RATIO),
        ]
        # Where the send loops' wall time went (the loops overlap, so each share is of the
        # loops' summed time); the rest is the loops' own bookkeeping (pre-send decisions,
        # outcome mapping, metrics). Payload building is part of the provider stage.
        for stage in STAGES:
            share = side.stages.get(stage, 0.0) / side.loop_seconds
            figures.append(reported("delivery", f"{name} time in {stage}", 100 * share, "%"))
        figures.append(
            reported(
                "delivery",
                f"{name} time building payloads",
                100 * side.payload_seconds / side.loop_seconds,
                "%",
            )
        )
    return figures
