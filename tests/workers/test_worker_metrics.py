"""The worker's /metrics endpoint, scraped over HTTP: what it counts is what the ledger holds,
its gauges follow the database, and it never stands in the way of delivery."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import commands
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import partitions
from app.delivery.models import Delivery, DeliveryStatus
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.ops.worker_metrics import CLAIMABLE_COUNT_CAP, months_ahead
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    run_engine,
    wait_for,
    worker_processes,
    workers_alive,
)
from workers.main import serve
from workers.metrics import MetricsServer, start_metrics_server

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "wavecast-worker.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def metrics_server(runtime: Runtime | None) -> AsyncIterator[str]:
    """The worker's endpoint on a free port, reading the gauges at every scrape."""
    server = MetricsServer(free_port(), host="127.0.0.1", max_age=0)
    server.attach(runtime.sessionmaker if runtime else None)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        await server.aclose()


async def scrape_text(url: str) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def scrape(url: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(await scrape_text(url)):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def by_label(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for (sample, labels), v in samples.items():
        if sample == name:
            found[tuple(dict(labels)[k] for k in keys)] = v
    return found


def grown(before: Samples, after: Samples, name: str, *keys: str) -> Counter[tuple[str, ...]]:
    """How much each series of a counter grew between two scrapes (the process's counters
    also count what earlier tests sent)."""
    old = by_label(before, name, *keys)
    return (
        Counter({k: int(v - old.get(k, 0.0)) for k, v in by_label(after, name, *keys).items()})
        - Counter()
    )


async def ledger_counts(runtime: Runtime, campaign_id: uuid.UUID) -> Counter[tuple[str, ...]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.provider, Delivery.status, func.count())  # type: ignore[call-overload]
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.provider, Delivery.status)
        )
        return Counter({(provider or "none", status): n for provider, status, n in rows.all()})


async def add_tokens(runtime: Runtime, tokens: list[str]) -> None:
    """Devices whose tokens ask the sandbox for a particular answer."""
    now = utcnow()
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=t, platform="android", locale="en-GB", app_version="5.0.0"),  # type: ignore[arg-type]
            now,
        )
        for t in tokens
    ]
    async with unit_of_work(runtime.sessionmaker) as session:
        await devices_service.register_many(session, rows)


