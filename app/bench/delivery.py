"""Delivery overhead: a campaign through Wavecast next to a bare client loop, same fake.

For FCM and for APNs, in one run: start the protocol fake in its own process, send the same
tokens once with a bare loop of the client library (`send_each_async` in batches of 500;
aioapns with up to 1,000 requests in flight), then once as an unthrottled one-wave campaign
through the engine, the ledger and the providers (four send loops, as a worker runs them).
Prints messages/s for both and the ratio; exits 1 when Wavecast is below 90 % of the bare loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import firebase_admin
from aioapns import APNs, NotificationRequest, PushType
from firebase_admin import credentials, messaging
from sqlalchemy import text

from app.auth.principal import SYSTEM
from app.bench.report import Figure, at_least, reported
from app.campaigns import service as campaigns
from app.campaigns.control import Control
from app.campaigns.schemas import CampaignCreate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.providers.apns import ApnsCredentials
from app.delivery.providers.apns import _client as apns_client
from app.delivery.sender import SenderDeps, pump
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from workers.providers import real_providers

TARGET_RATIO = 0.90
PUMPS = 4
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


async def bare_fcm(account: Path, url: str, tokens: list[str]) -> float:
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(account)), name=f"bare-{os.getpid()}-{time.time()}"
    )
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{app.project_id}/messages:send"
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
    started = time.perf_counter()
    for batch in batches:
        answer = await messaging.send_each_async(batch, app=app)
        assert answer.failure_count == 0
    elapsed = time.perf_counter() - started
    await service._async_client.aclose()
    return len(tokens) / elapsed


async def bare_apns(info: dict[str, Any], tokens: list[str]) -> float:
    client: APNs = apns_client(
        ApnsCredentials(info["key_file"], info["key_id"], info["team_id"], TOPIC),
        sandbox=False,
        url=info["url"],
        ca_file=info["ca_file"],
    )
    limit = asyncio.Semaphore(1000)

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
    return len(tokens) / (time.perf_counter() - started)


async def through_wavecast(settings: Settings, registrations: list[DeviceRegistration]) -> float:
    runtime = await Runtime.start(settings)
    control = Control(runtime.redis)
    providers = real_providers(settings)
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DELETE FROM delivery"))
            await conn.execute(text("DELETE FROM campaign_wave"))
            await conn.execute(text("DELETE FROM campaign"))
            await conn.execute(text("DELETE FROM device"))
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
        started = time.perf_counter()
        await asyncio.gather(*(pump(deps, campaign.id, budget_seconds=600) for _ in range(PUMPS)))
        elapsed = time.perf_counter() - started
        async with runtime.engine.connect() as conn:
            sent = (
                await conn.execute(text("SELECT count(*) FROM delivery WHERE status = 'sent'"))
            ).scalar_one()
        assert sent == len(registrations), f"only {sent} of {len(registrations)} sent"
        return len(registrations) / elapsed
    finally:
        await providers.aclose()
        await runtime.close()


async def run(settings: Settings, count: int) -> list[tuple[str, float, float]]:
    results = []
    work = Path(tempfile.mkdtemp(prefix="wavecast-bench-"))
    account = work / "service-account.json"
    with fake_process("fcm", "--service-account", str(account)) as fcm:
        tokens = [f"bench-{i}" for i in range(count)]
        bare = await bare_fcm(account, fcm["url"], tokens)
        real = settings.model_copy(
            update={
                "provider": ProviderMode.real,
                "fcm_credentials": account,
                "fcm_endpoint": fcm["url"],
            }
        )
        ours = await through_wavecast(
            real,
            [DeviceRegistration(token=t, platform="android") for t in tokens],
        )
        results.append(("fcm", bare, ours))
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
        bare = await bare_apns(apns, tokens)
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
        ours = await through_wavecast(
            real,
            [
                DeviceRegistration(token=t, platform="ios", apns_environment="production")
                for t in tokens
            ],
        )
        results.append(("apns", bare, ours))
    return results


DESCRIPTION = "campaign send rate vs a bare client loop, FCM and APNs fakes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=20_000)


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    figures = []
    for name, bare, ours in asyncio.run(run(settings, args.devices)):
        figures += [
            reported("delivery", f"{name} bare loop", bare, "msg/s"),
            reported("delivery", f"{name} through wavecast", ours, "msg/s"),
            at_least("delivery", f"{name} ratio", ours / bare, "x", TARGET_RATIO),
        ]
    return figures