async def test_the_endpoint_counts_what_the_ledger_recorded(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await add_devices(db, 40)
    await add_tokens(db, [f"sandbox-invalid-{i}" for i in range(3)] + ["sandbox-fail-0"])
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    async with metrics_server(db) as url:
        before = await scrape(url)
        assert value(before, "wavecast_worker_claimable_rows") == 0
        campaign_id = await create_and_start(client, headers, campaign_body())
        control = Control(db.redis)
        try:
            await engine.tick(db.sessionmaker, control, db.settings)
        finally:
            await control.watch.aclose()
        released = await scrape(url)
        queued = (await ledger_counts(db, campaign_id))["none", DeliveryStatus.queued.value]
        assert queued > 0
        assert value(released, "wavecast_worker_claimable_rows") == queued
        assert value(released, "wavecast_worker_campaigns", status="running") == 1

        await run_engine(db, campaign_id)
        after = await scrape(url)

    ledger = await ledger_counts(db, campaign_id)
    assert sum(ledger.values()) == 44
    assert {status for _provider, status in ledger} >= {"sent", "invalid_token", "failed"}
    assert grown(before, after, "wavecast_deliveries_total", "provider", "outcome") == ledger
    assert value(after, "wavecast_worker_claimable_rows") == 0
    assert by_label(after, "wavecast_worker_campaigns", "status") == {
        (s.value,): (1.0 if s is CampaignStatus.completed else 0.0) for s in CampaignStatus
    }
    batches = grown(before, after, "wavecast_provider_request_seconds_count", "provider")
    assert batches["sandbox",] >= 1
    waits = grown(before, after, "wavecast_worker_throttle_wait_seconds_count", "scope")
    assert waits["campaign",] == batches["sandbox",]
    assert value(after, "wavecast_worker_kill_switch_engaged") == 0


async def test_the_kill_switch_and_campaign_gauges_follow_the_database(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await add_devices(db, 10)
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    await create_and_start(client, headers, campaign_body())
    control = Control(db.redis)
    try:
        async with metrics_server(db) as url:
            released = await scrape(url)
            assert value(released, "wavecast_worker_kill_switch_engaged") == 0
            assert value(released, "wavecast_worker_campaigns", status="running") == 1
            async with unit_of_work(db.sessionmaker) as session:
                await commands.engage_switch(session, control, SYSTEM, reason="metrics test")
            engaged = await scrape(url)
            assert value(engaged, "wavecast_worker_kill_switch_engaged") == 1
            # Engaging pauses every running campaign.
            assert value(engaged, "wavecast_worker_campaigns", status="running") == 0
            assert value(engaged, "wavecast_worker_campaigns", status="paused") == 1
            assert value(engaged, "wavecast_worker_claimable_rows") == 0
            async with unit_of_work(db.sessionmaker) as session:
                await commands.release_switch(session, control, SYSTEM, reason="metrics test")
            assert value(await scrape(url), "wavecast_worker_kill_switch_engaged") == 0
    finally:
        await control.watch.aclose()


async def test_gauges_are_read_at_most_once_per_max_age(db: Runtime) -> None:
    server = MetricsServer(free_port(), host="127.0.0.1", max_age=60)
    server.attach(db.sessionmaker)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    control = Control(db.redis)
    try:
        assert value(await scrape(url), "wavecast_worker_kill_switch_engaged") == 0
        async with unit_of_work(db.sessionmaker) as session:
            await commands.engage_switch(session, control, SYSTEM, reason="metrics test")
        # Within max_age a scrape answers the values in hand: no query per scrape.
        assert value(await scrape(url), "wavecast_worker_kill_switch_engaged") == 0
    finally:
        await control.watch.aclose()
        await server.aclose()


async def test_other_paths_are_not_found(db: Runtime) -> None:
    async with metrics_server(None) as url, httpx.AsyncClient() as http:
        answer = await http.get(url.replace("/metrics", "/"), timeout=10)
    assert answer.status_code == 404


def with_port(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"worker_metrics_port": port})


async def test_port_zero_serves_nothing(db: Runtime) -> None:
    assert await start_metrics_server(with_port(db.settings, 0)) is None


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port: int = s.getsockname()[1]
        yield port


async def test_a_busy_port_is_one_error_and_the_worker_still_sends(
    db: Runtime,
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    busy_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await add_devices(db, 20)
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    campaign_id = await create_and_start(client, headers, campaign_body())

    async def sent() -> bool:
        return (await ledger_counts(db, campaign_id))["sandbox", DeliveryStatus.sent.value] > 0

    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        worker = asyncio.create_task(serve(with_port(db.settings, busy_port), stop=stop))
        try:
            await wait_for(sent, within=60)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 60)
    named = [r for r in caplog.records if "WAVECAST_WORKER_METRICS_PORT" in r.getMessage()]
    assert [r.levelno for r in named] == [logging.ERROR]
    assert str(busy_port) in named[0].getMessage()


def served_names(text: str) -> set[str]:
    """Every series name the exposition can hold, for each family it declares (a family
    without samples yet still names its series)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes[family.type]}
        names |= {s.name for s in family.samples}
    return names


def promql(node: Any) -> Iterator[str]:
    """The dashboard's queries: panel targets and template variables."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key in ("expr", "definition", "query") and isinstance(child, str):
                yield child
            else:
                yield from promql(child)
    elif isinstance(node, list):
        for child in node:
            yield from promql(child)


async def test_the_dashboard_uses_only_metrics_the_worker_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(promql(dashboard))
    used = {name for q in queries for name in re.findall(r"\bwavecast_[a-z0-9_]+", q)}
    async with metrics_server(None) as url:
        text = await scrape_text(url)
    assert used, queries
    assert used <= served_names(text), sorted(used - served_names(text))
    # And every metric the worker serves has its panel.
    # (the text parser reads a counter's or histogram's `_created` series as a family of its
    # own: a timestamp, not a metric to chart)
    families = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    assert {f for f in families if not any(n.startswith(f) for n in used)} == set()
    # The claimable panel states the count's cap.
    assert str(CLAIMABLE_COUNT_CAP) in DASHBOARD.read_text()


@pytest.mark.slow
async def test_a_real_worker_process_serves_its_metrics(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await add_devices(db, 30)
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with worker_processes(db.settings, 1, WAVECAST_WORKER_METRICS_PORT=str(port)):
        await workers_alive(db, 1)
        campaign_id = await create_and_start(client, headers, campaign_body())

        async def completed() -> bool:
            return await campaign_status(db, campaign_id) is CampaignStatus.completed

        await wait_for(completed, within=60)
        ledger = await ledger_counts(db, campaign_id)

        async def settled() -> Samples | None:
            # The process reads its gauges at most every few seconds.
            samples = await scrape(url)
            done = value(samples, "wavecast_worker_campaigns", status="completed") == 1
            return samples if done else None

        samples = await wait_for(settled, within=30, interval=0.5)
    # A fresh process: its counters hold this campaign's outcomes alone.
    outcomes = by_label(samples, "wavecast_deliveries_total", "provider", "outcome")
    assert Counter({k: int(v) for k, v in outcomes.items()}) == ledger
    assert ledger["sandbox", "sent"] == 30
    assert value(samples, "wavecast_worker_claimable_rows") == 0
    assert value(samples, "wavecast_worker_kill_switch_engaged") == 0


async def test_the_ledger_partition_gauges_follow_the_catalog(
    db: Runtime, is_postgres: bool
) -> None:
    async with metrics_server(db) as url:
        if not is_postgres:
            # One ledger table, nothing to count.
            samples = await scrape(url)
            assert math.isnan(value(samples, "wavecast_worker_ledger_partitions"))
            assert math.isnan(value(samples, "wavecast_worker_ledger_months_ahead"))
            return
        now = utcnow()
        current = partitions.month_of(now)
        await partitions.ensure_ahead(db.engine, now)
        async with db.engine.connect() as conn:
            attached = await partitions.existing(conn)
        made = await scrape(url)
        assert value(made, "wavecast_worker_ledger_partitions") == len(attached)
        assert value(made, "wavecast_worker_ledger_months_ahead") == 1
        await partitions.drop(db.engine, current + 1)
        try:
            missing = await scrape(url)
            assert value(missing, "wavecast_worker_ledger_partitions") == len(attached) - 1
            assert value(missing, "wavecast_worker_ledger_months_ahead") == 0
        finally:
            await partitions.ensure_ahead(db.engine, now)
        assert value(await scrape(url), "wavecast_worker_ledger_months_ahead") == 1


@pytest.mark.parametrize(
    ("months", "ahead"),
    [
        (set(), -1),
        ({0, 9, 11}, -1),  # this month's (10) missing, whatever else exists
        ({10}, 0),
        ({0, 10, 12}, 0),  # a gap: the month after the next does not count
        ({10, 11}, 1),
        ({9, 10, 11, 12, 13}, 3),
    ],
)
def test_months_ahead_counts_from_this_month_until_the_first_gap(
    months: set[int], ahead: int
) -> None:
    assert months_ahead(months, 10) == ahead
